/**
 * Streaming zstd as a child process: multi-threaded (-T0) where the Node
 * bindings would not be, and the compressed bytes go straight from zstd to the
 * spool file descriptor without passing through Node.
 */
import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { StrataError } from '../store/errors.ts';

export interface Compressor {
  /** Write the tar here. */
  input: Writable;
  /** Resolves when zstd has written everything and exited 0. */
  done: Promise<void>;
  kill(): void;
}

/** zstd argv for a level and thread count (0 = one thread per core). Pure. */
export function zstdArgs(level: number, threads: number): string[] {
  return [`-T${threads}`, `-${level}`, '-q', '-c'];
}

export function startZstd(level: number, threads: number, outFd: number): Compressor {
  const child = spawn('zstd', zstdArgs(level, threads), { stdio: ['pipe', outFd, 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => {
    if (err.length < 4096) err += b.toString();
  });
  // An EPIPE on the tar side surfaces as zstd's exit status below.
  child.stdin!.on('error', () => {});
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' ? new StrataError('E_BAD_COMPRESSION', 'zstd is not installed: install the zstd package') : e),
    );
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new StrataError('E_BAD_COMPRESSION', `zstd failed (${signal ?? `exit ${code}`}): ${err.trim()}`));
    });
  });
  return { input: child.stdin!, done, kill: () => child.kill('SIGKILL') };
}
