/**
 * SQL for enrollment (store/enrollment.ts): keys clients made themselves
 * that wait for an admin (pending_keys), the pushes they made meanwhile
 * (held_pushes) and per-profile CIDRs whose keys are approved at once
 * (enroll_cidrs).
 */
import type { DB } from '../db.ts';

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

export interface NewPendingKey {
  id: string;
  publicKey: string;
  algo: string;
  keyData: Buffer;
  fingerprint: string;
  mac: string | null;
  ip: string | null;
  hostname: string | null;
}

function toPending(r: Record<string, unknown>): PendingKey {
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

function toHeld(r: Record<string, unknown>): HeldPush {
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

const PENDING_WITH_COUNT = 'SELECT p.*, (SELECT COUNT(*) FROM held_pushes h WHERE h.key_id = p.id) AS held FROM pending_keys p';

export class EnrollmentTable {
  constructor(private readonly db: DB) {}

  /** Inserts the key, or refreshes when it was last seen (and any MAC, IP or host name it now gives). */
  upsertPending(k: NewPendingKey, now: number): void {
    this.db
      .prepare(
        `INSERT INTO pending_keys (id, public_key, algo, key_data, fingerprint, mac, ip, hostname, first_seen, last_seen)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET mac = COALESCE(excluded.mac, mac), ip = COALESCE(excluded.ip, ip),
           hostname = COALESCE(excluded.hostname, hostname), last_seen = excluded.last_seen`,
      )
      .run(k.id, k.publicKey, k.algo, k.keyData, k.fingerprint, k.mac, k.ip, k.hostname, now, now);
  }

  pending(): PendingKey[] {
    return (this.db.prepare(`${PENDING_WITH_COUNT} ORDER BY first_seen`).all() as Record<string, unknown>[]).map(toPending);
  }

  pendingKey(id: string): PendingKey | undefined {
    const r = this.db.prepare(`${PENDING_WITH_COUNT} WHERE id = ?`).get(id) as Record<string, unknown> | undefined;
    return r ? toPending(r) : undefined;
  }

  deletePending(id: string): void {
    this.db.prepare('DELETE FROM pending_keys WHERE id = ?').run(id);
  }

  insertHeld(p: HeldPush): void {
    this.db
      .prepare(
        'INSERT INTO held_pushes (id, key_id, profile, parent, message, push_key, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(p.id, p.keyId, p.profile, p.parent, p.message, p.pushKey, p.bytes, p.createdAt);
  }

  heldByPushKey(keyId: string, pushKey: string): HeldPush | undefined {
    const r = this.db.prepare('SELECT * FROM held_pushes WHERE key_id = ? AND push_key = ?').get(keyId, pushKey) as
      | Record<string, unknown>
      | undefined;
    return r ? toHeld(r) : undefined;
  }

  held(pushId: string): HeldPush | undefined {
    const r = this.db.prepare('SELECT * FROM held_pushes WHERE id = ?').get(pushId) as Record<string, unknown> | undefined;
    return r ? toHeld(r) : undefined;
  }

  heldOf(keyId: string): HeldPush[] {
    return (this.db.prepare('SELECT * FROM held_pushes WHERE key_id = ? ORDER BY created_at').all(keyId) as Record<string, unknown>[]).map(
      toHeld,
    );
  }

  deleteHeld(pushId: string): void {
    this.db.prepare('DELETE FROM held_pushes WHERE id = ?').run(pushId);
  }

  deleteHeldOf(keyId: string): void {
    this.db.prepare('DELETE FROM held_pushes WHERE key_id = ?').run(keyId);
  }

  cidr(profile: string): string | null {
    const r = this.db.prepare('SELECT cidr FROM enroll_cidrs WHERE profile = ?').get(profile) as { cidr: string } | undefined;
    return r?.cidr ?? null;
  }

  /** Sets PROFILE's enroll CIDR (null clears it). */
  setCidr(profile: string, cidr: string | null): void {
    if (cidr === null) this.db.prepare('DELETE FROM enroll_cidrs WHERE profile = ?').run(profile);
    else
      this.db
        .prepare('INSERT INTO enroll_cidrs (profile, cidr) VALUES (?, ?) ON CONFLICT(profile) DO UPDATE SET cidr = excluded.cidr')
        .run(profile, cidr);
  }
}
