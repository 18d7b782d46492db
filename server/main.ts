/**
 * `strata serve`: opens the store, serves HTTP (boot, objects, admin API,
 * web UI) and SSH (pushes), runs the baker, and shuts down cleanly on
 * SIGTERM/SIGINT. A SIGKILL at any point is safe: pushes are fsynced before
 * their id is printed and are baked after the next start.
 */
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Store } from '../store/store.ts';
import type { StoreConfig } from '../store/types.ts';
import { StrataError } from '../store/errors.ts';
import { Baker } from './baker.ts';
import { BuildJobs } from './build-routes.ts';
import { buildServer } from './build-server.ts';
import { EventHub } from './events.ts';
import { createSshServer, loadOrCreateHostKey } from './ssh-server.ts';
import { HttpWorkerPool } from './cluster.ts';
import { parseHostPort } from './listen-address.ts';
import { serverLimits, type ServerLimits } from './limits.ts';

export { parseHostPort };
import { PxeService, type PxeOptions } from './pxe/pxe-service.ts';

export interface StartServerOptions {
  dataDir: string;
  /** HOST:PORT for HTTP; port 0 picks a free port. */
  http: string;
  /** HOST:PORT for SSH; port 0 picks a free port. */
  ssh: string;
  publicUrl?: string;
  /** Web UI folder; default: the checkout's web/ when it has an index.html. */
  webDir?: string;
  logger?: boolean;
  /** Largest compressed push accepted over SSH (bytes). */
  maxPushBytes?: number;
  /** Pace object downloads per connection (bytes/s); off by default. */
  objectRateLimit?: number;
  storeConfig?: Partial<StoreConfig>;
  /** Wait before re-baking a push whose bake failed for a reason that may pass (default 60 s). */
  bakeRetryMs?: number;
  /** Install SIGTERM/SIGINT handlers that close everything and exit (default true). */
  handleSignals?: boolean;
  /** Where progress lines go (default: stderr). */
  log?: (msg: string) => void;
  /**
   * HTTP processes (default 1: HTTP runs in this process). With N > 1 this
   * process keeps the store, SSH and the baker and forks N node:cluster
   * workers that serve HTTP on the same port (server/cluster.ts).
   */
  httpWorkers?: number;
  /** Answer PXE clients on this interface with a supervised dnsmasq (server/pxe/). */
  pxe?: PxeOptions;
  /** Connection limits and timeouts (server/limits.ts); defaults for what is absent. */
  limits?: Partial<ServerLimits>;
}

export interface RunningServer {
  store: Store;
  baker: Baker;
  events: EventHub;
  httpUrl: string;
  httpPort: number;
  sshPort: number;
  sshHost: string;
  /** Pids of the HTTP worker processes (empty with httpWorkers = 1). */
  httpWorkerPids(): number[];
  /** The PXE service (dnsmasq) when started with `pxe`. */
  pxe: PxeService | null;
  /** The limits in force; the SSH ones may be changed in place (a reload). */
  limits: ServerLimits;
  close(): Promise<void>;
}

/** The kernel caps it at net.core.somaxconn (4096 on current kernels). */
export const LISTEN_BACKLOG = 4096;

const DEFAULT_WEB_DIR = fileURLToPath(new URL('../web/', import.meta.url));

export async function startServer(opts: StartServerOptions): Promise<RunningServer> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`strata: ${m}\n`));
  const httpAddr = parseHostPort(opts.http, '--http');
  const sshAddr = parseHostPort(opts.ssh, '--ssh');
  const workers = opts.httpWorkers ?? 1;
  if (!Number.isInteger(workers) || workers < 1 || workers > 256) {
    throw new StrataError('E_BAD_ARGUMENT', `httpWorkers must be a whole number from 1 to 256, not ${workers}`);
  }
  // Claimed before anything listens: a second server on the interface is refused by name.
  const pxe = opts.pxe ? await PxeService.claim({ ...opts.pxe, dataDir: opts.dataDir, log }) : null;
  let store: Store;
  try {
    store = await Store.open(opts.dataDir, { create: true, config: opts.storeConfig });
  } catch (e) {
    await pxe?.close();
    throw e;
  }
  const events = new EventHub();
  const limits = serverLimits(opts.limits);
  // Recipe builds and schedules run here, in the main process, one at a time.
  const builds = new BuildJobs(store, events, log);
  const webDir = opts.webDir ?? (fs.existsSync(`${DEFAULT_WEB_DIR}index.html`) ? DEFAULT_WEB_DIR : undefined);
  // One process: HTTP is served here. Several: only the workers serve HTTP (they relay events through `events`).
  const app =
    workers === 1
      ? buildServer({
          store,
          publicUrl: opts.publicUrl,
          logger: opts.logger,
          webDir,
          events,
          objectRateLimit: opts.objectRateLimit,
          limits,
          log,
          kickBuilds: () => builds.tick(),
        })
      : null;
  const pool =
    workers > 1
      ? new HttpWorkerPool({
          count: workers,
          events,
          log,
          config: {
            dataDir: store.dataDir,
            host: httpAddr.host,
            port: httpAddr.port,
            publicUrl: opts.publicUrl,
            webDir,
            logger: opts.logger,
            objectRateLimit: opts.objectRateLimit,
            storeConfig: opts.storeConfig,
            limits,
          },
        })
      : null;
  const baker = new Baker({ store, events, log, retryMs: opts.bakeRetryMs });
  const hostKey = await loadOrCreateHostKey(store.dataDir);
  const ssh = createSshServer({
    store,
    events,
    hostKey,
    maxPushBytes: opts.maxPushBytes,
    onPush: (id) => baker.enqueue(id),
    log,
    limits,
  });

  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    // Started first: from here on a worker that exits (^C reaches the whole process group) is not restarted.
    const workersStopped = pool?.close();
    await pxe?.close();
    await new Promise<void>((resolve) => ssh.close(() => resolve()));
    await app?.close();
    await workersStopped;
    await baker.stop();
    builds.stop();
    store.close();
  };

  try {
    // A deep accept queue (Node's default is 511): under a connection flood a
    // booting machine's SYN must not be dropped and wait out SYN retries (1 s, 3 s, 7 s).
    if (app) await app.listen({ host: httpAddr.host, port: httpAddr.port, backlog: LISTEN_BACKLOG });
    else await pool!.start();
    await new Promise<void>((resolve, reject) => {
      ssh.once('error', reject);
      ssh.listen(sshAddr.port, sshAddr.host, LISTEN_BACKLOG, () => {
        ssh.off('error', reject);
        resolve();
      });
    });
    // What a crash left in incoming/ (uploads cut short, archives of pushes that had landed).
    const dead = await store.cleanIncoming();
    if (dead.length) log(`incoming/: removed ${dead.length} file(s) a crash left behind: ${dead.slice(0, 10).join(', ')}`);
    await baker.start();
    builds.start();
    if (pxe) {
      const port = app ? (app.server.address() as AddressInfo).port : pool!.port;
      if (!opts.publicUrl && !['0.0.0.0', '::', pxe.address].includes(httpAddr.host))
        log(`warning: HTTP listens on ${httpAddr.host}, which PXE clients on ${pxe.iface} cannot reach; use --http 0.0.0.0:${port}`);
      await pxe.start(opts.publicUrl?.replace(/\/+$/, '') ?? `http://${pxe.address}:${port}`, store);
    }
  } catch (e) {
    await close().catch(() => {});
    throw e;
  }

  const httpPort = app ? (app.server.address() as AddressInfo).port : pool!.port;
  const sshPort = (ssh.address() as AddressInfo).port;
  const shownHost = httpAddr.host === '0.0.0.0' || httpAddr.host === '::' ? '127.0.0.1' : httpAddr.host;
  const httpUrl = `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${httpPort}`;
  log(
    `HTTP on ${httpAddr.host}:${httpPort}${pool ? ` (${workers} worker processes)` : ''}, SSH on ${sshAddr.host}:${sshPort}, data in ${store.dataDir}`,
  );

  if (opts.handleSignals !== false) {
    const onSignal = (sig: NodeJS.Signals): void => {
      log(`${sig}: shutting down`);
      close().then(
        () => process.exit(0),
        (e) => {
          log(`shutdown failed: ${String(e)}`);
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }

  const httpWorkerPids = (): number[] => pool?.pids() ?? [];
  return { store, baker, events, httpUrl, httpPort, sshPort, sshHost: sshAddr.host, httpWorkerPids, pxe, limits, close };
}
