/**
 * gc next to writers in other processes: a layer another process has just
 * baked and stored, but not yet committed, is not garbage. gc spares blobs
 * younger than its grace period, and storing a blob that already exists
 * makes it young again, so a commit that reuses an old unreferenced layer
 * never ends up naming a deleted file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Store } from '../store/store.ts';
import { strataJson } from './helpers/cli.ts';
import { importProfile, tempDir } from './helpers/server-fixture.ts';

const HOUR = 3600 * 1000;
let tmp: ReturnType<typeof tempDir>;
let data: string;
let store: Store;

const age = (file: string, ms: number) => {
  const then = new Date(Date.now() - ms);
  utimesSync(file, then, then);
};

beforeAll(async () => {
  tmp = tempDir('strata-gc-grace-');
  data = join(tmp.dir, 'data');
  store = await Store.open(data, { create: true });
  await importProfile(store, tmp.dir, 'lab');
}, 120_000);

afterAll(() => {
  store?.close();
  tmp?.cleanup();
});

describe('gc grace period', () => {
  it('keeps a blob stored moments ago by a writer that has not committed it yet, and removes it once it is old', async () => {
    const src = join(tmp.dir, 'just-baked');
    writeFileSync(src, randomBytes(4096));
    const { digest } = await store.objects.putFile(src); // what a bake does before its commit transaction
    const file = store.objects.pathOf(digest);

    // `strata gc` from another process, right now: the blob stays.
    const cli = await strataJson<{ objects: string[] }>(['gc'], { data });
    expect(cli.objects).not.toContain(digest);
    expect(existsSync(file)).toBe(true);

    // Nobody committed it within the grace period: now it is garbage.
    age(file, 2 * HOUR);
    expect((await store.gc({ dryRun: true })).objects).toEqual([digest]);
    expect((await store.gc()).objects).toEqual([digest]);
    expect(existsSync(file)).toBe(false);
    expect((await store.fsck()).problems).toEqual([]);
  });

  it('storing a blob that is already there makes it young again, so gc does not delete it under the new commit', async () => {
    const tar = join(tmp.dir, 'reused.tar');
    execFileSync('sh', [
      '-c',
      `mkdir -p ${tmp.dir}/reused/etc && echo reused > ${tmp.dir}/reused/etc/reused && tar --sort=name --mtime=@0 --owner=0 --group=0 -C ${tmp.dir}/reused -cf ${tar} .`,
    ]);
    const head = store.getProfile('lab').head!;
    const first = (await store.commitTar('lab', tar, { message: 'first time' })).commit;
    const layer = first.addedLayer!;
    // Dropped long ago: rolled back, reflog expired, layer file old.
    store.rollback('lab', head);
    store.db.prepare('UPDATE reflog SET time = time - ?').run(31 * 24 * HOUR);
    age(store.objects.pathOf(layer), 31 * 24 * HOUR);
    expect((await store.gc({ dryRun: true })).objects).toContain(layer);

    // The same change is pushed again: same layer digest, stored again.
    const again = (await store.commitTar('lab', tar, { message: 'second time' })).commit;
    expect(again.addedLayer).toBe(layer);
    expect(statSync(store.objects.pathOf(layer)).mtimeMs).toBeGreaterThan(Date.now() - HOUR);
    // A gc that listed the blobs just before that commit would have seen an
    // old unreferenced file; now the file is young, whatever gc decided.
    const r = await store.gc();
    expect(r.objects).not.toContain(layer);
    expect(existsSync(store.objects.pathOf(layer))).toBe(true);
    expect((await store.fsck()).problems).toEqual([]);
  });
});
