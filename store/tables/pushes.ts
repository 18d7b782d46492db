/** SQL for the pushes table: each SSH push from queued to committed or rejected. */
import type { DB } from '../db.ts';
import type { Push, PushState } from '../types.ts';

function toPush(r: Record<string, unknown>): Push {
  return {
    id: r.id as string,
    profile: r.profile as string,
    parent: r.parent as string,
    message: r.message as string,
    author: r.author as string,
    state: r.state as PushState,
    commit: r.commit_id as string | null,
    branch: r.branch as string | null,
    reason: r.reason as string | null,
    bytes: r.bytes as number,
    createdAt: r.created_at as number,
    updatedAt: r.updated_at as number,
    attempts: (r.attempts as number | undefined) ?? 0,
    lastError: (r.last_error as string | null | undefined) ?? null,
  };
}

export interface NewPush {
  id: string;
  profile: string;
  parent: string;
  message: string;
  author: string;
  bytes: number;
  pushKey: string | null;
}

export class PushesTable {
  constructor(private readonly db: DB) {}

  /** Throws the database's error as it is (a taken push key is a UNIQUE violation). */
  insert(p: NewPush, now: number): void {
    this.db
      .prepare(
        `INSERT INTO pushes (id, profile, parent, message, author, state, bytes, created_at, updated_at, push_key) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)`,
      )
      .run(p.id, p.profile, p.parent, p.message, p.author, p.bytes, now, now, p.pushKey);
  }

  get(id: string): Push | undefined {
    const r = this.db.prepare('SELECT * FROM pushes WHERE id = ?').get(id) as Record<string, unknown> | undefined;
    return r ? toPush(r) : undefined;
  }

  byKey(author: string, profile: string, pushKey: string): Push | undefined {
    const r = this.db.prepare('SELECT * FROM pushes WHERE author = ? AND profile = ? AND push_key = ?').get(author, profile, pushKey) as
      | Record<string, unknown>
      | undefined;
    return r ? toPush(r) : undefined;
  }

  recent(limit: number): Push[] {
    return (this.db.prepare('SELECT * FROM pushes ORDER BY created_at DESC, id DESC LIMIT ?').all(limit) as Record<string, unknown>[]).map(
      toPush,
    );
  }

  pending(): Push[] {
    return (
      this.db.prepare("SELECT * FROM pushes WHERE state IN ('queued','baking') ORDER BY created_at, id").all() as Record<string, unknown>[]
    ).map(toPush);
  }

  /** Only a pending push moves; false when it was not pending any more. */
  setState(id: string, state: 'baking' | 'queued'): void {
    this.db.prepare("UPDATE pushes SET state = ?, updated_at = ? WHERE id = ? AND state IN ('queued','baking')").run(state, Date.now(), id);
  }

  reject(id: string, reason: string): void {
    this.db
      .prepare("UPDATE pushes SET state = 'rejected', reason = ?, updated_at = ? WHERE id = ? AND state IN ('queued','baking')")
      .run(reason, Date.now(), id);
  }

  /** Counts one more bake attempt of a pending push (before it starts: a bake that crashes the process counts too); the new count, null when not pending. */
  startAttempt(id: string): number | null {
    const r = this.db
      .prepare("UPDATE pushes SET attempts = attempts + 1, updated_at = ? WHERE id = ? AND state IN ('queued','baking') RETURNING attempts")
      .get(Date.now(), id) as { attempts: number } | undefined;
    return r ? r.attempts : null;
  }

  /** Records why the last attempt failed (the push stays pending). */
  setLastError(id: string, error: string): void {
    this.db.prepare('UPDATE pushes SET last_error = ?, updated_at = ? WHERE id = ?').run(error, Date.now(), id);
  }

  /** Pending (queued, baking) and rejected pushes, newest first: what `strata pushes` shows. */
  unfinished(limit: number): Push[] {
    return (
      this.db
        .prepare("SELECT * FROM pushes WHERE state IN ('queued','baking','rejected') ORDER BY created_at DESC, id DESC LIMIT ?")
        .all(limit) as Record<string, unknown>[]
    ).map(toPush);
  }

  /** false when another process finished the push first. */
  commit(id: string, commitId: string, branch: string | null, reason: string | null): boolean {
    return (
      this.db
        .prepare(
          "UPDATE pushes SET state = 'committed', commit_id = ?, branch = ?, reason = ?, updated_at = ? WHERE id = ? AND state IN ('queued','baking')",
        )
        .run(commitId, branch, reason, Date.now(), id).changes > 0
    );
  }
}
