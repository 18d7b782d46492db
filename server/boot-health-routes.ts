/**
 * Boot health (store/boot-health.ts):
 *   POST /v1/boot-health                    {mac, commit, ok, reason?} from the client kit (open, like the
 *                                           boot routes: PXE clients have no secret); refused unless it
 *                                           names the boot this server served that MAC
 *   GET  /v1/boot-health/check?commit=<id>  the extra check command of the commit's profile (text, may be empty)
 *   PUT  /v1/profiles/:name/health-check    {command} (token): set it ("" removes it)
 *   POST /v1/clients/:mac/clear             (token): forget the client's failed boots; it tries its commit again
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { parseHealthReport } from '../store/boot-health.ts';
import { StrataError } from '../store/errors.ts';
import type { Store } from '../store/store.ts';
import { requireToken } from './auth.ts';
import { asObject, optString } from './body.ts';
import type { EventHub } from './events.ts';

export function registerBootHealthRoutes(app: FastifyInstance, deps: { store: Store; events: EventHub }): void {
  const { store, events } = deps;

  app.post('/v1/boot-health', { bodyLimit: 8 * 1024 }, async (req) => {
    const r = parseHealthReport(req.body);
    const verdict = store.reportBootHealth(r);
    events.emit('client', { action: 'boot-health', mac: r.mac, commit: r.commit, ok: verdict.kind === 'good' });
    return { ok: true, mac: r.mac, commit: r.commit, verdict: verdict.kind };
  });

  app.get('/v1/boot-health/check', async (req: FastifyRequest<{ Querystring: { commit?: string } }>, reply) => {
    const commit = req.query.commit ?? '';
    if (!/^[0-9a-f]{64}$/.test(commit)) throw new StrataError('E_BAD_ARGUMENT', 'boot health check: ?commit= must be a 64-digit commit id');
    const cmd = store.healthCheck(store.getCommit(commit).profile);
    return reply
      .header('Cache-Control', 'no-store')
      .type('text/plain; charset=utf-8')
      .send(cmd ? `${cmd}\n` : '');
  });

  app.register(async (a) => {
    a.addHook('onRequest', requireToken(store));
    a.put('/v1/profiles/:name/health-check', async (req: FastifyRequest<{ Params: { name: string }; Body: unknown }>) => {
      const b = asObject(req.body, 'PUT health-check');
      const command = store.setHealthCheck(req.params.name, optString(b, 'command', 'PUT health-check') ?? '');
      events.emit('ref', { action: 'health-check', profile: req.params.name });
      return { profile: req.params.name, healthCheck: command };
    });
    a.post('/v1/clients/:mac/clear', async (req: FastifyRequest<{ Params: { mac: string } }>) => {
      const r = store.clearClientHealth(req.params.mac);
      events.emit('client', { action: 'health-cleared', mac: r.mac });
      return r;
    });
  });
}
