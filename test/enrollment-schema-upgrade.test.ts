/**
 * A data directory from before migration 4 already has the enrollment and
 * heartbeat tables (strata used to create them on first use): it still
 * opens, its pending keys, held pushes, enroll CIDRs and heartbeats are kept,
 * and it ends at the current schema version.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { openDb, SCHEMA_VERSION } from '../store/db.ts';
import { Enrollment } from '../store/enrollment.ts';
import { Heartbeats } from '../store/heartbeats.ts';
import { Store } from '../store/store.ts';
import { tempDir } from './helpers/server-fixture.ts';

const tmp = tempDir('strata-enroll-schema-');
afterAll(() => tmp.cleanup());

// What store/enrollment.ts and store/heartbeats.ts ran at first use before migration 4.
const FIRST_USE_SCHEMA = `
  CREATE TABLE IF NOT EXISTS pending_keys (
    id TEXT PRIMARY KEY, public_key TEXT NOT NULL, algo TEXT NOT NULL, key_data BLOB NOT NULL,
    fingerprint TEXT NOT NULL, mac TEXT, ip TEXT, hostname TEXT, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL);
  CREATE UNIQUE INDEX IF NOT EXISTS pending_keys_data ON pending_keys (algo, key_data);
  CREATE TABLE IF NOT EXISTS held_pushes (
    id TEXT PRIMARY KEY, key_id TEXT NOT NULL, profile TEXT NOT NULL, parent TEXT NOT NULL, message TEXT NOT NULL,
    push_key TEXT, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS enroll_cidrs (profile TEXT PRIMARY KEY, cidr TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS heartbeats (mac TEXT PRIMARY KEY, ip TEXT, commit_id TEXT NOT NULL, uptime INTEGER NOT NULL, inventory TEXT NOT NULL, at INTEGER NOT NULL);
`;

describe('schema migration 4', () => {
  it('opens a data directory whose enrollment and heartbeat tables were made at first use, keeping their rows', async () => {
    const dir = join(tmp.dir, 'data');
    (await Store.open(dir, { create: true })).close();
    const db = openDb(join(dir, 'strata.db'));
    db.exec(
      'DROP TABLE pending_keys; DROP TABLE held_pushes; DROP TABLE enroll_cidrs; DROP TABLE heartbeats; UPDATE schema_version SET version = 3',
    );
    db.exec(FIRST_USE_SCHEMA);
    db.prepare(
      "INSERT INTO pending_keys VALUES ('kold', 'ssh-ed25519 AAAA', 'ssh-ed25519', x'01', 'SHA256:x', '52:54:00:00:00:01', '10.0.0.5', 'old', 1, 2)",
    ).run();
    db.prepare("INSERT INTO held_pushes VALUES ('pold000000000001', 'kold', 'lab', 'c', 'm', NULL, 7, 3)").run();
    db.prepare("INSERT INTO enroll_cidrs VALUES ('lab', '10.0.0.0/24')").run();
    db.prepare("INSERT INTO heartbeats VALUES ('52:54:00:00:00:01', '10.0.0.5', 'c0ffee', 9, '{}', 4)").run();
    db.close();

    const store = await Store.open(dir);
    try {
      expect((store.db.prepare('SELECT version FROM schema_version').get() as { version: number }).version).toBe(SCHEMA_VERSION);
      const e = new Enrollment(store);
      expect(e.list()).toEqual([expect.objectContaining({ id: 'kold', hostname: 'old', heldPushes: 1 })]);
      expect(e.findHeld('pold000000000001')).toMatchObject({ keyId: 'kold', bytes: 7 });
      expect(e.enrollCidr('lab')).toBe('10.0.0.0/24');
      expect(new Heartbeats(store).get('52:54:00:00:00:01')).toMatchObject({ commit: 'c0ffee', uptimeSec: 9 });
    } finally {
      store.close();
    }
  });
});
