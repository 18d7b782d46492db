/** SQL for refs (branches and tags) and their reflog. */
import type { DB } from '../db.ts';
import type { CommitId, Ref, ReflogEntry } from '../types.ts';

export class RefsTable {
  constructor(private readonly db: DB) {}

  get(name: string): Ref | undefined {
    const r = this.db.prepare('SELECT name, type, commit_id, profile FROM refs WHERE name = ?').get(name) as
      | { name: string; type: Ref['type']; commit_id: string; profile: string }
      | undefined;
    return r ? { name: r.name, type: r.type, commit: r.commit_id, profile: r.profile } : undefined;
  }

  all(): Ref[] {
    return (
      this.db.prepare('SELECT name, type, commit_id, profile FROM refs ORDER BY type, name').all() as {
        name: string;
        type: Ref['type'];
        commit_id: string;
        profile: string;
      }[]
    ).map((r) => ({ name: r.name, type: r.type, commit: r.commit_id, profile: r.profile }));
  }

  /**
   * Points NAME at `to` and records the move in the reflog (nothing when it
   * already points there). Must run inside a transaction.
   */
  move(name: string, type: Ref['type'], to: CommitId, profile: string, action: string, message: string): void {
    const cur = this.get(name);
    if (cur?.commit === to) return;
    this.db
      .prepare(`INSERT INTO refs (name, type, commit_id, profile) VALUES (?, ?, ?, ?)
      ON CONFLICT(name) DO UPDATE SET commit_id = excluded.commit_id`)
      .run(name, type, to, profile);
    this.db
      .prepare('INSERT INTO reflog (ref, old, new, action, message, time) VALUES (?, ?, ?, ?, ?, ?)')
      .run(name, cur?.commit ?? null, to, action, message.split('\n')[0]!.slice(0, 200), Date.now());
  }

  /** The ref's reflog, newest first. */
  reflog(ref: string): ReflogEntry[] {
    return this.db.prepare('SELECT * FROM reflog WHERE ref = ? ORDER BY id DESC').all(ref) as ReflogEntry[];
  }

  /** Reflog entries younger than `since` (ms), any ref. */
  reflogSince(since: number): { ref: string; old: string | null; new: string | null }[] {
    return this.db.prepare('SELECT ref, old, new FROM reflog WHERE time > ?').all(since) as {
      ref: string;
      old: string | null;
      new: string | null;
    }[];
  }

  pruneReflog(upTo: number): void {
    this.db.prepare('DELETE FROM reflog WHERE time <= ?').run(upTo);
  }

  /** Deletes NAME and records it in the reflog (new = null), so it can be restored. Must run inside a transaction. */
  remove(name: string, action: string, message: string): void {
    const cur = this.get(name);
    if (!cur) return;
    this.db.prepare('DELETE FROM refs WHERE name = ?').run(name);
    this.db
      .prepare('INSERT INTO reflog (ref, old, new, action, message, time) VALUES (?, ?, NULL, ?, ?, ?)')
      .run(name, cur.commit, action, message.slice(0, 200), Date.now());
  }

  /** The newest reflog entry of every ref whose last move deleted it. */
  deletions(): ReflogEntry[] {
    return this.db
      .prepare(`SELECT r.* FROM reflog r JOIN (SELECT ref, MAX(id) AS id FROM reflog GROUP BY ref) last ON last.id = r.id
      WHERE r.new IS NULL`)
      .all() as ReflogEntry[];
  }

  /** When each ref last moved (refs whose reflog expired are absent). */
  lastMoves(): Map<string, number> {
    const rows = this.db.prepare('SELECT ref, MAX(time) AS time FROM reflog GROUP BY ref').all() as { ref: string; time: number }[];
    return new Map(rows.map((r) => [r.ref, r.time]));
  }
}
