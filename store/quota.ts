/**
 * Space a push may take: the total store quota, the per-key quota and the
 * free-space reserve. The reserve is what keeps the store working at the
 * limit: pushes stop while there is still room for the database, client
 * leases and gc (which must write to free anything).
 *
 * pushRefusal() is the decision, pure over the numbers; pushSpaceFacts()
 * gathers them (the database's sums, the filesystem's free space). The SSH
 * endpoint asks again as an upload grows, adding what uploads in flight have
 * written since (they are not in the database yet).
 */
import { statfs } from 'node:fs/promises';
import type { StoreCore } from './core.ts';
import { StrataError } from './errors.ts';
import { keyPushBytes, storedBytes } from './tables/usage.ts';

const GIB = 1024 ** 3;

export interface PushSpaceFacts {
  /** Layers plus queued push archives (database). */
  stored: number;
  /** This key's queued and still-stored pushes (database). */
  keyStored: number;
  /** Bytes free for an unprivileged writer on the data directory's filesystem. */
  free: number;
  /** The filesystem's size (the default reserve is a share of it). */
  fsSize: number;
}

export interface PushSpaceLimits {
  storeQuotaBytes: number;
  keyQuotaBytes: number;
  reserveBytes?: number;
}

/** The reserve in force: the configured one, else 2% of the filesystem, at most 1 GiB. */
export function reserveFor(limits: PushSpaceLimits, fsSize: number): number {
  return limits.reserveBytes ?? Math.min(GIB, Math.floor(fsSize * 0.02));
}

const show = (n: number): string =>
  n >= GIB ? `${(n / GIB).toFixed(1)} GiB` : n >= 1024 ** 2 ? `${(n / 1024 ** 2).toFixed(1)} MiB` : `${Math.ceil(n / 1024)} KiB`;

/**
 * Why `extra` more bytes (this upload and the ones in flight beside it) may
 * not be stored, or null when they may. `keyExtra` is the share of `extra`
 * that belongs to the pushing key.
 */
export function pushRefusal(
  f: PushSpaceFacts,
  limits: PushSpaceLimits,
  key: string,
  use: { extra: number; keyExtra: number; written: number },
): StrataError | null {
  const reserve = reserveFor(limits, f.fsSize);
  if (f.free - use.written < reserve)
    return new StrataError(
      'E_NO_SPACE',
      `no space left for pushes: the data directory's free space is down to its reserve of ${show(reserve)} (kept for the database and gc); the admin must free space (strata gc) or grow the disk`,
      { reserve },
    );
  if (limits.storeQuotaBytes > 0 && f.stored + use.extra > limits.storeQuotaBytes)
    return new StrataError(
      'E_QUOTA_EXCEEDED',
      `the store's quota of ${show(limits.storeQuotaBytes)} is used up (${show(f.stored)} stored); nothing was stored; wait for gc to drop old commits or ask the admin to raise limits.store_quota`,
      { quota: limits.storeQuotaBytes, used: f.stored },
    );
  if (limits.keyQuotaBytes > 0 && f.keyStored + use.keyExtra > limits.keyQuotaBytes)
    return new StrataError(
      'E_QUOTA_EXCEEDED',
      `key ${key} is over its quota of ${show(limits.keyQuotaBytes)} (${show(f.keyStored)} in queued and stored pushes); nothing was stored; wait for queued pushes to bake and old commits to be collected, or ask the admin to raise limits.key_quota`,
      { quota: limits.keyQuotaBytes, used: f.keyStored, key },
    );
  return null;
}

export async function pushSpaceFacts(core: StoreCore, author: string): Promise<PushSpaceFacts> {
  const st = await statfs(core.dataDir);
  return {
    stored: storedBytes(core.db),
    keyStored: keyPushBytes(core.db, author),
    free: st.bavail * st.bsize,
    fsSize: st.blocks * st.bsize,
  };
}
