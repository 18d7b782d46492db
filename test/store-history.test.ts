/**
 * Behaviour of the history operations on a real store (real tar2sqfs bakes,
 * real SQLite), as an admin would see it through the Store API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../store/store.ts';
import type { StrataError } from '../store/errors.ts';
import { makeTar } from './helpers/tars.ts';

let dir: string;
let store: Store;
const ids: Record<string, string> = {};

async function tarFile(name: string, files: Parameters<typeof makeTar>[0]): Promise<string> {
  const p = join(dir, name);
  writeFileSync(p, await makeTar(files));
  return p;
}

async function expectCode(p: Promise<unknown> | (() => unknown), code: string): Promise<StrataError> {
  try {
    if (typeof p === 'function') p();
    else await p;
  } catch (e) {
    expect((e as StrataError).code).toBe(code);
    return e as StrataError;
  }
  throw new Error(`expected ${code}`);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-history-'));
  store = await Store.open(join(dir, 'data'), { create: true });
  const base = await tarFile('base.tar', {
    'etc/hostname': 'lab\n',
    'etc/shared': 'v0\n',
    'usr/bin/tool': '#!/bin/sh\necho tool\n',
    'opt/app/config': 'x=1\n',
    'opt/app/data': 'data\n',
  });
  ids.base = (await store.importBase('lab', base, { level: 3 })).id;
  ids.l1 = (
    await store.commitTar('lab', await tarFile('l1.tar', { 'etc/motd': 'hello\n', 'etc/shared': 'v1\n' }), { message: 'motd and shared' })
  ).commit.id;
  ids.l2 = (await store.commitTar('lab', await tarFile('l2.tar', { 'opt/app': { whiteout: true } }), { message: 'drop app' })).commit.id;
});

afterAll(() => {
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('commits and the log', () => {
  it('every commit id is the sha256 of its manifest', () => {
    for (const c of store.log('lab')) {
      expect(createHash('sha256').update(store.manifestText(c.id)).digest('hex')).toBe(c.id);
    }
  });

  it('log shows the profile newest first with messages and growing chains', () => {
    const log = store.log('lab');
    expect(log.map((c) => c.id)).toEqual([ids.l2, ids.l1, ids.base]);
    expect(log.map((c) => c.manifest.layers.length)).toEqual([3, 2, 1]);
    expect(log[1]!.message).toBe('motd and shared');
  });

  it('the layer counts a log prints without reading manifests match the manifests', async () => {
    // A fresh store reads the log rows without manifest text (the fast path of a cold `strata log`).
    const fresh = await Store.open(join(dir, 'data'));
    try {
      const log = fresh.log('lab');
      expect(log.map((c) => c.layerCount)).toEqual([3, 2, 1]);
      expect(log.map((c) => c.manifest.layers.length)).toEqual([3, 2, 1]);
    } finally {
      fresh.close();
    }
  });

  it('names commits by prefix, profile~N and tag', () => {
    expect(store.resolve(ids.l1!.slice(0, 9))).toBe(ids.l1);
    expect(store.resolve('lab~1')).toBe(ids.l1);
    expect(store.resolve('lab~2')).toBe(ids.base);
    store.tag('v1', 'lab~1');
    expect(store.resolve('v1')).toBe(ids.l1);
  });

  it('unknown commits and tags already taken are refused clearly', async () => {
    await expectCode(() => store.resolve('0000000'), 'E_COMMIT_NOT_FOUND');
    await expectCode(() => store.resolve('lab~9'), 'E_COMMIT_NOT_FOUND');
    await expectCode(() => store.tag('v1', 'lab'), 'E_REF_EXISTS');
  });

  it('the same content committed on the same parent is the same commit', async () => {
    store.rollback('lab', ids.l1!);
    const again = await store.commitTar('lab', await tarFile('l2b.tar', { 'opt/app': { whiteout: true } }), { message: 'again' });
    expect(again.commit.id).toBe(ids.l2);
    expect(store.getProfile('lab').head).toBe(ids.l2);
  });

  it('a commit against an old parent that collides with newer commits is refused and nothing moves', async () => {
    const err = await expectCode(
      store.commitTar('lab', await tarFile('l2c.tar', { 'opt/app/config': 'x=2\n' }), { parent: ids.l1, message: 'late' }),
      'E_STALE_PARENT',
    );
    expect(err.message).toMatch(/opt\/app\/config/);
    expect(store.getProfile('lab').head).toBe(ids.l2);
  });
});

describe('diff', () => {
  it('reads whiteouts as deletions', () => {
    const d = store.diff(ids.l2!);
    expect(d.deleted).toEqual(['opt/app', 'opt/app/config', 'opt/app/data']);
    expect(d.added).toEqual([]);
  });
  it('shows added and changed paths', () => {
    const d = store.diff(ids.l1!);
    expect(d.added).toEqual(['etc/motd']);
    expect(d.changed).toEqual(['etc/shared']);
  });
  it('between two commits', () => {
    const d = store.diff(ids.base!, ids.l2!);
    expect(d.added).toEqual(['etc/motd']);
    expect(d.deleted).toContain('opt/app/config');
  });
});

describe('rollback and reflog', () => {
  it('rolls back to PROFILE~1, records it, and can be undone from the reflog', () => {
    const head = store.getProfile('lab').head!;
    const r = store.rollback('lab');
    expect(r.to).toBe(store.resolve(`${head}~1`));
    expect(store.getProfile('lab').head).toBe(r.to);
    const log = store.reflog('lab');
    expect(log[0]!.action).toBe('rollback');
    expect(log[0]!.old).toBe(head);
    // Undo: lab@{1} is where lab was before the rollback.
    store.rollback('lab', 'lab@{1}');
    expect(store.getProfile('lab').head).toBe(head);
  });
  it('refuses a rollback to where it already is', async () => {
    await expectCode(() => store.rollback('lab', 'lab'), 'E_NOTHING_TO_DO');
  });
});

describe('revert', () => {
  it("makes a new commit whose chain drops that commit's layer", async () => {
    const head = store.getCommit(store.getProfile('lab').head!);
    const l1 = store.getCommit(ids.l1!);
    const r = await store.revert('lab', ids.l1!);
    expect(r.commit.parent).toBe(head.id);
    expect(r.commit.manifest.layers.map((l) => l.digest)).toEqual(
      head.manifest.layers.map((l) => l.digest).filter((d) => d !== l1.addedLayer),
    );
    expect(store.diff(r.commit.id).deleted).toEqual(['etc/motd']);
    store.rollback('lab', head.id);
  });
  it('warns when later layers touch the same paths', async () => {
    const before = store.getProfile('lab').head!;
    await store.commitTar('lab', await tarFile('l3.tar', { 'etc/motd': 'changed later\n' }), { message: 'later motd' });
    const r = await store.revert('lab', ids.l1!);
    expect(r.warnings.join('\n')).toMatch(/etc\/motd/);
    store.rollback('lab', before);
  });
  it('cannot drop the base', async () => {
    await expectCode(store.revert('lab', ids.base!), 'E_BAD_ARGUMENT');
  });
});

describe('branch and cherry-pick', () => {
  it('reuses the picked layer as is (same digest, no new object)', async () => {
    store.branch('lab/feature', ids.base!);
    const f = await store
      .commitTar('lab/feature', await tarFile('f1.tar', { 'etc/feature': 'on\n' }), { message: 'feature' })
      .catch(async (e) => {
        // commitTar commits on profiles; branches get their own commits the same way
        throw e;
      });
    const objectsBefore = await countObjects();
    const head = store.getProfile('lab').head!;
    const r = await store.cherryPick('lab', f.commit.id);
    expect(r.commit.parent).toBe(head);
    expect(r.commit.addedLayer).toBe(f.commit.addedLayer);
    expect(await countObjects()).toBe(objectsBefore);
    expect(store.diff(r.commit.id).added).toEqual(['etc/feature']);
  });
  it('refuses with the list of conflicting paths, and --force overrides', async () => {
    const g = await store.commitTar(
      'lab/feature',
      await tarFile('f2.tar', { 'etc/shared': 'feature version\n', 'etc/only-feature': '1\n' }),
      { message: 'feature shared' },
    );
    const head = store.getProfile('lab').head!;
    const err = await expectCode(store.cherryPick('lab', g.commit.id), 'E_CONFLICT');
    expect(err.details.paths).toEqual(['etc/shared']);
    expect(err.message).toMatch(/etc\/shared/);
    expect(store.getProfile('lab').head).toBe(head);
    const forced = await store.cherryPick('lab', g.commit.id, { force: true });
    expect(forced.commit.parent).toBe(head);
  });
});

describe('flatten', () => {
  it('turns the chain into one layer with the same tree, and is undone by rollback', async () => {
    const head = store.getProfile('lab').head!;
    const reports: { done: number; total: number }[] = [];
    const r = await store.flatten('lab', { onProgress: (p) => reports.push(p) });
    expect(r.commit.manifest.layers).toHaveLength(1);
    // The last report is the whole merged tree: done = total > 0.
    const last = reports.at(-1)!;
    expect(last.done).toBeGreaterThan(0);
    expect(last.done).toBe(last.total);
    expect(store.diff(head, r.commit.id)).toEqual({ added: [], changed: [], deleted: [] });
    store.rollback('lab');
    expect(store.getProfile('lab').head).toBe(head);
  });
  it('--from keeps the chain up to that commit', async () => {
    const head = store.getCommit(store.getProfile('lab').head!);
    const r = await store.flatten('lab', { from: ids.l1! });
    expect(r.commit.manifest.layers.map((l) => l.digest).slice(0, 2)).toEqual(head.manifest.layers.slice(0, 2).map((l) => l.digest));
    expect(r.commit.manifest.layers).toHaveLength(3);
    expect(store.diff(head.id, r.commit.id)).toEqual({ added: [], changed: [], deleted: [] });
    store.rollback('lab', head.id);
  });
});

describe('concurrent commits', () => {
  it('two commits on the same profile at once both land', async () => {
    const head = store.getProfile('lab').head!;
    const [a, b] = await Promise.all([
      store.commitTar('lab', await tarFile('c1.tar', { 'srv/a': 'a\n' }), { message: 'a' }),
      store.commitTar('lab', await tarFile('c2.tar', { 'srv/b': 'b\n' }), { message: 'b' }),
    ]);
    const log = store.log('lab').map((c) => c.id);
    expect(log).toContain(a.commit.id);
    expect(log).toContain(b.commit.id);
    expect(store.log('lab', { limit: 3 }).map((c) => c.id)).toContain(head);
    const diff = store.diff(head, 'lab');
    expect(diff.added.sort()).toEqual(['srv', 'srv/a', 'srv/b']);
  });
});

describe('gc and fsck', () => {
  it('keeps everything reachable and reports a clean store', async () => {
    const dry = await store.gc({ dryRun: true });
    for (const id of Object.values(ids)) expect(dry.commits).not.toContain(id);
    const f = await store.fsck();
    expect(f.problems).toEqual([]);
  });
  it('removes what nothing keeps once the reflog has expired', async () => {
    await store.commitTar('lab', await tarFile('gone.tar', { tmpfile: 'x\n' }), { message: 'to be dropped' });
    const dropped = store.getProfile('lab').head!;
    store.rollback('lab');
    // Still kept by the reflog now...
    expect((await store.gc({ dryRun: true })).commits).not.toContain(dropped);
    // ...but not once the reflog entries are older than the keep time.
    const later = Date.now() + store.config.reflogKeepMs + 1000;
    const r = await store.gc({ now: later });
    expect(r.commits).toContain(dropped);
    expect(() => store.getCommit(dropped)).toThrow(/no commit/);
    expect((await store.fsck()).problems).toEqual([]);
    // Everything the profile's head needs is still there.
    for (const l of store.getCommit(store.getProfile('lab').head!).manifest.layers) expect(store.hasObject(l.digest)).toBe(true);
  });
  it('fsck finds a flipped byte in an object', async () => {
    const d = store.getCommit(store.getProfile('lab').head!).manifest.layers[0]!.digest;
    const { readFileSync, chmodSync } = await import('node:fs');
    const p = store.objectPath(d);
    const buf = readFileSync(p);
    chmodSync(p, 0o644);
    buf[100] = buf[100]! ^ 0xff;
    writeFileSync(p, buf);
    const f = await store.fsck();
    expect(f.ok).toBe(false);
    expect(f.problems.join('\n')).toMatch(new RegExp(`object ${d} is corrupt`));
    buf[100] = buf[100]! ^ 0xff;
    writeFileSync(p, buf);
    expect((await store.fsck()).ok).toBe(true);
  });
});

async function countObjects(): Promise<number> {
  let n = 0;
  for await (const _ of store.objects.list()) n++;
  return n;
}
