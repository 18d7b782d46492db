/**
 * Cleaning incoming/ after a crash. A crash leaves there what nothing will
 * ever read again: uploads cut short (`<id>.tar.zst.tmp-<pid>`), archives of
 * pushes that were committed or rejected just before their archive was
 * deleted, archives renamed into place whose push was never recorded, and
 * held archives whose key was dropped. gc and the server at start remove
 * those, and only those: never the archive of a push still queued or held,
 * never the temp file of an upload in progress (its writer is alive and it
 * was written to within the grace time).
 */
import { promises as fsp, type Stats } from 'node:fs';
import { join } from 'node:path';
import { parseIncomingTemp, pushIdOfArchive } from '../protocol/push-incoming.ts';
import type { StoreCore } from './core.ts';

const HELD_PREFIX = 'held-';

/** Whether process PID is gone (a pid we may not signal is alive: it is someone's). */
function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export type IncomingVerdict = 'keep' | 'remove';

/**
 * What to do with one file of incoming/ (pure over what it is given): the
 * grace time covers the moments between an upload's rename and its row, and
 * the pid test an upload whose writer died. An unknown name is kept.
 */
export function incomingVerdict(
  name: string,
  f: {
    ageMs: number;
    graceMs: number;
    pushState: (id: string) => string | undefined;
    isHeld: (id: string) => boolean;
    pidGone: (pid: number) => boolean;
    ownPid: number;
  },
): IncomingVerdict {
  const old = f.ageMs > f.graceMs;
  const temp = parseIncomingTemp(name);
  if (temp) {
    // A pid can be reused after a restart (the same pid in a container): an old file goes anyway.
    if (temp.pid !== null && temp.pid !== f.ownPid && f.pidGone(temp.pid)) return 'remove';
    return old ? 'remove' : 'keep';
  }
  const id = pushIdOfArchive(name);
  if (id === null) return 'keep';
  if (id.startsWith(HELD_PREFIX)) {
    const pushId = id.slice(HELD_PREFIX.length);
    return !f.isHeld(pushId) && f.pushState(pushId) === undefined && old ? 'remove' : 'keep';
  }
  const state = f.pushState(id);
  if (state === 'committed' || state === 'rejected') return 'remove';
  if (state === undefined) return old ? 'remove' : 'keep';
  return 'keep';
}

/** Removes the dead files of incoming/ (incomingVerdict; only lists them with dryRun); returns their names. */
export async function cleanIncoming(core: StoreCore, opts: { now?: number; dryRun?: boolean } = {}): Promise<string[]> {
  const now = opts.now ?? Date.now();
  const removed: string[] = [];
  const names = await fsp.readdir(core.incomingDir).catch(() => [] as string[]);
  for (const name of names.sort()) {
    const path = join(core.incomingDir, name);
    const st: Stats | null = await fsp.stat(path).catch(() => null);
    if (!st?.isFile()) continue;
    const verdict = incomingVerdict(name, {
      ageMs: now - st.mtimeMs,
      graceMs: core.config.gcGraceMs,
      pushState: (id) => core.t.pushes.get(id)?.state,
      isHeld: (id) => core.t.enrollment.held(id) !== undefined,
      pidGone: processGone,
      ownPid: process.pid,
    });
    if (verdict === 'remove') {
      if (!opts.dryRun) await fsp.rm(path, { force: true });
      removed.push(name);
    }
  }
  return removed;
}
