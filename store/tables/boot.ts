/**
 * SQL for what kernels that follow the tree remember beside the manifest
 * (store/commit-boot.ts): where each commit's kernel came from, initramfs
 * builds by (modules content, hook) for reuse, and per-profile kernel pins.
 */
import type { DB } from '../db.ts';
import type { CommitId } from '../types.ts';

/** Where a commit's kernel came from. */
export type BootSource = 'tree' | 'parent' | 'override' | 'iso' | 'none';

export interface BootRecord {
  source: BootSource;
  /** The kernel version booted, when known. */
  version: string | null;
  /** kernelFingerprint of the commit's tree (null: the tree has no kernel). */
  treeKey: string | null;
  /** One line for `strata show`. */
  note: string;
}

export interface InitrdBuild {
  digest: string;
  size: number;
}

export class BootTable {
  constructor(private readonly db: DB) {}

  pin(profile: string): string | null {
    const r = this.db.prepare('SELECT version FROM kernel_pins WHERE profile = ?').get(profile) as { version: string } | undefined;
    return r?.version ?? null;
  }

  /** Pins PROFILE to kernel VERSION (null: follow the newest kernel in the tree). */
  setPin(profile: string, version: string | null): void {
    if (version === null) this.db.prepare('DELETE FROM kernel_pins WHERE profile = ?').run(profile);
    else
      this.db
        .prepare('INSERT INTO kernel_pins (profile, version) VALUES (?, ?) ON CONFLICT(profile) DO UPDATE SET version = excluded.version')
        .run(profile, version);
  }

  record(commit: CommitId): BootRecord | null {
    const r = this.db.prepare('SELECT source, version, tree_key, note FROM commit_boot WHERE commit_id = ?').get(commit) as
      | { source: BootSource; version: string | null; tree_key: string | null; note: string }
      | undefined;
    return r ? { source: r.source, version: r.version, treeKey: r.tree_key, note: r.note } : null;
  }

  /** Must run inside the transaction that creates the commit; the first record of a commit id stays. */
  insertRecord(commit: CommitId, r: BootRecord): void {
    this.db
      .prepare('INSERT OR IGNORE INTO commit_boot (commit_id, source, version, tree_key, note) VALUES (?, ?, ?, ?, ?)')
      .run(commit, r.source, r.version, r.treeKey, r.note);
  }

  /** gc: the commits are gone, so is where their kernels came from. */
  removeRecords(commits: Iterable<CommitId>): void {
    const del = this.db.prepare('DELETE FROM commit_boot WHERE commit_id = ?');
    for (const id of commits) del.run(id);
  }

  /** gc: builds whose initramfs blob was deleted are built again when next needed, not looked up. */
  removeInitrdBuilds(digests: Iterable<string>): void {
    const del = this.db.prepare('DELETE FROM initrd_builds WHERE initrd_digest = ?');
    for (const d of digests) del.run(d);
  }

  initrdBuild(key: string): InitrdBuild | null {
    const r = this.db.prepare('SELECT initrd_digest, initrd_size FROM initrd_builds WHERE key = ?').get(key) as
      | { initrd_digest: string; initrd_size: number }
      | undefined;
    return r ? { digest: r.initrd_digest, size: r.initrd_size } : null;
  }

  putInitrdBuild(key: string, kernelVersion: string, ref: InitrdBuild, now: number): void {
    this.db
      .prepare('INSERT OR REPLACE INTO initrd_builds (key, kernel_version, initrd_digest, initrd_size, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(key, kernelVersion, ref.digest, ref.size, now);
  }
}
