/** SQL for the profiles table (a profile's settings; its head is its branch in refs). */
import type { DB } from '../db.ts';
import type { Compressor, Profile } from '../types.ts';

/** A profile row as stored; `head` is filled in from refs. */
export type ProfileRow = Omit<Profile, 'head'>;

interface Raw {
  name: string;
  cmdline: string;
  compressor: Compressor;
  level: number | null;
  kernel_digest: string | null;
  kernel_size: number | null;
  initrd_digest: string | null;
  initrd_size: number | null;
  created_at: number;
}

function fromRaw(r: Raw): ProfileRow {
  return {
    name: r.name,
    cmdline: r.cmdline,
    compressor: r.compressor,
    level: r.level ?? null,
    kernel: r.kernel_digest ? { digest: r.kernel_digest, size: r.kernel_size as number } : null,
    initrd: r.initrd_digest ? { digest: r.initrd_digest, size: r.initrd_size as number } : null,
    createdAt: r.created_at,
  };
}

export class ProfilesTable {
  constructor(private readonly db: DB) {}

  get(name: string): ProfileRow | undefined {
    const r = this.db.prepare('SELECT * FROM profiles WHERE name = ? AND name NOT IN (SELECT name FROM removed_profiles)').get(name) as
      | Raw
      | undefined;
    return r ? fromRaw(r) : undefined;
  }

  all(): ProfileRow[] {
    return (
      this.db.prepare('SELECT * FROM profiles WHERE name NOT IN (SELECT name FROM removed_profiles) ORDER BY name').all() as Raw[]
    ).map(fromRaw);
  }

  insert(p: ProfileRow): void {
    // A removed profile's name may be taken again; its undo is then gone.
    if (this.db.prepare('DELETE FROM removed_profiles WHERE name = ?').run(p.name).changes)
      this.db.prepare('DELETE FROM profiles WHERE name = ?').run(p.name);
    this.db
      .prepare(`INSERT INTO profiles (name, cmdline, compressor, level, kernel_digest, kernel_size, initrd_digest, initrd_size, created_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(
        p.name,
        p.cmdline,
        p.compressor,
        p.level,
        p.kernel?.digest ?? null,
        p.kernel?.size ?? null,
        p.initrd?.digest ?? null,
        p.initrd?.size ?? null,
        p.createdAt,
      );
  }

  setCmdline(name: string, cmdline: string): void {
    this.db.prepare('UPDATE profiles SET cmdline = ? WHERE name = ?').run(cmdline, name);
  }

  setCompression(name: string, compressor: Compressor, level: number | null): void {
    this.db.prepare('UPDATE profiles SET compressor = ?, level = ? WHERE name = ?').run(compressor, level, name);
  }

  /** A removed profile's row (strata profile rm), with when it was removed. */
  removed(name: string): (ProfileRow & { deletedAt: number }) | undefined {
    const r = this.db
      .prepare('SELECT p.*, r.removed_at FROM profiles p JOIN removed_profiles r ON r.name = p.name WHERE p.name = ?')
      .get(name) as (Raw & { removed_at: number }) | undefined;
    return r ? { ...fromRaw(r), deletedAt: r.removed_at } : undefined;
  }

  /** Marks the profile removed (at) or live again (null). */
  setRemoved(name: string, at: number | null): void {
    if (at === null) this.db.prepare('DELETE FROM removed_profiles WHERE name = ?').run(name);
    else this.db.prepare('INSERT OR REPLACE INTO removed_profiles (name, removed_at) VALUES (?, ?)').run(name, at);
  }

  /** Drops the rows of profiles removed at or before `upTo` (gc, once their undo has expired). */
  purgeRemoved(upTo: number): void {
    this.db.prepare('DELETE FROM profiles WHERE name IN (SELECT name FROM removed_profiles WHERE removed_at <= ?)').run(upTo);
    this.db.prepare('DELETE FROM removed_profiles WHERE removed_at <= ?').run(upTo);
  }
}
