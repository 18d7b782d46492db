/**
 * The one place the store reads commits and their DAG links. One cache
 * answers getCommit, single lookups (NAME~N, the parent rule) and whole-history
 * walks (log, graph, merge bases, gc); store/dag.ts stays pure and only sees
 * the lookup function.
 *
 * Commits are immutable (the id is the hash of the manifest; message and
 * author are written once), so cached commits never need invalidating; gc
 * drops what it deletes. A miss always falls back to reading that one row, so
 * the bulk loading below only ever saves queries, it never decides an answer.
 */
import type { DB } from './db.ts';
import type { DagNode, Lookup } from './dag.ts';
import { parseManifest } from './manifest.ts';
import type { Commit, CommitId, Manifest } from './types.ts';

export interface CommitRow {
  id: string;
  parent: string | null;
  merge_parent: string | null;
  profile: string;
  message: string;
  author: string;
  created_at: number;
  manifest: string;
  added_layer: string | null;
  kind: Commit['kind'];
}

export function rowToCommit(r: CommitRow): Commit {
  // The manifest is parsed on first use: a log of 10,000 commits rarely looks
  // at every manifest. A getter in the literal (enumerable, so JSON output
  // still carries it) keeps the object's shape fast; defineProperty made
  // building 10,000 of them about 3x slower.
  let parsed: Manifest | undefined;
  return {
    id: r.id,
    parent: r.parent,
    mergeParent: r.merge_parent,
    profile: r.profile,
    message: r.message,
    author: r.author,
    createdAt: r.created_at,
    addedLayer: r.added_layer,
    kind: r.kind,
    get manifest() {
      return (parsed ??= parseManifest(r.manifest, { trusted: true }));
    },
  };
}

/**
 * A commit's DAG links next to the parsed commit. The walks read these plain
 * objects, all of one shape: every Commit carries its own manifest getter,
 * which gives each object its own hidden class and made a 10,000-commit walk
 * over Commits 1.5-2x slower.
 */
interface Node extends DagNode {
  readonly commit: Commit;
}

function nodeOf(c: Commit): Node {
  return { id: c.id, parent: c.parent, mergeParent: c.mergeParent, createdAt: c.createdAt, commit: c };
}

export class CommitIndex {
  private readonly byId = new Map<CommitId, Node>();
  /**
   * Every row with a rowid up to this one is cached. Rowids grow with
   * inserts, so a walk after new commits reads only the new rows (a warm
   * server's log is one empty range query, a cold CLI's one pass over the table).
   */
  private loadedTo = 0;
  private readonly oneRow;
  private readonly newRows;
  private readonly maxRowid;

  constructor(db: DB) {
    this.oneRow = db.prepare('SELECT * FROM commits WHERE id = ?');
    this.newRows = db.prepare('SELECT rowid AS row_id, * FROM commits WHERE rowid > ?');
    this.maxRowid = db.prepare('SELECT COALESCE(MAX(rowid), 0) AS m FROM commits').pluck();
  }

  /** The commit, reading its row on a miss (short walks: NAME~N, the parent rule). */
  get(id: CommitId): Commit | undefined {
    return this.node(id)?.commit;
  }

  /** Per-id DAG lookup for store/dag.ts. */
  readonly lookup: Lookup = (id) => this.node(id);

  private node(id: CommitId): Node | undefined {
    let n = this.byId.get(id);
    if (!n) {
      const r = this.oneRow.get(id) as CommitRow | undefined;
      if (!r) return undefined;
      n = nodeOf(rowToCommit(r));
      this.byId.set(id, n);
    }
    return n;
  }

  /**
   * The lookup after caching every row not cached yet, for walks over much
   * of the history (log, graph, merge bases, gc): one query, not one per commit.
   */
  whole(): Lookup {
    let max = this.loadedTo;
    for (const r of this.newRows.iterate(this.loadedTo) as IterableIterator<CommitRow & { row_id: number }>) {
      if (!this.byId.has(r.id)) this.byId.set(r.id, nodeOf(rowToCommit(r)));
      if (r.row_id > max) max = r.row_id;
    }
    this.loadedTo = max;
    return this.lookup;
  }

  /** Drops commits gc deleted. Call after the deleting transaction committed. */
  forget(ids: Iterable<CommitId>): void {
    for (const id of ids) this.byId.delete(id);
    // SQLite may hand a deleted top rowid to the next insert: start the next
    // bulk read below it so that insert is not skipped.
    this.loadedTo = Math.min(this.loadedTo, this.maxRowid.get() as number);
  }
}
