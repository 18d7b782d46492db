/**
 * SQL for writing and scanning the commits table. Reads of single commits
 * and DAG walks go through store/commit-index.ts (its cache).
 */
import type { DB } from '../db.ts';
import type { CommitRow } from '../commit-index.ts';
import type { CommitId } from '../types.ts';

export class CommitsTable {
  constructor(private readonly db: DB) {}

  /** Same manifest = same id: inserting an existing commit again is a no-op. */
  insert(r: CommitRow): void {
    this.db
      .prepare(`INSERT OR IGNORE INTO commits (id, parent, merge_parent, profile, message, author, created_at, manifest, added_layer, kind)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(r.id, r.parent, r.merge_parent, r.profile, r.message, r.author, r.created_at, r.manifest, r.added_layer, r.kind);
    // The row above keeps the first maker; every maker is recorded here.
    this.db.prepare('INSERT OR IGNORE INTO commit_makers (commit_id, profile) VALUES (?, ?)').run(r.id, r.profile);
  }

  /** Every profile that made commit ID (one commit when two profiles made the same manifest). */
  madeBy(id: CommitId): string[] {
    return (this.db.prepare('SELECT profile FROM commit_makers WHERE commit_id = ?').all(id) as { profile: string }[]).map(
      (r) => r.profile,
    );
  }

  exists(id: string): boolean {
    return !!this.db.prepare('SELECT 1 FROM commits WHERE id = ?').get(id);
  }

  manifestText(id: string): string | undefined {
    return (this.db.prepare('SELECT manifest FROM commits WHERE id = ?').get(id) as { manifest: string } | undefined)?.manifest;
  }

  /** Up to `limit` ids starting with the hex prefix. */
  withPrefix(prefix: string, limit: number): CommitId[] {
    return (
      this.db.prepare('SELECT id FROM commits WHERE id >= ? AND id < ? LIMIT ?').all(prefix, `${prefix}g`, limit) as { id: string }[]
    ).map((r) => r.id);
  }

  /** Every id with its manifest text (gc). */
  manifests(): { id: CommitId; manifest: string }[] {
    return this.db.prepare('SELECT id, manifest FROM commits').all() as { id: string; manifest: string }[];
  }

  /** Every row (fsck). */
  all(): CommitRow[] {
    return this.db.prepare('SELECT * FROM commits').all() as CommitRow[];
  }

  remove(ids: Iterable<CommitId>): void {
    const del = this.db.prepare('DELETE FROM commits WHERE id = ?');
    const makers = this.db.prepare('DELETE FROM commit_makers WHERE commit_id = ?');
    for (const id of ids) {
      del.run(id);
      makers.run(id);
    }
  }
}
