/**
 * `watch`: chokidar over the upper dir; once changes have been quiet for
 * `quietMs`, commit with a generated message and send in the background.
 * Never two commits at once: commits run on a one-at-a-time queue (and the
 * commit lock keeps out a `commit` from the command line too).
 */
import chokidar from 'chokidar';
import { relative } from 'node:path';
import type { AgentConfig } from './config.ts';
import { commitToSpool, excluderFor } from './commit.ts';
import { serialQueue } from './queue.ts';
import { sendPending } from './sender.ts';
import { listSpool } from './spool.ts';
import { isStrataError } from '../store/errors.ts';

export interface WatchOptions {
  log: (msg: string) => void;
  /** Called after each spooled commit (tests, status output). */
  onCommit?: (spoolId: string) => void;
  /** Send spooled pushes from this process (default true). */
  send?: boolean;
  signal?: AbortSignal;
}

/** The generated commit message for a set of changed paths (pure). */
export function autoMessage(paths: string[], now = new Date()): string {
  const shown = paths.slice(0, 3).join(', ');
  const more = paths.length > 3 ? ` and ${paths.length - 3} more` : '';
  return `auto: ${paths.length} change${paths.length === 1 ? '' : 's'} (${shown}${more}) at ${now.toISOString()}`;
}

export async function watchAndCommit(cfg: AgentConfig, o: WatchOptions): Promise<void> {
  const exclude = excluderFor(cfg);
  const queue = serialQueue();
  const changed = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  let sending: Promise<unknown> | null = null;
  const sendAbort = new AbortController();

  const kickSender = () => {
    if (o.send === false || sending) return;
    sending = sendPending(cfg, { attempts: Infinity, log: o.log, signal: sendAbort.signal })
      .catch((e: unknown) => o.log(`send: ${(e as Error).message}`))
      .finally(() => {
        sending = null;
        if (!sendAbort.signal.aborted && listSpool(cfg.spoolDir).length > 0) setTimeout(kickSender, 1000).unref();
      });
  };

  const commitNow = async () => {
    const paths = [...changed].sort();
    changed.clear();
    try {
      const r = await commitToSpool(cfg, { message: autoMessage(paths), log: o.log });
      o.log(`committed ${paths.length} changed path(s) as ${r.meta.id}`);
      o.onCommit?.(r.meta.id);
      kickSender();
    } catch (e) {
      if (isStrataError(e) && e.code === 'E_NOTHING_TO_DO') o.log(e.message);
      else {
        o.log(`commit failed: ${(e as Error).message}; trying again after the next quiet period`);
        for (const p of paths) changed.add(p);
        schedule();
      }
    }
  };

  function schedule() {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      void queue.add(commitNow);
    }, cfg.quietMs);
  }

  const watcher = chokidar.watch(cfg.upper, {
    ignoreInitial: true,
    followSymlinks: false,
    persistent: true,
    ignored: (p: string) => {
      const rel = relative(cfg.upper, p);
      return rel !== '' && exclude(rel);
    },
  });
  watcher.on('all', (_event, p) => {
    changed.add(relative(cfg.upper, p) || '.');
    schedule();
  });
  watcher.on('error', (e) => o.log(`watch error: ${(e as Error).message}`));
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  o.log(`watching ${cfg.upper}; committing after ${cfg.quietMs / 1000} s without changes`);
  kickSender(); // pushes left from before a restart

  await new Promise<void>((resolve) => {
    if (o.signal?.aborted) return resolve();
    o.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  if (timer) clearTimeout(timer);
  await watcher.close();
  await queue.onIdle();
  sendAbort.abort();
  await sending;
}
