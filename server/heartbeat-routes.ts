/**
 * POST /v1/heartbeat: a running client's report with its inventory
 * (store/heartbeats.ts), sent by the kit agent; it also records the lease
 * like POST /v1/clients/<mac>/heartbeat. No token, like the boot routes;
 * what it may claim is limited by the store.
 */
import type { FastifyInstance } from 'fastify';
import { Heartbeats, parseHeartbeat } from '../store/heartbeats.ts';
import type { Store } from '../store/store.ts';
import type { EventHub } from './events.ts';

export function registerHeartbeatRoutes(app: FastifyInstance, deps: { store: Store; events: EventHub }): void {
  const heartbeats = new Heartbeats(deps.store);
  app.post('/v1/heartbeat', { bodyLimit: 32 * 1024 }, async (req) => {
    const hb = parseHeartbeat(req.body, req.ip);
    heartbeats.record(hb);
    // Also the lease the older POST /v1/clients/<mac>/heartbeat records, so gc keeps what runs.
    const commit = (() => {
      try {
        return deps.store.getCommit(hb.commit);
      } catch {
        return null;
      }
    })();
    if (commit) deps.store.recordClient({ mac: hb.mac, ip: hb.ip ?? '', commit: hb.commit, profile: commit.profile, boot: false });
    deps.events.emit('client', { mac: hb.mac, ip: hb.ip, commit: hb.commit, boot: false });
    return { ok: true };
  });
}
