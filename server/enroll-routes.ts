/**
 * The admin API for enrollment (bearer token): pending client keys and the
 * admin's decision on them. Thin: each route calls store/enrollment.ts.
 *   GET  /v1/keys/pending                  { pending: PendingKey[] }
 *   POST /v1/keys/pending/:id/approve      { profiles?: string[], admin?: boolean, name?: string }
 *   POST /v1/keys/pending/:id/reject
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { StrataError } from '../store/errors.ts';
import { Enrollment } from '../store/enrollment.ts';
import type { Store } from '../store/store.ts';
import { requireToken } from './auth.ts';
import { asObject, optBool, optString } from './body.ts';
import type { EventHub } from './events.ts';

type P = FastifyRequest<{ Params: { id: string }; Body: unknown }>;

export function registerEnrollRoutes(app: FastifyInstance, deps: { store: Store; events: EventHub }): void {
  const { store, events } = deps;
  app.register(async (a) => {
    a.addHook('onRequest', requireToken(store));
    const enrollment = new Enrollment(store);
    a.get('/v1/keys/pending', async () => ({ pendingKeys: enrollment.list() }));
    a.post('/v1/keys/pending/:id/approve', async (req: P) => {
      const b = asObject(req.body, 'POST approve');
      const raw = b.profiles;
      if (raw !== undefined && (!Array.isArray(raw) || raw.some((x) => typeof x !== 'string')))
        throw new StrataError('E_BAD_ARGUMENT', 'POST approve: "profiles" must be a list of profile names');
      const profiles = (raw as string[] | undefined) ?? [];
      for (const p of profiles) store.getProfile(p);
      const r = enrollment.approve(req.params.id, {
        profiles,
        admin: optBool(b, 'admin', 'POST approve') ?? false,
        name: optString(b, 'name', 'POST approve'),
      });
      for (const id of r.released) events.emit('push', { id, state: 'queued', author: r.key.name });
      events.emit('client', { action: 'key-approved', key: r.key.name });
      return r;
    });
    a.post('/v1/keys/pending/:id/reject', async (req: P) => {
      const r = enrollment.reject(req.params.id);
      events.emit('client', { action: 'key-rejected', id: req.params.id });
      return r;
    });
  });
}
