/**
 * The admin API under /v1 (bearer token on every route here). Each handler
 * parses, calls one store function, and returns its JSON; errors are mapped
 * to statuses in http-errors.ts. Reference: docs/api.md.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Store } from '../store/store.ts';
import { gcReasonText } from '../store/gc.ts';
import { clientReports } from '../store/heartbeats.ts';
import { requireToken } from './auth.ts';
import { asObject, optBool, optLimit, optString, reqString } from './body.ts';
import { sseFrame, type EventHub } from './events.ts';

export interface AdminDeps {
  store: Store;
  events: EventHub;
}

type P<T> = FastifyRequest<{ Params: T; Querystring: Record<string, string>; Body: unknown }>;

const author = (req: FastifyRequest): string => `token:${req.tokenName ?? 'unknown'}`;

export function registerAdminRoutes(app: FastifyInstance, deps: AdminDeps): void {
  const { store, events } = deps;

  app.register(async (sse) => {
    sse.addHook('onRequest', requireToken(store));
    sse.get('/v1/events', async (req, reply) => {
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-store',
        Connection: 'keep-alive',
        'X-Accel-Buffering': 'no',
      });
      res.write(': strata events\n\n');
      const off = events.subscribe((e) => res.write(sseFrame(e)));
      // Proxies drop idle streams; a comment line every 15 s keeps it open.
      const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
      ping.unref();
      const done = (): void => {
        off();
        clearInterval(ping);
      };
      req.raw.on('close', done);
      res.on('close', done);
    });
  });

  app.register(async (a) => {
    a.addHook('onRequest', requireToken(store));

    a.get('/v1/profiles', async () => ({ profiles: store.listProfiles() }));
    a.get('/v1/profiles/:name', async (req: P<{ name: string }>) => ({ profile: store.getProfile(req.params.name) }));
    a.put('/v1/profiles/:name/cmdline', async (req: P<{ name: string }>) => {
      const b = asObject(req.body, 'PUT cmdline');
      const cmdline = optString(b, 'cmdline', 'PUT cmdline') ?? '';
      const profile = store.setCmdline(req.params.name, cmdline);
      events.emit('ref', { action: 'cmdline', profile: profile.name });
      return { profile };
    });
    a.get('/v1/profiles/:name/log', async (req: P<{ name: string }>) => ({
      commits: store.log(req.params.name, { limit: optLimit(req.query) }),
    }));
    a.get('/v1/profiles/:name/graph', async (req: P<{ name: string }>) => store.graph(req.params.name));
    a.get('/v1/profiles/:name/reflog', async (req: P<{ name: string }>) => ({ reflog: store.reflog(req.params.name) }));

    a.post('/v1/profiles/:name/rollback', async (req: P<{ name: string }>) => {
      const b = asObject(req.body, 'rollback');
      const r = store.rollback(req.params.name, optString(b, 'to', 'rollback'));
      events.emit('ref', { action: 'rollback', profile: req.params.name, ...r });
      return r;
    });
    a.post('/v1/profiles/:name/revert', async (req: P<{ name: string }>) => {
      const b = asObject(req.body, 'revert');
      const r = await store.revert(req.params.name, reqString(b, 'commit', 'revert'), { author: author(req) });
      events.emit('ref', { action: 'revert', profile: req.params.name, commit: r.commit.id });
      return r;
    });
    a.post('/v1/profiles/:name/cherry-pick', async (req: P<{ name: string }>) => {
      const b = asObject(req.body, 'cherry-pick');
      const r = await store.cherryPick(req.params.name, reqString(b, 'commit', 'cherry-pick'), {
        force: optBool(b, 'force', 'cherry-pick'),
        author: author(req),
      });
      events.emit('ref', { action: 'cherry-pick', profile: req.params.name, commit: r.commit.id });
      return r;
    });
    a.post('/v1/profiles/:name/rebase', async (req: P<{ name: string }>) => {
      const b = asObject(req.body, 'rebase');
      const r = await store.rebase(req.params.name, reqString(b, 'onto', 'rebase'), {
        force: optBool(b, 'force', 'rebase'),
        author: author(req),
      });
      events.emit('ref', { action: 'rebase', profile: req.params.name, commit: r.commit.id });
      return r;
    });
    a.delete('/v1/profiles/:name', async (req: P<{ name: string }>) => {
      const r = store.removeProfile(req.params.name);
      events.emit('ref', { action: 'profile-rm', profile: req.params.name });
      return r;
    });
    a.post('/v1/profiles/:name/flatten', async (req: P<{ name: string }>) => {
      const b = asObject(req.body, 'flatten');
      const profile = req.params.name;
      // A flatten at the default level takes minutes on a large base: open pages show how far it is.
      const onProgress = (p: { done: number; total: number }) =>
        events.emit('progress', { action: 'flatten', profile, done: p.done, total: p.total });
      const r = await store.flatten(profile, { from: optString(b, 'from', 'flatten'), author: author(req), onProgress });
      events.emit('ref', { action: 'flatten', profile: req.params.name, commit: r.commit.id });
      return r;
    });

    a.get('/v1/commits/:rev', async (req: P<{ rev: string }>) => ({ commit: store.getCommit(store.resolve(req.params.rev)) }));
    a.get('/v1/commits/:rev/diff', async (req: P<{ rev: string }>) => {
      const against = optString(req.query, 'against', 'diff');
      return { diff: store.diff(req.params.rev, against) };
    });

    a.get('/v1/refs', async () => ({ refs: store.listRefs() }));
    a.post('/v1/tags', async (req) => {
      const b = asObject(req.body, 'tag');
      const ref = store.tag(reqString(b, 'name', 'tag'), reqString(b, 'commit', 'tag'));
      events.emit('ref', { action: 'tag', ref });
      return { ref };
    });
    a.post('/v1/branches', async (req) => {
      const b = asObject(req.body, 'branch');
      const ref = store.branch(reqString(b, 'name', 'branch'), reqString(b, 'commit', 'branch'));
      events.emit('ref', { action: 'branch', ref });
      return { ref };
    });

    // Branch names hold a '/', so the name comes in the query or body (as for assignments).
    a.delete('/v1/branches', async (req: P<Record<string, never>>) => {
      const b = { ...req.query, ...asObject(req.body, 'delete branch') };
      const ref = store.deleteBranch(reqString(b, 'name', 'delete branch'));
      events.emit('ref', { action: 'delete-branch', ref });
      return { ref };
    });
    a.delete('/v1/tags', async (req: P<Record<string, never>>) => {
      const b = { ...req.query, ...asObject(req.body, 'delete tag') };
      const ref = store.deleteTag(reqString(b, 'name', 'delete tag'));
      events.emit('ref', { action: 'delete-tag', ref });
      return { ref };
    });

    a.get('/v1/assignments', async () => ({ assignments: store.listAssignments() }));
    a.put('/v1/assignments', async (req) => {
      const b = asObject(req.body, 'assign');
      const assignment = store.assign(reqString(b, 'match', 'assign'), reqString(b, 'target', 'assign'), {
        cmdline: optString(b, 'cmdline', 'assign'),
      });
      events.emit('ref', { action: 'assign', assignment });
      return { assignment };
    });
    a.delete('/v1/assignments', async (req: P<Record<string, never>>) => {
      const b = { ...req.query, ...asObject(req.body, 'unassign') };
      const match = reqString(b, 'match', 'unassign');
      store.unassign(match);
      events.emit('ref', { action: 'unassign', match });
      return { ok: true, match };
    });

    a.get('/v1/clients', async () => ({ clients: clientReports(store) }));
    a.get('/v1/pushes', async (req: P<Record<string, never>>) => ({ pushes: store.listPushes({ limit: optLimit(req.query) }) }));
    a.get('/v1/pushes/:id', async (req: P<{ id: string }>) => ({ push: store.getPush(req.params.id) }));
    // An admin ends a push that waits or keeps failing (strata push reject); its archive goes.
    a.post('/v1/pushes/:id/reject', async (req: P<{ id: string }>) => {
      const b = asObject(req.body ?? {}, 'reject');
      const reason = optString(b, 'reason', 'reject') ?? `rejected by ${author(req)}`;
      const push = await store.rejectPush(req.params.id, reason);
      events.emit('push', { id: push.id, profile: push.profile, state: push.state, reason: push.reason });
      return { push };
    });
    a.post('/v1/gc', async (req) => {
      const b = asObject(req.body, 'gc');
      const dryRun = optBool(b, 'dryRun', 'gc') ?? false;
      const r = await store.gc({ dryRun });
      // A real gc drops expired reflog rows and unreachable commits: open pages redraw.
      if (!dryRun) events.emit('ref', { action: 'gc', commits: r.commits.length, objects: r.objects.length, bytes: r.bytes });
      return r;
    });
    // Read-only: what gc keeps and why (refs, young reflog entries, pins, client
    // leases, pending pushes). The web UI draws the kept commits no ref reaches.
    // `reasons` names every one as data ({kind, ...}) with its words in `text`;
    // `reason` (the first one's words) stays for older clients.
    a.get('/v1/gc/roots', async () => ({
      roots: [...store.gcRoots()].map(([commit, reasons]) => {
        const withText = reasons.map((r) => ({ ...r, text: gcReasonText(r) }));
        return { commit, reason: withText[0]!.text, reasons: withText };
      }),
    }));
  });
}
