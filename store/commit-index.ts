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

/**
 * A row read for a whole-history walk: everything but the manifest text,
 * plus the layer count SQLite counts inside the manifest. A log prints the
 * count for every commit but needs no manifest: reading 10,000 manifest
 * strings into JS (and collecting them again) was most of a cold
 * `strata log`.
 */
export type LogRow = Omit<CommitRow, 'manifest'> & { layer_count: number };

/** Counted in SQL: the number of "layer " lines (see store/manifest.ts). */
const LAYER_COUNT_SQL = `(length(manifest) - length(replace(manifest, char(10) || 'layer ', ''))) / 7`;

export function rowToCommit(r: CommitRow | LogRow, manifestText?: (id: string) => string): Commit {
  // The manifest is parsed (and, for a log row, read) on first use: a log of
  // 10,000 commits looks at no manifest. A getter in the literal (enumerable,
  // so JSON output still carries it) keeps the object's shape fast;
  // defineProperty made building 10,000 of them about 3x slower.
  let parsed: Manifest | undefined;
  const text = 'manifest' in r ? () => r.manifest : () => manifestText!(r.id);
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
    layerCount: 'layer_count' in r ? r.layer_count : undefined,
    get manifest() {
      return (parsed ??= parseManifest(text(), { trusted: true }));
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
  private readonly manifestText: (id: string) => string;

  constructor(db: DB) {
    this.oneRow = db.prepare('SELECT * FROM commits WHERE id = ?');
    this.newRows = db.prepare(
      `SELECT rowid AS row_id, id, parent, merge_parent, profile, message, author, created_at, added_layer, kind,
        ${LAYER_COUNT_SQL} AS layer_count FROM commits WHERE rowid > ?`,
    );
    const manifestOf = db.prepare('SELECT manifest FROM commits WHERE id = ?').pluck();
    this.manifestText = (id) => {
      const t = manifestOf.get(id) as string | undefined;
      // Commits are never rewritten, only deleted by gc: a cached commit whose
      // row is gone was deleted under a long-lived reader.
      if (t === undefined) throw new Error(`commit ${id} vanished from the database`);
      return t;
    };
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
    for (const r of this.newRows.iterate(this.loadedTo) as IterableIterator<LogRow & { row_id: number }>) {
      if (!this.byId.has(r.id)) this.byId.set(r.id, nodeOf(rowToCommit(r, this.manifestText)));
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
