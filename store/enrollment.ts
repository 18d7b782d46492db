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
  CREATE TABLE IF NOT EXISTS enroll_cidrs (profile TEXT PRIMARY KEY, cidr TEXT NOT NULL);
`;

/** An IPv4 address (also IPv4-mapped IPv6) as a 32-bit number, or null (pure). */
function ipv4(ip: string): number | null {
  const m = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/i.exec(ip.trim());
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  if (parts.some((n) => n > 255)) return null;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

/** Checks "A.B.C.D/N" and returns it normalised, or throws E_BAD_ARGUMENT (pure). */
export function parseCidr(cidr: string): { base: number; bits: number } {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(cidr.trim());
  const base = m ? ipv4(m[1]!) : null;
  const bits = m ? Number(m[2]) : -1;
  if (base === null || bits < 0 || bits > 32)
    throw new StrataError('E_BAD_ARGUMENT', `not an IPv4 CIDR: ${JSON.stringify(cidr)} (e.g. 10.0.0.0/24)`);
  return { base, bits };
}

/** Whether IP lies in CIDR (IPv4 only; anything else is outside) (pure). */
export function ipInCidr(ip: string, cidr: string): boolean {
  const a = ipv4(ip);
  if (a === null) return false;
  const { base, bits } = parseCidr(cidr);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (a & mask) === (base & mask);
}

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

  /** A lab's shortcut: keys pushing to PROFILE from inside CIDR are approved at once ("none" clears it). */
  setEnrollCidr(profile: string, cidr: string): string | null {
    if (cidr === 'none') {
      this.store.db.prepare('DELETE FROM enroll_cidrs WHERE profile = ?').run(profile);
      return null;
    }
    parseCidr(cidr);
    this.store.db
      .prepare('INSERT INTO enroll_cidrs (profile, cidr) VALUES (?, ?) ON CONFLICT(profile) DO UPDATE SET cidr = excluded.cidr')
      .run(profile, cidr.trim());
    return cidr.trim();
  }

  enrollCidr(profile: string): string | null {
    const r = this.store.db.prepare('SELECT cidr FROM enroll_cidrs WHERE profile = ?').get(profile) as { cidr: string } | undefined;
    return r?.cidr ?? null;
  }

  /** Approves the pending key for PROFILE when its address is inside the profile's enroll CIDR; the released push ids, or null. */
  autoApprove(id: string, profile: string): string[] | null {
    const k = this.get(id);
    const cidr = this.enrollCidr(profile);
    if (!cidr || !k.ip || !ipInCidr(k.ip, cidr)) return null;
    return this.approve(id, { admin: false, profiles: [profile] }).released;
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
