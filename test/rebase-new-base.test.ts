/**
 * A new base for an existing profile and `strata rebase`, on a real store:
 * real tar2sqfs bakes, and the merged trees read back through real squashfs
 * and overlayfs mounts, as a booting client stacks them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { StrataError } from '../store/errors.ts';
import { Store } from '../store/store.ts';
import type { Commit } from '../store/types.ts';
import { Mounts } from './helpers/mounts.ts';
import { makeTar } from './helpers/tars.ts';

let dir: string;
let store: Store;
const mounts = new Mounts('strata-rebase-');
const big = randomBytes(3 << 20);

function tree(name: string, files: Record<string, string | Buffer>): string {
  const root = join(dir, name);
  for (const [p, body] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), body);
  }
  mkdirSync(join(root, 'tmp'), { recursive: true });
  chmodSync(join(root, 'tmp'), 0o1777);
  return root;
}

/** A copy of tree FROM (timestamps kept, as a rebuild keeps the mtimes packages ship) with some files written and some removed. */
function derive(name: string, from: string, files: Record<string, string | Buffer>, remove: string[] = []): string {
  const root = join(dir, name);
  cpSync(from, root, { recursive: true, preserveTimestamps: true });
  for (const [p, body] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), body);
  }
  for (const p of remove) rmSync(join(root, p));
  return root;
}

const V1 = {
  'usr/lib/big.bin': big,
  'etc/os-release': 'VERSION=1\n',
  'etc/obsolete': 'going away\n',
  'etc/hostname': 'lab\n',
  'usr/bin/tool': '#!/bin/sh\necho tool\n',
};
const V2 = { ...V1, 'etc/os-release': 'VERSION=2\n', 'usr/bin/newpkg': '#!/bin/sh\necho new\n' } as Record<string, string | Buffer>;
delete V2['etc/obsolete'];
const V2CHANGE = { 'etc/os-release': 'VERSION=2\n', 'usr/bin/newpkg': '#!/bin/sh\necho new\n' };

async function layerTar(name: string, files: Parameters<typeof makeTar>[0]): Promise<string> {
  const p = join(dir, name);
  writeFileSync(p, await makeTar(files));
  return p;
}

/** The commit's tree as a client mounts it: every layer's squashfs, stacked with overlayfs. */
function mountCommit(c: Commit): string {
  const lowers = c.manifest.layers.map((l) => mounts.squashfs(store.objectPath(l.digest))).reverse();
  return mounts.overlay(lowers);
}

async function expectCode(p: Promise<unknown>, code: string): Promise<StrataError> {
  try {
    await p;
  } catch (e) {
    expect((e as StrataError).code).toBe(code);
    return e as StrataError;
  }
  throw new Error(`expected ${code}`);
}

/** A profile with two developer layers on base V1. */
async function profileWithTwoLayers(name: string): Promise<{ base: Commit; l1: Commit; l2: Commit }> {
  const base = await store.importBase(name, tree(`${name}-v1`, V1), { level: 3 });
  const l1 = (await store.commitTar(name, await layerTar(`${name}-l1.tar`, { 'home/dev/one': 'first\n' }), { message: 'one' })).commit;
  const l2 = (await store.commitTar(name, await layerTar(`${name}-l2.tar`, { 'opt/two': 'second\n' }), { message: 'two' })).commit;
  return { base, l1, l2 };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-rebase-data-'));
  store = await Store.open(join(dir, 'data'), { create: true, config: { gcGraceMs: 0 } });
});

afterAll(() => {
  mounts.cleanup();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a new base for an existing profile (strata import NAME SOURCE)', () => {
  it('stores a small change as the old chain plus one delta layer, replays both developer layers as they are, in one ref move', async () => {
    const { base, l1, l2 } = await profileWithTwoLayers('lab');
    const movesBefore = store.reflog('lab').length;
    const r = await store.newBase('lab', derive('lab-v2', join(dir, 'lab-v1'), V2CHANGE, ['etc/obsolete']), { level: 3 });
    expect(r.mode).toBe('delta');
    expect(r.branch).toBeNull();
    expect(r.conflicts).toEqual([]);
    // The new base's chain is the old base plus one small layer: a client that has the old base blob keeps it.
    expect(r.base.manifest.layers.map((l) => l.digest)).toEqual([base.manifest.layers[0]!.digest, r.base.addedLayer]);
    expect(r.base.parent).toBe(base.id);
    expect(r.deltaBytes!).toBeLessThan(r.fullBytes / 10);
    const head = store.getCommit(store.resolve('lab'));
    expect(head.id).toBe(r.commit.id);
    expect(head.manifest.layers.map((l) => l.digest)).toEqual([
      base.manifest.layers[0]!.digest,
      r.base.addedLayer,
      l1.addedLayer,
      l2.addedLayer,
    ]);
    expect(r.reused).toEqual([l1.addedLayer, l2.addedLayer]);
    // One ref move, undoable by rollback.
    expect(store.reflog('lab').length).toBe(movesBefore + 1);

    const root = mountCommit(head);
    expect(readFileSync(join(root, 'etc/os-release'), 'utf8')).toBe('VERSION=2\n');
    expect(readFileSync(join(root, 'usr/bin/newpkg'), 'utf8')).toContain('echo new');
    expect(existsSync(join(root, 'etc/obsolete'))).toBe(false);
    expect(readFileSync(join(root, 'usr/lib/big.bin')).equals(big)).toBe(true);
    expect(readFileSync(join(root, 'home/dev/one'), 'utf8')).toBe('first\n');
    expect(readFileSync(join(root, 'opt/two'), 'utf8')).toBe('second\n');
    // Directories in the delta carry the new tree's attributes (a 0755 /tmp would break every client).
    expect(statSync(join(root, 'tmp')).mode & 0o7777).toBe(0o1777);

    const back = store.rollback('lab', l2.id);
    expect(back.to).toBe(l2.id);
    expect(store.resolve('lab')).toBe(l2.id);
    store.rollback('lab', head.id);
  });

  it('stores a large change as a full base, still reusing the developer layers', async () => {
    const before = store.getCommit(store.resolve('lab'));
    const V3 = { ...V2, 'usr/lib/big.bin': randomBytes(3 << 20) };
    const r = await store.newBase('lab', derive('lab-v3', join(dir, 'lab-v2'), { 'usr/lib/big.bin': V3['usr/lib/big.bin']! }), {
      level: 3,
    });
    expect(r.mode).toBe('full');
    expect(r.base.manifest.layers).toHaveLength(1);
    expect(r.base.parent).toBeNull();
    const head = store.getCommit(store.resolve('lab'));
    expect(head.manifest.layers.slice(1).map((l) => l.digest)).toEqual(before.manifest.layers.slice(2).map((l) => l.digest));
    const root = mountCommit(head);
    expect(readFileSync(join(root, 'usr/lib/big.bin')).equals(V3['usr/lib/big.bin'] as Buffer)).toBe(true);
    expect(readFileSync(join(root, 'opt/two'), 'utf8')).toBe('second\n');
  });

  it('refuses a tree identical to the current base and changes nothing', async () => {
    const head = store.resolve('lab');
    const moves = store.reflog('lab').length;
    const V3tree = join(dir, 'lab-v3');
    const copy = join(dir, 'lab-v3-again');
    cpSync(V3tree, copy, { recursive: true, preserveTimestamps: true });
    await expectCode(store.newBase('lab', copy, { level: 3 }), 'E_NOTHING_TO_DO');
    expect(store.resolve('lab')).toBe(head);
    expect(store.reflog('lab').length).toBe(moves);
  });

  it('puts a conflicting result on NAME/rebase-<id>, lists the conflicts and leaves NAME where it was', async () => {
    await store.importBase('web', tree('web-v1', V1), { level: 3 });
    const mine = (await store.commitTar('web', await layerTar('web-l1.tar', { 'etc/os-release': 'MINE\n' }), { message: 'mine' })).commit;
    const r = await store.newBase('web', derive('web-v2', join(dir, 'web-v1'), V2CHANGE, ['etc/obsolete']), { level: 3 });
    expect(r.branch).toMatch(/^web\/rebase-/);
    expect(r.conflicts.map((c) => [c.path, c.layer])).toEqual([['etc/os-release', mine.addedLayer]]);
    expect(r.conflicts[0]!.oldBase).toMatch(/^file 10 bytes/);
    expect(store.resolve('web')).toBe(mine.id);
    expect(store.resolve(r.branch!)).toBe(r.commit.id);
  });
});

describe('strata rebase PROFILE --onto BASE', () => {
  it('replays two developer layers onto another base with the same digests; the merged tree has both plus the new base', async () => {
    const { l1, l2 } = await profileWithTwoLayers('dev');
    const onto = await store.importBase('debian2', tree('debian2', V2), { level: 3 });
    const moves = store.reflog('dev').length;
    const r = await store.rebase('dev', 'debian2');
    expect(r.reused).toEqual([l1.addedLayer, l2.addedLayer]);
    expect(r.commit.manifest.layers.map((l) => l.digest)).toEqual([
      ...onto.manifest.layers.map((l) => l.digest),
      l1.addedLayer,
      l2.addedLayer,
    ]);
    expect(store.reflog('dev').length).toBe(moves + 1);
    expect(store.reflog('dev')[0]!.action).toBe('rebase');
    const root = mountCommit(store.getCommit(store.resolve('dev')));
    expect(readFileSync(join(root, 'home/dev/one'), 'utf8')).toBe('first\n');
    expect(readFileSync(join(root, 'opt/two'), 'utf8')).toBe('second\n');
    expect(readFileSync(join(root, 'usr/bin/newpkg'), 'utf8')).toContain('echo new');
    // Undo is a rollback to where it was.
    store.rollback('dev', l2.id);
    expect(store.resolve('dev')).toBe(l2.id);
  });

  it("rebases its own layers when they are byte for byte another profile's (one commit id for both)", async () => {
    // Two profiles imported from identical trees (same mtimes) with the same layer on top share their commits:
    // ids are manifest hashes, and the commits keep the profile that made them first.
    const twin = (name: string) => {
      const root = tree(name, { 'etc/hostname': 'twin\n', 'usr/bin/tool': '#!/bin/sh\n' });
      execFileSync('find', [root, '-exec', 'touch', '-h', '-d', '@1700000000', '{}', '+']);
      return root;
    };
    const aBase = await store.importBase('twin-a', twin('twin-a-v1'), { level: 3 });
    const layer = await layerTar('twin-l1.tar', { 'srv/notes': 'mine\n' });
    const a1 = (await store.commitTar('twin-a', layer, { message: 'notes' })).commit;
    expect((await store.importBase('twin-b', twin('twin-b-v1'), { level: 3 })).id).toBe(aBase.id);
    const b1 = (await store.commitTar('twin-b', layer, { message: 'notes' })).commit;
    expect(b1.id).toBe(a1.id);
    const r = await store.rebase('twin-b', 'debian2');
    expect(r.reused).toEqual([b1.addedLayer]);
    expect(r.commit.manifest.layers.map((l) => l.digest).at(-1)).toBe(b1.addedLayer);
    expect(store.resolve('twin-a')).toBe(a1.id);
  });

  it('refuses a conflicting rebase, listing path, old base, new base and layer, and changes nothing', async () => {
    await store.importBase('kiosk', tree('kiosk-v1', V1), { level: 3 });
    const own = (
      await store.commitTar('kiosk', await layerTar('kiosk-l1.tar', { 'etc/obsolete': 'kept\n', 'srv/x': 'x\n' }), { message: 'keep it' })
    ).commit;
    const moves = store.reflog('kiosk').length;
    const e = await expectCode(store.rebase('kiosk', 'debian2'), 'E_CONFLICT');
    const conflicts = (e.details as { conflicts: { path: string; oldBase: string; newBase: string; layer: string }[] }).conflicts;
    expect(conflicts).toEqual([
      { path: 'etc/obsolete', oldBase: expect.stringMatching(/^file/), newBase: 'absent', layer: own.addedLayer },
    ]);
    expect(e.message).toContain('etc/obsolete');
    expect(store.resolve('kiosk')).toBe(own.id);
    expect(store.reflog('kiosk').length).toBe(moves);
    // --force stacks anyway: the layer's version wins.
    const forced = await store.rebase('kiosk', 'debian2', { force: true });
    expect(forced.warnings.join(' ')).toMatch(/forced/);
    const root = mountCommit(forced.commit);
    expect(readFileSync(join(root, 'etc/obsolete'), 'utf8')).toBe('kept\n');
  });
});
