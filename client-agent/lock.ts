/**
 * Single-holder locks between agent processes (a commit from the CLI and one
 * from watch mode; the detached sender and a later `send`). A lock file holds
 * the owner's pid; a lock whose owner is dead is taken over.
 */
import { openSync, writeSync, closeSync, readFileSync, unlinkSync, mkdirSync, fsyncSync } from 'node:fs';
import { dirname } from 'node:path';

export interface Lock {
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock or returns null when a live process holds it. */
export function tryLock(path: string): Lock | null {
  mkdirSync(dirname(path), { recursive: true });
  for (let i = 0; i < 2; i++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      fsyncSync(fd);
      closeSync(fd);
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          try {
            if (lockOwner(path) === process.pid) unlinkSync(path);
          } catch {
            /* already gone */
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = lockOwner(path);
      if (owner !== null && alive(owner)) return null;
      try {
        unlinkSync(path); // stale: its owner died
      } catch {
        /* someone else removed it */
      }
    }
  }
  return null;
}

export function lockOwner(path: string): number | null {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}
