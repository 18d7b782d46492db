/**
 * Schema migration 9 on a data directory made before it: every existing
 * commit gets its maker from commits.profile, so a profile's own layers are
 * still found (and a rebase still replays them) after the upgrade.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDb, SCHEMA_VERSION } from '../store/db.ts';
import { Store } from '../store/store.ts';
import { tempDir } from './helpers/server-fixture.ts';
import { makeTar } from './helpers/tars.ts';

const tmp = tempDir('strata-makers-schema-');
afterAll(() => tmp.cleanup());

async function baseTree(name: string, body: string): Promise<string> {
  const root = join(tmp.dir, name);
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(join(root, 'etc/os-release'), body);
  return root;
}

describe('schema migration 9 (commit_makers)', () => {
  it('fills the makers of existing commits, so a rebase after the upgrade replays the profile’s own layer', async () => {
    const dir = join(tmp.dir, 'data');
    const store = await Store.open(dir, { create: true });
    await store.importBase('lab', await baseTree('v1', 'VERSION=1\n'), { level: 3 });
    const layer = join(tmp.dir, 'own.tar');
    writeFileSync(layer, await makeTar({ 'srv/own': 'mine\n' }));
    const own = (await store.commitTar('lab', layer, { message: 'own' })).commit;
    await store.importBase('next', await baseTree('v2', 'VERSION=2\n'), { level: 3 });
    store.close();

    // As a strata from before migration 9 left it.
    const db = openDb(join(dir, 'strata.db'));
    db.exec('DROP TABLE commit_makers; UPDATE schema_version SET version = 8');
    db.close();

    const again = await Store.open(dir);
    try {
      expect((again.db.prepare('SELECT version FROM schema_version').get() as { version: number }).version).toBe(SCHEMA_VERSION);
      expect(again.db.prepare('SELECT profile FROM commit_makers WHERE commit_id = ?').all(own.id)).toEqual([{ profile: 'lab' }]);
      const r = await again.rebase('lab', 'next');
      expect(r.reused).toEqual([own.addedLayer]);
    } finally {
      again.close();
    }
  });
});
