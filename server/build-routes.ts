/**
 * Recipe builds over the admin API (bearer token): queue a build, read its
 * state and log, read and save a profile's recipe schedule. The builds
 * themselves run in the main server process (BuildJobs below), one at a
 * time; an HTTP worker process only queues, and the main process's timer
 * picks the row up. Reference: docs/api.md, "Builds".
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { StrataError } from '../store/errors.ts';
import type { Store } from '../store/store.ts';
import { requireToken } from './auth.ts';
import { asObject, optString, reqString } from './body.ts';
import type { EventHub } from './events.ts';

type P<T> = FastifyRequest<{ Params: T; Querystring: Record<string, string>; Body: unknown }>;

/** Runs queued builds and due schedules in the main server process. */
export class BuildJobs {
  private timer: NodeJS.Timeout | null = null;
  private readonly runner;
  constructor(
    private readonly store: Store,
    events: EventHub,
    private readonly log: (msg: string) => void = () => {},
    private readonly pollMs = 5000,
  ) {
    this.runner = store.buildRunner({
      onProgress: (b, p) => {
        if (p.stage) events.emit('progress', { action: 'build', build: b.id, profile: b.profile, stage: p.stage });
      },
      onFinished: (b) => {
        this.log(`build ${b.id} of ${b.profile}: ${b.state}${b.commit ? ` ${b.commit}` : ''}`);
        events.emit('ref', { action: 'build', build: b.id, profile: b.profile, state: b.state, commit: b.commit });
      },
    });
  }

  /** Queues what is due and drains the queue (in the background). */
  tick(): void {
    try {
      for (const b of this.store.enqueueDueBuilds()) this.log(`schedule: build ${b.id} of ${b.profile} queued`);
    } catch (e) {
      this.log(`schedule: ${String(e)}`);
    }
    if (this.store.listBuilds({ limit: 20 }).some((b) => b.state === 'queued'))
      this.runner.kick().catch((e) => this.log(`builds: ${String(e)}`));
  }

  start(): void {
    this.tick();
    this.timer = setInterval(() => this.tick(), this.pollMs);
    this.timer.unref();
  }

  /** Stops the timer; a running build is left to finish or be marked interrupted at the next start. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

/** Up to 1 MiB of FILE from OFFSET. */
function readFrom(file: string, offset: number): { text: string; next: number } {
  if (!existsSync(file)) return { text: '', next: 0 };
  const size = statSync(file).size;
  const start = Math.min(Math.max(0, offset), size);
  const len = Math.min(size - start, 1 << 20);
  const buf = Buffer.alloc(len);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, buf, 0, len, start);
  } finally {
    closeSync(fd);
  }
  return { text: buf.toString('utf8'), next: start + len };
}

export function registerBuildRoutes(app: FastifyInstance, deps: { store: Store; events: EventHub; kick?: () => void }): void {
  const { store, events } = deps;
  app.register(async (a) => {
    a.addHook('onRequest', requireToken(store));

    a.post('/v1/profiles/:name/builds', async (req: P<{ name: string }>, reply) => {
      const b = asObject(req.body, 'build');
      const recipe = optString(b, 'recipe', 'build') ?? store.listSchedules().find((s) => s.profile === req.params.name)?.recipe;
      const last = recipe ?? store.listBuilds({ profile: req.params.name, limit: 1 })[0]?.recipe;
      if (!last) throw new StrataError('E_BAD_ARGUMENT', `${req.params.name} has no recipe yet: send {"recipe": "..."}`);
      const build = store.enqueueBuild(req.params.name, last);
      events.emit('progress', { action: 'build', build: build.id, profile: build.profile, stage: 'queued' });
      deps.kick?.();
      reply.code(202);
      return { build };
    });
    a.get('/v1/builds', async (req: P<Record<string, never>>) => ({
      builds: store.listBuilds({ profile: req.query.profile }),
      schedules: store.listSchedules(),
    }));
    a.get('/v1/builds/:id', async (req: P<{ id: string }>) => ({ build: store.getBuild(req.params.id) }));
    // The log from ?offset= on; X-Next-Offset says where the next poll starts, X-Build-State whether to poll again.
    a.get('/v1/builds/:id/log', async (req: P<{ id: string }>, reply) => {
      const build = store.getBuild(req.params.id);
      const { text, next } = readFrom(store.buildLogPath(build.id), Number(req.query.offset ?? 0) || 0);
      reply.header('Content-Type', 'text/plain; charset=utf-8');
      reply.header('Cache-Control', 'no-store');
      reply.header('X-Next-Offset', String(next));
      reply.header('X-Build-State', build.state);
      return text;
    });
    a.get('/v1/profiles/:name/recipe', async (req: P<{ name: string }>) => {
      const schedule = store.listSchedules().find((s) => s.profile === req.params.name) ?? null;
      const last = store.listBuilds({ profile: req.params.name, limit: 1 })[0] ?? null;
      return { recipe: schedule?.recipe ?? last?.recipe ?? null, schedule, lastBuild: last };
    });
    a.put('/v1/profiles/:name/schedule', async (req: P<{ name: string }>) => {
      const b = asObject(req.body, 'schedule');
      const schedule = store.setSchedule(req.params.name, reqString(b, 'recipe', 'schedule'), {
        every: optString(b, 'every', 'schedule'),
        at: optString(b, 'at', 'schedule'),
      });
      return { schedule };
    });
    a.delete('/v1/profiles/:name/schedule', async (req: P<{ name: string }>) => ({ removed: store.removeSchedule(req.params.name) }));
  });
}
