/**
 * SQL for recipe builds: the build jobs (queued -> running -> committed,
 * unchanged or failed), the recipe text of each commit a build made, and
 * per-profile rebuild schedules.
 */
import type { DB } from '../db.ts';

export type BuildState = 'queued' | 'running' | 'committed' | 'unchanged' | 'failed';

export interface BuildStats {
  /** Wall time of mmdebstrap, of the whole build. */
  mmdebstrapMs?: number;
  totalMs?: number;
  /** .deb files apt fetched from the mirror (0 when the cache had them all). */
  debsDownloaded?: number;
  /** apt's "Need to get X of archives" in bytes (0 when all came from the cache). */
  bytesToGet?: number;
  /** .deb files in the shared cache after the build. */
  cachedDebs?: number;
  /** store/build.ts treeDigest() of the built tree: what "identical" compares. */
  treeDigest?: string;
  /** How the base was stored: a new profile's first, or on an existing profile a delta layer over the old base or a full image. */
  baseMode?: 'delta' | 'full' | 'new';
  /** Bytes of the delta layer (when one was made) and of the full image: what a client holding the old base fetches either way. */
  deltaBytes?: number | null;
  fullBytes?: number;
}

export interface Build {
  id: string;
  profile: string;
  recipe: string;
  state: BuildState;
  commit: string | null;
  error: string | null;
  stats: BuildStats;
  scheduled: boolean;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
}

export interface Schedule {
  profile: string;
  recipe: string;
  everyMs: number | null;
  /** Minutes after midnight UTC. */
  atMinute: number | null;
  nextRun: number;
}

function toBuild(r: Record<string, unknown>): Build {
  return {
    id: r.id as string,
    profile: r.profile as string,
    recipe: r.recipe as string,
    state: r.state as BuildState,
    commit: (r.commit_id as string | null) ?? null,
    error: (r.error as string | null) ?? null,
    stats: r.stats ? (JSON.parse(r.stats as string) as BuildStats) : {},
    scheduled: r.scheduled === 1,
    createdAt: r.created_at as number,
    startedAt: (r.started_at as number | null) ?? null,
    finishedAt: (r.finished_at as number | null) ?? null,
  };
}

const toSchedule = (r: Record<string, unknown>): Schedule => ({
  profile: r.profile as string,
  recipe: r.recipe as string,
  everyMs: (r.every_ms as number | null) ?? null,
  atMinute: (r.at_minute as number | null) ?? null,
  nextRun: r.next_run as number,
});

export class BuildsTable {
  constructor(private readonly db: DB) {}

  insert(b: { id: string; profile: string; recipe: string; scheduled: boolean }, now: number): void {
    this.db
      .prepare(`INSERT INTO builds (id, profile, recipe, state, scheduled, created_at) VALUES (?, ?, ?, 'queued', ?, ?)`)
      .run(b.id, b.profile, b.recipe, b.scheduled ? 1 : 0, now);
  }

  get(id: string): Build | undefined {
    const r = this.db.prepare('SELECT * FROM builds WHERE id = ?').get(id) as Record<string, unknown> | undefined;
    return r ? toBuild(r) : undefined;
  }

  recent(limit: number, profile?: string): Build[] {
    const rows = profile
      ? this.db.prepare('SELECT * FROM builds WHERE profile = ? ORDER BY created_at DESC, rowid DESC LIMIT ?').all(profile, limit)
      : this.db.prepare('SELECT * FROM builds ORDER BY created_at DESC, rowid DESC LIMIT ?').all(limit);
    return (rows as Record<string, unknown>[]).map(toBuild);
  }

  /** Queued builds, oldest first. */
  queued(): Build[] {
    return (
      this.db.prepare(`SELECT * FROM builds WHERE state = 'queued' ORDER BY created_at, rowid`).all() as Record<string, unknown>[]
    ).map(toBuild);
  }

  start(id: string, now: number): void {
    this.db.prepare(`UPDATE builds SET state = 'running', started_at = ? WHERE id = ?`).run(now, id);
  }

  finish(id: string, f: { state: BuildState; commit?: string | null; error?: string | null; stats: BuildStats }, now: number): void {
    this.db
      .prepare('UPDATE builds SET state = ?, commit_id = ?, error = ?, stats = ?, finished_at = ? WHERE id = ?')
      .run(f.state, f.commit ?? null, f.error ?? null, JSON.stringify(f.stats), now, id);
  }

  /** Builds a killed process left running: they failed (nothing was committed for them). */
  failInterrupted(now: number): number {
    return this.db
      .prepare(
        `UPDATE builds SET state = 'failed', error = 'interrupted: strata stopped during the build', finished_at = ? WHERE state = 'running'`,
      )
      .run(now).changes;
  }

  setCommitRecipe(commit: string, buildId: string, recipe: string): void {
    this.db.prepare('INSERT OR REPLACE INTO commit_recipes (commit_id, build_id, recipe) VALUES (?, ?, ?)').run(commit, buildId, recipe);
  }

  commitRecipe(commit: string): { buildId: string; recipe: string } | undefined {
    const r = this.db.prepare('SELECT build_id, recipe FROM commit_recipes WHERE commit_id = ?').get(commit) as
      | { build_id: string; recipe: string }
      | undefined;
    return r ? { buildId: r.build_id, recipe: r.recipe } : undefined;
  }

  setSchedule(s: Schedule, now: number): void {
    this.db
      .prepare(
        'INSERT OR REPLACE INTO build_schedules (profile, recipe, every_ms, at_minute, next_run, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      )
      .run(s.profile, s.recipe, s.everyMs, s.atMinute, s.nextRun, now);
  }

  removeSchedule(profile: string): boolean {
    return this.db.prepare('DELETE FROM build_schedules WHERE profile = ?').run(profile).changes > 0;
  }

  schedules(): Schedule[] {
    return (this.db.prepare('SELECT * FROM build_schedules ORDER BY profile').all() as Record<string, unknown>[]).map(toSchedule);
  }

  setNextRun(profile: string, nextRun: number): void {
    this.db.prepare('UPDATE build_schedules SET next_run = ? WHERE profile = ?').run(nextRun, profile);
  }
}
