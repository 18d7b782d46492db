/**
 * Several HTTP processes for one server (`strata serve --http-workers N`).
 * Node runs JavaScript on one core per process, and object downloads cost
 * JavaScript per MiB (fs reads, socket writes); node:cluster lets N worker
 * processes accept on the same HTTP port. The primary keeps everything that
 * must exist once: the SSH endpoint and the baker (a push is baked by exactly
 * one process). Each worker opens the same data directory (SQLite in WAL mode
 * with a busy timeout, so concurrent readers and short writers are fine) and
 * runs buildServer; server/cluster-relay.ts carries events between them.
 *
 * This file has both sides: HttpWorkerPool (primary) and runHttpWorker (the
 * worker's main, started by server/http-worker-main.ts).
 */
import cluster, { type Worker } from 'node:cluster';
import fs from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { Store } from '../store/store.ts';
import type { StoreConfig } from '../store/types.ts';
import { StrataError } from '../store/errors.ts';
import { buildServer } from './build-server.ts';
import { PrimaryRelay, relayWorker, type RelayPort } from './cluster-relay.ts';
import { EventHub } from './events.ts';
import type { ServerLimits } from './limits.ts';

/** What a worker needs to serve; passed as JSON in its environment. */
export interface HttpWorkerConfig {
  dataDir: string;
  host: string;
  port: number;
  publicUrl?: string;
  webDir?: string;
  logger?: boolean;
  objectRateLimit?: number;
  storeConfig?: Partial<StoreConfig>;
  /** HTTP timeouts (server/limits.ts). */
  limits?: Partial<ServerLimits>;
}

const CONFIG_ENV = 'STRATA_HTTP_WORKER_CONFIG';
/** Built (dist/, bundled by scripts/build.mjs) the worker is http-worker.js beside this code; from the sources it is the .ts file. */
const BUILT = import.meta.url.endsWith('.js');
const WORKER_MAIN = fileURLToPath(new URL(BUILT ? './http-worker.js' : './http-worker-main.ts', import.meta.url));
const TSX_LOADER = fileURLToPath(new URL('../node_modules/tsx/dist/esm/index.mjs', import.meta.url));

type ControlMessage = { kind: 'strata-ready'; port: number } | { kind: 'strata-failed'; message: string } | { kind: 'strata-stop' };

function isControl(m: unknown): m is ControlMessage {
  return (
    typeof m === 'object' &&
    m !== null &&
    typeof (m as { kind?: unknown }).kind === 'string' &&
    ['strata-ready', 'strata-failed', 'strata-stop'].includes((m as { kind: string }).kind)
  );
}

/**
 * Delay before restarting a worker that died: quick after a worker that ran a
 * while (a one-off crash), doubling while workers keep dying young (a
 * persistent fault should not spin the CPU), capped at 10 s.
 */
export function restartDelayMs(youngDeathsInARow: number): number {
  return Math.min(10_000, 250 * 2 ** Math.max(0, youngDeathsInARow));
}

/** A port nothing listens on now (bound and released; the workers bind it a moment later). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** A worker that lived this long before dying resets the backoff. */
const YOUNG_MS = 10_000;

/**
 * The worker processes run TypeScript like their primary: through tsx's
 * loader (built JavaScript needs none). Inherit the primary's node flags when they already load tsx
 * (bin/strata, `node --import tsx`), else (vitest) name the loader.
 */
function workerExecArgv(): string[] {
  if (BUILT) return process.execArgv;
  if (process.execArgv.some((a) => a.includes('tsx'))) return process.execArgv;
  return ['--import', TSX_LOADER];
}

export interface HttpWorkerPoolOptions {
  count: number;
  config: HttpWorkerConfig;
  events: EventHub;
  log: (msg: string) => void;
}

/** The primary's side: forks, restarts and stops the HTTP workers. */
export class HttpWorkerPool {
  private readonly relay: PrimaryRelay;
  private readonly live = new Set<Worker>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closing = false;
  private youngDeaths = 0;
  /** The port the workers share (the real one when the configured port is 0). */
  port = 0;

  constructor(private readonly opts: HttpWorkerPoolOptions) {
    if (!cluster.isPrimary) throw new StrataError('E_INTERNAL', 'an HTTP worker cannot start HTTP workers');
    this.relay = new PrimaryRelay(opts.events);
  }

  /** Forks every worker and resolves once all listen; rejects (and stops the others) if one fails to start. */
  async start(): Promise<void> {
    try {
      // node:cluster shares one listening socket per (host, port) among all workers of this process, port 0
      // included: two servers started with port 0 in one process would share a port. A concrete port keeps
      // them apart, and a restarted worker comes back on the same port even if every worker had died.
      if (this.opts.config.port === 0) this.opts.config.port = await freePort(this.opts.config.host);
      const ports = await Promise.all(Array.from({ length: this.opts.count }, () => this.fork(true)));
      this.port = ports[0]!;
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  /** Pids of the live workers (tests check that none outlives close()). */
  pids(): number[] {
    return [...this.live].map((w) => w.process.pid!).filter((p) => p !== undefined);
  }

  /** `initial`: part of start(), which fails as a whole; a restart that fails is retried with the backoff. */
  private fork(initial: boolean): Promise<number> {
    cluster.setupPrimary({ exec: WORKER_MAIN, execArgv: workerExecArgv(), args: [] });
    const worker = cluster.fork({ [CONFIG_ENV]: JSON.stringify(this.opts.config) });
    const born = Date.now();
    this.live.add(worker);
    this.relay.addWorker(worker.id, worker as unknown as RelayPort);
    return new Promise<number>((resolve, reject) => {
      let ready = false;
      worker.on('message', (m: unknown) => {
        if (!isControl(m)) return;
        if (m.kind === 'strata-ready') {
          ready = true;
          resolve(m.port);
        } else if (m.kind === 'strata-failed') {
          reject(new StrataError('E_INTERNAL', `HTTP worker ${worker.process.pid} could not start: ${m.message}`));
        }
      });
      worker.on('error', () => {
        /* IPC to a dying worker; its exit event follows */
      });
      worker.once('exit', (code, signal) => {
        this.live.delete(worker);
        this.relay.removeWorker(worker.id);
        if (!ready)
          reject(new StrataError('E_INTERNAL', `HTTP worker ${worker.process.pid} exited (${signal ?? code}) before it listened`));
        if (this.closing || (initial && !ready)) return;
        this.youngDeaths = Date.now() - born < YOUNG_MS ? this.youngDeaths + 1 : 0;
        const delay = restartDelayMs(this.youngDeaths - 1);
        this.opts.log(`HTTP worker ${worker.process.pid} died (${signal ?? `exit ${code}`}); restarting in ${delay} ms`);
        const t = setTimeout(() => {
          this.timers.delete(t);
          if (this.closing) return;
          this.fork(false).catch((e: unknown) => {
            this.opts.log(`HTTP worker restart failed: ${String(e)}`);
          });
        }, delay);
        this.timers.add(t);
      });
    });
  }

  /** Asks each worker to close its server and exit; SIGKILL after `graceMs`. */
  async close(graceMs = 5000): Promise<void> {
    this.closing = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const waits = [...this.live].map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.isDead()) return resolve();
          w.once('exit', () => resolve());
          try {
            w.send({ kind: 'strata-stop' } satisfies ControlMessage);
          } catch {
            w.process.kill('SIGTERM');
          }
          const kill = setTimeout(() => w.process.kill('SIGKILL'), graceMs);
          kill.unref();
          w.once('exit', () => clearTimeout(kill));
        }),
    );
    await Promise.all(waits);
    this.relay.close();
  }
}

/** The worker's main: open the store, serve HTTP on the shared port, relay events, stop when told. */
export async function runHttpWorker(): Promise<void> {
  if (!cluster.isWorker || !process.send) throw new StrataError('E_INTERNAL', 'runHttpWorker runs in a cluster worker only');
  const send = (m: ControlMessage): void => {
    try {
      process.send!(m);
    } catch {
      /* primary gone */
    }
  };
  let store: Store | null = null;
  let app: FastifyInstance | null = null;
  let stopRelay: (() => void) | null = null;
  let stopping = false;
  const stop = async (code: number): Promise<never> => {
    if (!stopping) {
      stopping = true;
      stopRelay?.();
      await app?.close().catch(() => {});
      store?.close();
    }
    process.exit(code);
  };
  try {
    const raw = process.env[CONFIG_ENV];
    if (!raw) throw new StrataError('E_INTERNAL', `${CONFIG_ENV} is not set`);
    const config = JSON.parse(raw) as HttpWorkerConfig;
    // The primary created the data directory; a worker never creates one.
    store = await Store.open(config.dataDir, { config: config.storeConfig });
    const events = new EventHub();
    stopRelay = relayWorker(events, process as unknown as RelayPort);
    const webDir = config.webDir && fs.existsSync(config.webDir) ? config.webDir : undefined;
    app = buildServer({
      store,
      publicUrl: config.publicUrl,
      logger: config.logger,
      webDir,
      events,
      objectRateLimit: config.objectRateLimit,
      limits: config.limits,
    });
    await app.listen({ host: config.host, port: config.port, backlog: 4096 });
    const addr = app.server.address();
    process.on('message', (m: unknown) => {
      if (isControl(m) && m.kind === 'strata-stop') void stop(0);
    });
    // SIGTERM from a service manager, SIGINT from ^C in a terminal (the whole process group gets it).
    process.once('SIGTERM', () => void stop(0));
    process.once('SIGINT', () => void stop(0));
    send({ kind: 'strata-ready', port: typeof addr === 'object' && addr ? addr.port : config.port });
  } catch (e) {
    send({ kind: 'strata-failed', message: e instanceof Error ? e.message : String(e) });
    await stop(1);
  }
}
