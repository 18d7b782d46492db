/**
 * POST /v1/heartbeat: a running client's report (store/heartbeats.ts). No
 * token, like the boot routes; what it may claim is limited by the store.
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
    deps.events.emit('client', { action: 'heartbeat', mac: hb.mac });
    return { ok: true };
  });
}
