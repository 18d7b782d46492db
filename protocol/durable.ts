/**
 * Durable writes, the one way every process makes data survive power loss:
 * data fsynced, then renamed into place, then the directory fsynced (a rename
 * is on disk only once its directory entry is). The store's objects, the SSH
 * endpoint's incoming archives and the agent's spool and state all use these.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsc, fsyncSync, mkdirSync, openSync, promises as fsp, renameSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** fsync a file or a directory by path (for a directory: the names created or renamed in it). */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await fsp.open(path, fsc.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsyncPath, for callers that must not yield (the agent's spool under its lock). */
export function fsyncPathSync(path: string): void {
  const fd = openSync(path, fsc.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync a directory so a rename or create in it survives power loss. */
export const fsyncDir = fsyncPath;

/** Moves an fsynced temp file over `dest` and makes the rename durable. */
export async function renameDurable(tmp: string, dest: string): Promise<void> {
  await fsp.rename(tmp, dest);
  await fsyncPath(dirname(dest));
}

/**
 * Writes a small file crash-safely: temp file beside it, fsync, rename,
 * fsync the directory. A reader sees the old content or the new, never a torn file.
 */
export function writeFileDurableSync(path: string, data: string | Buffer, mode = 0o600): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.tmp-${basename(path)}-${randomBytes(4).toString('hex')}`);
  const fd = openSync(tmp, 'w', mode);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  fsyncPathSync(dir);
}
