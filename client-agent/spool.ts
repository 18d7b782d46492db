/**
 * The spool: compressed archives waiting to be sent. An entry is
 * `<id>.tar.zst` plus `<id>.json`; the JSON is written last, so an entry
 * exists only once its archive is complete and fsynced. It lives on the backup
 * disk or under /.rw outside the upper dir, so a push waiting for a dead
 * server survives an agent restart (and, on a backup disk, a reboot).
 *
 * Each entry carries its push key (idempotency key), made when it is spooled
 * and stored in its metadata, so every resend of the entry, even by an agent
 * started after a crash, asks the server for the same push.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fsyncPathSync as fsyncDir, writeFileDurableSync as writeFileDurable } from '../protocol/durable.ts';

export interface SpoolMeta {
  id: string;
  profile: string;
  /** The commit the client booted; the upper dir is relative to it. */
  bootCommit: string;
  /** Pushes of one boot chain onto each other (see sender.ts). */
  bootKey: string;
  /** Sent as `--push-key`; absent only in entries spooled by an older agent (ensurePushKey adds one). */
  pushKey?: string;
  message: string;
  createdAt: string;
  bytes: number;
  entries: number;
  fileBytes: number;
}

/** Sortable, unique: creation time then randomness. */
export function newSpoolId(now = new Date()): string {
  const t = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.(\d{3})Z$/, '$1Z');
  return `${t}-${randomBytes(3).toString('hex')}`;
}

/** A new push key: 128 random bits, base64url (22 characters of [A-Za-z0-9_-]). */
export function newPushKey(): string {
  return randomBytes(16).toString('base64url');
}

/**
 * The entry's push key; an entry spooled by an agent that made none gets one
 * now, written durably before the first send so that all later sends reuse it.
 */
export function ensurePushKey(dir: string, meta: SpoolMeta): string {
  if (meta.pushKey) return meta.pushKey;
  const pushKey = newPushKey();
  writeFileDurable(metaPath(dir, meta.id), `${JSON.stringify({ ...meta, pushKey }, null, 2)}\n`);
  meta.pushKey = pushKey;
  return pushKey;
}

export const archivePath = (dir: string, id: string) => join(dir, `${id}.tar.zst`);
const metaPath = (dir: string, id: string) => join(dir, `${id}.json`);

/** Opens a temp file for a new archive; returns its fd and path. */
export function openSpoolTemp(dir: string, id: string): { fd: number; path: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `.tmp-${id}.tar.zst`);
  return { fd: openSync(path, 'w', 0o600), path };
}

/** fsync + rename the archive, then write its metadata: from here on the push is safe. */
export function finishSpool(dir: string, meta: SpoolMeta, tmpFd: number, tmpPath: string): void {
  fsyncSync(tmpFd);
  closeSync(tmpFd);
  renameSync(tmpPath, archivePath(dir, meta.id));
  fsyncDir(dir);
  writeFileDurable(metaPath(dir, meta.id), `${JSON.stringify(meta, null, 2)}\n`);
}

export function discardTemp(tmpFd: number | null, tmpPath: string): void {
  try {
    if (tmpFd !== null) closeSync(tmpFd);
  } catch {
    /* already closed */
  }
  rmSync(tmpPath, { force: true });
}

/** Complete entries, oldest first. */
export function listSpool(dir: string): SpoolMeta[] {
  if (!existsSync(dir)) return [];
  const out: SpoolMeta[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.json') || name.startsWith('.')) continue;
    const id = name.slice(0, -'.json'.length);
    if (!existsSync(archivePath(dir, id))) continue;
    try {
      out.push(JSON.parse(readFileSync(metaPath(dir, id), 'utf8')) as SpoolMeta);
    } catch {
      /* a half-written meta cannot exist (durable write); ignore garbage */
    }
  }
  return out;
}

/** Removes a sent entry: metadata first, so a crash in between leaves no half entry that looks pending. */
export function removeSpool(dir: string, id: string): void {
  rmSync(metaPath(dir, id), { force: true });
  rmSync(archivePath(dir, id), { force: true });
  fsyncDir(dir);
}

/** Keeps a refused archive (nothing is lost) out of the send queue. */
export function moveToFailed(dir: string, id: string): void {
  const failed = join(dir, 'failed');
  mkdirSync(failed, { recursive: true, mode: 0o700 });
  renameSync(archivePath(dir, id), archivePath(failed, id));
  renameSync(metaPath(dir, id), metaPath(failed, id));
  fsyncDir(failed);
  fsyncDir(dir);
}

/** Moves refused archives back into the queue (`send --retry-failed`). */
export function requeueFailed(dir: string): string[] {
  const failed = join(dir, 'failed');
  const ids = listSpool(failed).map((m) => m.id);
  for (const id of ids) {
    renameSync(archivePath(failed, id), archivePath(dir, id));
    renameSync(metaPath(failed, id), metaPath(dir, id));
  }
  if (ids.length) fsyncDir(dir);
  return ids;
}

/** Temp archives of commits that crashed midway. */
export function cleanTemps(dir: string): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    if (name.startsWith('.tmp-')) rmSync(join(dir, name), { force: true });
  }
}

export function spoolBytes(dir: string, id: string): number {
  try {
    return statSync(archivePath(dir, id)).size;
  } catch {
    return 0;
  }
}
