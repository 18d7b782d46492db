/**
 * SQLite metadata (better-sqlite3, WAL). Blobs live in objects/; rows here
 * only name them. Schema changes are numbered migrations recorded in
 * schema_version, applied in one transaction each at open.
 *
 * synchronous=FULL: in WAL mode better-sqlite3's bundled SQLite defaults to
 * NORMAL, where a committed transaction can vanish on power loss
 * (docs/design.md, facts). A ref move that a client may already have booted must
 * not be forgotten, so every commit is fsynced.
 */
import Database from 'better-sqlite3';
import { StrataError } from './errors.ts';

export type DB = Database.Database;

const MIGRATIONS: string[] = [
  // 1: the whole first schema.
  `
  CREATE TABLE profiles (
    name TEXT PRIMARY KEY,
    cmdline TEXT NOT NULL DEFAULT '',
    compressor TEXT NOT NULL DEFAULT 'zstd',
    level INTEGER,
    kernel_digest TEXT, kernel_size INTEGER,
    initrd_digest TEXT, initrd_size INTEGER,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE layers (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    kind TEXT NOT NULL,
    entry_count INTEGER NOT NULL,
    uncompressed_bytes INTEGER NOT NULL,
    compressor TEXT NOT NULL,
    entries BLOB NOT NULL,          -- gzip'd JSON LayerEntry[]: what the layer adds, deletes, makes opaque
    created_at INTEGER NOT NULL
  );
  CREATE TABLE commits (
    id TEXT PRIMARY KEY,
    parent TEXT,
    merge_parent TEXT,
    profile TEXT NOT NULL,
    message TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    manifest TEXT NOT NULL,
    added_layer TEXT,
    kind TEXT NOT NULL
  );
  CREATE INDEX commits_parent ON commits(parent);
  CREATE INDEX commits_profile ON commits(profile);
  CREATE TABLE refs (
    name TEXT PRIMARY KEY,
    type TEXT NOT NULL CHECK (type IN ('branch','tag')),
    commit_id TEXT NOT NULL,
    profile TEXT NOT NULL
  );
  CREATE TABLE reflog (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ref TEXT NOT NULL,
    old TEXT,
    new TEXT,
    action TEXT NOT NULL,
    message TEXT NOT NULL,
    time INTEGER NOT NULL
  );
  CREATE INDEX reflog_ref ON reflog(ref);
  CREATE TABLE assignments (
    match TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    profile TEXT NOT NULL,
    pin TEXT,
    cmdline TEXT NOT NULL DEFAULT ''
  );
  CREATE TABLE clients (
    mac TEXT PRIMARY KEY,
    ip TEXT NOT NULL,
    commit_id TEXT,
    profile TEXT,
    last_seen INTEGER NOT NULL,
    last_boot INTEGER,
    assignment TEXT
  );
  CREATE TABLE keys (
    name TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    algo TEXT NOT NULL,
    key_data BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    admin INTEGER NOT NULL,
    profiles TEXT NOT NULL
  );
  CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE pushes (
    id TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    parent TEXT NOT NULL,
    message TEXT NOT NULL,
    author TEXT NOT NULL,
    state TEXT NOT NULL,
    commit_id TEXT,
    branch TEXT,
    reason TEXT,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX pushes_state ON pushes(state);
  `,
  // 2: client-chosen idempotency keys for SSH pushes (`push ... --push-key K`).
  // Nullable: pushes from clients that send no key (and every older row) have
  // none. Unique per (author key, profile, push key): a retry of a push whose
  // answer was lost finds the stored one instead of storing a second copy,
  // and one key's pushes can neither collide with nor reveal another's.
  `
  ALTER TABLE pushes ADD COLUMN push_key TEXT;
  CREATE UNIQUE INDEX pushes_push_key ON pushes(author, profile, push_key) WHERE push_key IS NOT NULL;
  `,
  // 3: kernels follow the tree (store/commit-boot.ts). Where each commit's
  // kernel came from (the manifest names only the blobs), initramfs builds
  // by (modules content, hook) for reuse, and per-profile kernel pins.
  // IF NOT EXISTS: replaying the migrations over a newer schema (as the push-key migration test does) is harmless.
  `
  CREATE TABLE IF NOT EXISTS commit_boot (
    commit_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    version TEXT,
    tree_key TEXT,
    note TEXT NOT NULL
  );
  CREATE TABLE IF NOT EXISTS initrd_builds (
    key TEXT PRIMARY KEY,
    kernel_version TEXT NOT NULL,
    initrd_digest TEXT NOT NULL,
    initrd_size INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS kernel_pins (
    profile TEXT PRIMARY KEY,
    version TEXT NOT NULL
  );
  `,
  // 4: enrollment (store/enrollment.ts: keys clients made themselves, their
  // held pushes, per-profile auto-approve CIDRs) and heartbeats
  // (store/heartbeats.ts). IF NOT EXISTS: strata used to create these tables
  // on first use, so a data directory may already have them.
  `
  CREATE TABLE IF NOT EXISTS pending_keys (
    id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    algo TEXT NOT NULL,
    key_data BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    mac TEXT,
    ip TEXT,
    hostname TEXT,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
  );
  CREATE UNIQUE INDEX IF NOT EXISTS pending_keys_data ON pending_keys (algo, key_data);
  CREATE TABLE IF NOT EXISTS held_pushes (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    profile TEXT NOT NULL,
    parent TEXT NOT NULL,
    message TEXT NOT NULL,
    push_key TEXT,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS enroll_cidrs (profile TEXT PRIMARY KEY, cidr TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS heartbeats (
    mac TEXT PRIMARY KEY,
    ip TEXT,
    commit_id TEXT NOT NULL,
    uptime INTEGER NOT NULL,
    inventory TEXT NOT NULL,
    at INTEGER NOT NULL
  );
  `,
  // 5: boot health (store/boot-health.ts): per client the boot served and
  // awaiting its health report, its last good commit and whether it is held
  // back; per (client, commit) the failed boots in a row; per profile an
  // extra health check command.
  `
  CREATE TABLE IF NOT EXISTS boot_health (
    mac TEXT PRIMARY KEY,
    pending_commit TEXT,
    pending_since INTEGER,
    last_good TEXT,
    last_good_at INTEGER,
    report_commit TEXT,
    report_ok INTEGER,
    report_reason TEXT,
    report_at INTEGER,
    held_commit TEXT,
    held_served TEXT,
    held_reason TEXT,
    held_since INTEGER
  );
  CREATE TABLE IF NOT EXISTS boot_failures (
    mac TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    count INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (mac, commit_id)
  );
  CREATE TABLE IF NOT EXISTS health_checks (profile TEXT PRIMARY KEY, command TEXT NOT NULL);
  `,
  // 6: bake attempts of a push and the last failure (store/pushes.ts): a push
  // that failed maxBakeAttempts times, or crashed the server as often, is
  // rejected instead of being retried forever.
  `
  ALTER TABLE pushes ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE pushes ADD COLUMN last_error TEXT;
  `,
  // 7: recipe builds (store/build.ts): each build job with its recipe and
  // outcome, the recipe text of each commit a build made (strata show), and
  // per-profile rebuild schedules.
  `
  CREATE TABLE IF NOT EXISTS builds (
    id TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    recipe TEXT NOT NULL,
    state TEXT NOT NULL,
    commit_id TEXT,
    error TEXT,
    stats TEXT,
    scheduled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
  );
  CREATE INDEX IF NOT EXISTS builds_profile ON builds(profile);
  CREATE TABLE IF NOT EXISTS commit_recipes (
    commit_id TEXT PRIMARY KEY,
    build_id TEXT NOT NULL,
    recipe TEXT NOT NULL
  );
  CREATE TABLE IF NOT EXISTS build_schedules (
    profile TEXT PRIMARY KEY,
    recipe TEXT NOT NULL,
    every_ms INTEGER,
    at_minute INTEGER,
    next_run INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  );
  `,
  // 8: deleting profiles (store/ref-delete.ts). A removed profile keeps its
  // row, listed here, so an undo (strata rollback NAME) gets its settings
  // back; gc drops both rows once the reflog that could restore it has
  // expired. A table rather than a column: IF NOT EXISTS keeps a replay harmless.
  `
  CREATE TABLE IF NOT EXISTS removed_profiles (name TEXT PRIMARY KEY, removed_at INTEGER NOT NULL);
  `,
  // 9: every profile that made a commit (store/rebase.ts, baseCommitOf).
  // Commit ids are manifest hashes, so two profiles committing the same
  // layer on the same base make one commit; commits.profile keeps only the
  // first. Filled from commits.profile for what exists.
  `
  CREATE TABLE IF NOT EXISTS commit_makers (
    commit_id TEXT NOT NULL,
    profile TEXT NOT NULL,
    PRIMARY KEY (commit_id, profile)
  );
  INSERT OR IGNORE INTO commit_makers (commit_id, profile) SELECT id, profile FROM commits;
  `,
];

export function openDb(path: string): DB {
  let db: DB;
  try {
    db = new Database(path, { timeout: 15000 });
  } catch (e) {
    throw new StrataError('E_BAD_ARGUMENT', `cannot open the strata database ${path}: ${(e as Error).message}`, {}, { cause: e });
  }
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 15000');
  migrate(db);
  return db;
}

export function migrate(db: DB): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
  const row = db.prepare('SELECT version FROM schema_version').get() as { version: number } | undefined;
  let version = row?.version ?? 0;
  if (!row) db.prepare('INSERT INTO schema_version (version) VALUES (0)').run();
  if (version > MIGRATIONS.length) {
    throw new StrataError(
      'E_BAD_ARGUMENT',
      `this data directory has schema version ${version}, newer than this strata knows (${MIGRATIONS.length}); upgrade strata`,
    );
  }
  while (version < MIGRATIONS.length) {
    const sql = withoutExistingColumns(db, MIGRATIONS[version]!);
    db.transaction(() => {
      db.exec(sql);
      db.prepare('UPDATE schema_version SET version = ?').run(version + 1);
    }).immediate();
    version++;
  }
}

/**
 * SQLite has no ADD COLUMN IF NOT EXISTS: drops each `ALTER TABLE t ADD
 * COLUMN c ...;` whose column is there already, so a migration replayed over
 * a newer schema (a data directory whose version row was set back, as the
 * upgrade tests do) is as harmless as the CREATE ... IF NOT EXISTS ones.
 */
function withoutExistingColumns(db: DB, sql: string): string {
  return sql.replace(/ALTER TABLE (\w+) ADD COLUMN (\w+)[^;]*;/g, (stmt, table: string, column: string) => {
    const cols = db.prepare(`SELECT name FROM pragma_table_info(?)`).pluck().all(table) as string[];
    return cols.includes(column) ? '' : stmt;
  });
}

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Whether a write failed because a UNIQUE index or primary key already holds the value (not any other database error). */
export function isUniqueViolation(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}
