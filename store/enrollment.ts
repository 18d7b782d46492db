/**
 * Enrollment of client keys, as admins know it from Salt and Puppet: a
 * client's agent makes its own SSH key; the first time the server sees it,
 * the key is recorded as *pending* (with the MAC, IP and host name the
 * client gave) and whatever it pushes is *held*: stored, never baked. An
 * admin approves the key (it becomes a normal key for the profiles given
 * and its held pushes enter the bake queue under their original ids, so the
 * agent that keeps asking for its push's status sees it land) or rejects it
 * (the key and its held archives are deleted).
 *
 * The tables are created on first use (CREATE TABLE IF NOT EXISTS) rather
 * than by a numbered migration: enrollment is additive and a data directory
 * that never saw a client key is unchanged.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { StrataError } from './errors.ts';
import type { SshKey } from './types.ts';

/** The part of Store enrollment needs (Store itself satisfies it). */
export interface EnrollmentStore {
  readonly db: import('./db.ts').DB;
  readonly incomingDir: string;
  addKey(name: string, publicKeyLine: string, opts: { admin: boolean; profiles: string[] }): SshKey;
  createPush(p: {
    id: string;
    profile: string;
    parent: string;
    message: string;
    author: string;
    bytes: number;
    pushKey?: string | null;
  }): unknown;
}

export interface PendingKey {
  id: string;
  publicKey: string;
  fingerprint: string;
  mac: string | null;
  ip: string | null;
  hostname: string | null;
  firstSeen: number;
  lastSeen: number;
  heldPushes: number;
}

export interface HeldPush {
  id: string;
  keyId: string;
  profile: string;
  parent: string;
  message: string;
  pushKey: string | null;
  bytes: number;
  createdAt: number;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS pending_keys (
    id TEXT PRIMARY KEY, public_key TEXT NOT NULL, algo TEXT NOT NULL, key_data BLOB NOT NULL,
    fingerprint TEXT NOT NULL, mac TEXT, ip TEXT, hostname TEXT, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL);
  CREATE UNIQUE INDEX IF NOT EXISTS pending_keys_data ON pending_keys (algo, key_data);
  CREATE TABLE IF NOT EXISTS held_pushes (
    id TEXT PRIMARY KEY, key_id TEXT NOT NULL, profile TEXT NOT NULL, parent TEXT NOT NULL, message TEXT NOT NULL,
    push_key TEXT, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL);
`;

/** OpenSSH's SHA256 fingerprint of a key blob (pure). */
export function fingerprintOf(keyData: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyData).digest('base64').replace(/=+$/, '')}`;
}

/** A pending key's id: short, stable for one key, safe in a shell word (pure). */
export function pendingIdOf(keyData: Buffer): string {
  return `k${createHash('sha256').update(keyData).digest('hex').slice(0, 10)}`;
}

export class Enrollment {
  constructor(private readonly store: EnrollmentStore) {
    store.db.exec(SCHEMA);
  }

  /** Where a held push's archive waits (beside the queue, never picked up by the baker). */
  heldArchivePath(pushId: string): string {
    return path.join(this.store.incomingDir, `held-${pushId}.tar.zst`);
  }

  /** Records (or refreshes) an unknown key that proved it holds its private half. */
  notePending(k: { algo: string; keyData: Buffer; mac?: string | null; ip?: string | null; hostname?: string | null }): PendingKey {
    const id = pendingIdOf(k.keyData);
    const now = Date.now();
    const publicKey = `${k.algo} ${k.keyData.toString('base64')}`;
    this.store.db
      .prepare(
        `INSERT INTO pending_keys (id, public_key, algo, key_data, fingerprint, mac, ip, hostname, first_seen, last_seen)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET mac = COALESCE(excluded.mac, mac), ip = COALESCE(excluded.ip, ip),
           hostname = COALESCE(excluded.hostname, hostname), last_seen = excluded.last_seen`,
      )
      .run(id, publicKey, k.algo, k.keyData, fingerprintOf(k.keyData), k.mac ?? null, k.ip ?? null, k.hostname ?? null, now, now);
    return this.get(id);
  }

  list(): PendingKey[] {
    const rows = this.store.db
      .prepare('SELECT p.*, (SELECT COUNT(*) FROM held_pushes h WHERE h.key_id = p.id) AS held FROM pending_keys p ORDER BY first_seen')
      .all() as Record<string, unknown>[];
    return rows.map(rowToPending);
  }

  get(id: string): PendingKey {
    const r = this.store.db
      .prepare('SELECT p.*, (SELECT COUNT(*) FROM held_pushes h WHERE h.key_id = p.id) AS held FROM pending_keys p WHERE id = ?')
      .get(id) as Record<string, unknown> | undefined;
    if (!r) throw new StrataError('E_NOT_FOUND', `no pending key ${id}; list them with strata keys pending`);
    return rowToPending(r);
  }

  /** Records a push from a pending key whose archive is already at heldArchivePath(id). Same push key: the first one's id. */
  hold(p: Omit<HeldPush, 'createdAt'>): HeldPush {
    if (p.pushKey) {
      const same = this.store.db.prepare('SELECT * FROM held_pushes WHERE key_id = ? AND push_key = ?').get(p.keyId, p.pushKey) as
        | Record<string, unknown>
        | undefined;
      if (same) return rowToHeld(same);
    }
    const createdAt = Date.now();
    this.store.db
      .prepare(
        'INSERT INTO held_pushes (id, key_id, profile, parent, message, push_key, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(p.id, p.keyId, p.profile, p.parent, p.message, p.pushKey, p.bytes, createdAt);
    return { ...p, createdAt };
  }

  findHeld(pushId: string): HeldPush | null {
    const r = this.store.db.prepare('SELECT * FROM held_pushes WHERE id = ?').get(pushId) as Record<string, unknown> | undefined;
    return r ? rowToHeld(r) : null;
  }

  private heldOf(keyId: string): HeldPush[] {
    return (
      this.store.db.prepare('SELECT * FROM held_pushes WHERE key_id = ? ORDER BY created_at').all(keyId) as Record<string, unknown>[]
    ).map(rowToHeld);
  }

  /** Admits the key under NAME (default client-<id>); its held pushes join the bake queue. */
  approve(id: string, opts: { admin: boolean; profiles: string[]; name?: string }): { key: SshKey; released: string[] } {
    const pending = this.get(id);
    const key = this.store.addKey(opts.name ?? `client-${id}`, pending.publicKey, { admin: opts.admin, profiles: opts.profiles });
    const released: string[] = [];
    for (const h of this.heldOf(id)) {
      if (!key.admin && !key.profiles.includes(h.profile)) continue;
      fs.renameSync(this.heldArchivePath(h.id), path.join(this.store.incomingDir, `${h.id}.tar.zst`));
      this.store.createPush({
        id: h.id,
        profile: h.profile,
        parent: h.parent,
        message: h.message,
        author: key.name,
        bytes: h.bytes,
        pushKey: h.pushKey,
      });
      this.store.db.prepare('DELETE FROM held_pushes WHERE id = ?').run(h.id);
      released.push(h.id);
    }
    this.drop(id);
    return { key, released };
  }

  /** Drops the key and deletes every push it made while pending. */
  reject(id: string): { deleted: string[] } {
    this.get(id);
    const deleted = this.drop(id);
    return { deleted };
  }

  private drop(id: string): string[] {
    const held = this.heldOf(id);
    for (const h of held) fs.rmSync(this.heldArchivePath(h.id), { force: true });
    this.store.db.prepare('DELETE FROM held_pushes WHERE key_id = ?').run(id);
    this.store.db.prepare('DELETE FROM pending_keys WHERE id = ?').run(id);
    return held.map((h) => h.id);
  }
}

function rowToPending(r: Record<string, unknown>): PendingKey {
  return {
    id: r.id as string,
    publicKey: r.public_key as string,
    fingerprint: r.fingerprint as string,
    mac: (r.mac as string | null) ?? null,
    ip: (r.ip as string | null) ?? null,
    hostname: (r.hostname as string | null) ?? null,
    firstSeen: r.first_seen as number,
    lastSeen: r.last_seen as number,
    heldPushes: Number(r.held ?? 0),
  };
}

function rowToHeld(r: Record<string, unknown>): HeldPush {
  return {
    id: r.id as string,
    keyId: r.key_id as string,
    profile: r.profile as string,
    parent: r.parent as string,
    message: r.message as string,
    pushKey: (r.push_key as string | null) ?? null,
    bytes: r.bytes as number,
    createdAt: r.created_at as number,
  };
}
