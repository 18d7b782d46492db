/**
 * The baker turns queued pushes into commits, one at a time. Work arrives
 * four ways: a scan of pending pushes at start (pushes survive restarts and
 * SIGKILL), a direct call from the SSH endpoint, a chokidar watch over
 * incoming/ (archives another process dropped there), and the same scan
 * again every rescanMs, for what the watch cannot see: another process
 * (`strata keys approve`) moves an archive in before it commits the push's
 * row, so the watch can fire while the row is not there yet. Each id is queued at
 * most once at a time, and store.landPush is idempotent, so a push is never
 * committed twice.
 */
import path from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import PQueue from 'p-queue';
import type { Store } from '../store/store.ts';
import type { Push } from '../store/types.ts';
import { isStrataError } from '../store/errors.ts';
import type { EventHub } from './events.ts';
import { pushIdOfArchive } from '../protocol/push-incoming.ts';

export interface BakerDeps {
  store: Store;
  events?: EventHub;
  log?: (msg: string) => void;
  /** Watch incoming/ with chokidar (default true). */
  watch?: boolean;
  /** Wait before retrying a push whose bake failed for a reason that may pass (disk full). */
  retryMs?: number;
  /** How often to look for queued pushes nothing announced (default 5 s; 0: never). */
  rescanMs?: number;
}

export class Baker {
  private readonly queue = new PQueue({ concurrency: 1 });
  private readonly inFlight = new Set<string>();
  private readonly retries = new Map<string, NodeJS.Timeout>();
  private watcher: FSWatcher | null = null;
  private rescan: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly log: (msg: string) => void;

  constructor(private readonly deps: BakerDeps) {
    this.log = deps.log ?? (() => {});
  }

  async start(): Promise<void> {
    this.enqueuePending();
    const every = this.deps.rescanMs ?? 5000;
    if (every > 0) {
      this.rescan = setInterval(() => this.enqueuePending(), every);
      this.rescan.unref();
    }
    if (this.deps.watch !== false) {
      this.watcher = chokidar.watch(this.deps.store.incomingDir, { ignoreInitial: true, depth: 0 });
      this.watcher.on('add', (file: string) => {
        const id = pushIdOfArchive(path.basename(file));
        if (id) this.enqueue(id);
      });
      this.watcher.on('error', (e: unknown) => this.log(`baker: watch error: ${String(e)}`));
      await new Promise<void>((resolve) => this.watcher!.once('ready', () => resolve()));
    }
  }

  private enqueuePending(): void {
    try {
      for (const p of this.deps.store.pendingPushes()) this.enqueue(p.id);
    } catch (e) {
      this.log(`baker: cannot list queued pushes: ${String(e)}`);
    }
  }

  /** Queue a push id unless it is already queued or no longer pending. */
  enqueue(id: string): void {
    // A push waiting out its retry delay is not taken early by the rescan.
    if (this.stopped || this.inFlight.has(id) || this.retries.has(id)) return;
    let push: Push;
    try {
      push = this.deps.store.getPush(id);
    } catch {
      // The watcher can see an archive before its row is committed; the SSH endpoint enqueues it right after.
      return;
    }
    if (push.state !== 'queued' && push.state !== 'baking') return;
    this.inFlight.add(id);
    void this.queue.add(() => this.bake(id)).catch((e) => this.log(`baker: ${String(e)}`));
  }

  private async bake(id: string): Promise<void> {
    const { store, events } = this.deps;
    try {
      store.setPushState(id, 'baking');
      events?.emit('push', { id, state: 'baking' });
      const p = await store.landPush(id);
      this.log(
        `baker: push ${id} ${p.state}${p.commit ? ` ${p.commit}` : ''}${p.branch ? ` branch ${p.branch}` : ''}${p.reason ? `: ${p.reason}` : ''}`,
      );
      events?.emit('push', { id, profile: p.profile, state: p.state, commit: p.commit, branch: p.branch, reason: p.reason });
      if (p.state === 'committed')
        events?.emit('ref', { action: 'push', profile: p.profile, ref: p.branch ?? p.profile, commit: p.commit });
    } catch (e) {
      // Not a verdict on the push (disk full, I/O error): keep it queued and try again later.
      this.log(`baker: push ${id} failed, will retry: ${isStrataError(e) ? `${e.code} ${e.message}` : String(e)}`);
      try {
        store.setPushState(id, 'queued');
      } catch {
        /* store closed */
      }
      events?.emit('push', { id, state: 'queued' });
      if (!this.stopped) {
        const t = setTimeout(() => {
          this.retries.delete(id);
          this.enqueue(id);
        }, this.deps.retryMs ?? 60_000);
        t.unref();
        this.retries.set(id, t);
      }
    } finally {
      this.inFlight.delete(id);
    }
  }

  /** Resolves when nothing is queued or baking. */
  async idle(): Promise<void> {
    await this.queue.onIdle();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.rescan) clearInterval(this.rescan);
    this.rescan = null;
    for (const t of this.retries.values()) clearTimeout(t);
    this.retries.clear();
    this.queue.clear();
    await this.watcher?.close();
    this.watcher = null;
    await this.queue.onIdle();
  }
}
