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
 * The rows live in store/tables/enrollment.ts (schema: migration 4 in
 * store/db.ts); this module holds the rules.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { StrataError } from './errors.ts';
import type { EnrollmentTable, HeldPush, PendingKey } from './tables/enrollment.ts';
import type { SshKey } from './types.ts';

export type { HeldPush, PendingKey } from './tables/enrollment.ts';

/** The part of Store enrollment needs (Store itself satisfies it). */
export interface EnrollmentStore {
  readonly enrollmentTable: EnrollmentTable;
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
  private readonly rows: EnrollmentTable;

  constructor(private readonly store: EnrollmentStore) {
    this.rows = store.enrollmentTable;
  }

  /** Where a held push's archive waits (beside the queue, never picked up by the baker). */
  heldArchivePath(pushId: string): string {
    return path.join(this.store.incomingDir, `held-${pushId}.tar.zst`);
  }

  /** Records (or refreshes) an unknown key that proved it holds its private half. */
  notePending(k: { algo: string; keyData: Buffer; mac?: string | null; ip?: string | null; hostname?: string | null }): PendingKey {
    const id = pendingIdOf(k.keyData);
    this.rows.upsertPending(
      {
        id,
        publicKey: `${k.algo} ${k.keyData.toString('base64')}`,
        algo: k.algo,
        keyData: k.keyData,
        fingerprint: fingerprintOf(k.keyData),
        mac: k.mac ?? null,
        ip: k.ip ?? null,
        hostname: k.hostname ?? null,
      },
      Date.now(),
    );
    return this.get(id);
  }

  list(): PendingKey[] {
    return this.rows.pending();
  }

  get(id: string): PendingKey {
    const k = this.rows.pendingKey(id);
    if (!k) throw new StrataError('E_NOT_FOUND', `no pending key ${id}; list them with strata keys pending`);
    return k;
  }

  /** Records a push from a pending key whose archive is already at heldArchivePath(id). Same push key: the first one's id. */
  hold(p: Omit<HeldPush, 'createdAt'>): HeldPush {
    if (p.pushKey) {
      const same = this.rows.heldByPushKey(p.keyId, p.pushKey);
      if (same) return same;
    }
    const held = { ...p, createdAt: Date.now() };
    this.rows.insertHeld(held);
    return held;
  }

  findHeld(pushId: string): HeldPush | null {
    return this.rows.held(pushId) ?? null;
  }

  /** Admits the key under NAME (default client-<id>); its held pushes join the bake queue. */
  approve(id: string, opts: { admin: boolean; profiles: string[]; name?: string }): { key: SshKey; released: string[] } {
    const pending = this.get(id);
    const key = this.store.addKey(opts.name ?? `client-${id}`, pending.publicKey, { admin: opts.admin, profiles: opts.profiles });
    const released: string[] = [];
    for (const h of this.rows.heldOf(id)) {
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
      this.rows.deleteHeld(h.id);
      released.push(h.id);
    }
    this.drop(id);
    return { key, released };
  }

  /** A lab's shortcut: keys pushing to PROFILE from inside CIDR are approved at once ("none" clears it). */
  setEnrollCidr(profile: string, cidr: string): string | null {
    if (cidr === 'none') {
      this.rows.setCidr(profile, null);
      return null;
    }
    parseCidr(cidr);
    this.rows.setCidr(profile, cidr.trim());
    return cidr.trim();
  }

  enrollCidr(profile: string): string | null {
    return this.rows.cidr(profile);
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
    const held = this.rows.heldOf(id);
    for (const h of held) fs.rmSync(this.heldArchivePath(h.id), { force: true });
    this.rows.deleteHeldOf(id);
    this.rows.deletePending(id);
    return held.map((h) => h.id);
  }
}
