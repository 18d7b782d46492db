/**
 * Deleting branches, tags and profiles on a real store: each is in the
 * reflog, `rollback NAME` undoes it, an assignment that uses a profile or
 * tag blocks its deletion, and gc after the retention age frees the layers
 * only the deleted refs kept.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StrataError } from '../store/errors.ts';
import { Store } from '../store/store.ts';
import { makeTar } from './helpers/tars.ts';

let dir: string;
let store: Store;
const DAY = 24 * 3600 * 1000;

async function tarFile(name: string, files: Parameters<typeof makeTar>[0]): Promise<string> {
  const p = join(dir, name);
  writeFileSync(p, await makeTar(files));
  return p;
}

function expectCode(fn: () => unknown, code: string): StrataError {
  try {
    fn();
  } catch (e) {
    expect((e as StrataError).code).toBe(code);
    return e as StrataError;
  }
  throw new Error(`expected ${code}`);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-refdel-'));
  store = await Store.open(join(dir, 'data'), { create: true, config: { gcGraceMs: 0 } });
  await store.importBase('lab', await tarFile('base.tar', { 'etc/hostname': 'lab\n' }), { level: 3 });
});

afterAll(() => {
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('deleting refs', () => {
  it('deletes a side branch and a tag, records both in the reflog, and rollback restores each', async () => {
    const side = await store.commitTar('lab', await tarFile('side.tar', { 'opt/side': 'side\n' }), { message: 'side' });
    store.branch('lab/feature', side.commit.id);
    store.rollback('lab');
    store.tag('v1', side.commit.id);

    store.deleteBranch('lab/feature');
    store.deleteTag('v1');
    expect(store.listRefs().map((r) => r.name)).not.toContain('lab/feature');
    expect(store.listRefs().map((r) => r.name)).not.toContain('v1');
    expect(store.reflog('lab/feature')[0]).toMatchObject({ old: side.commit.id, new: null, action: 'delete-branch' });
    expect(store.reflog('v1')[0]).toMatchObject({ old: side.commit.id, new: null, action: 'delete-tag' });

    expect(store.rollback('lab/feature').restored).toEqual(['lab/feature']);
    expect(store.rollback('v1').restored).toEqual(['v1']);
    expect(store.resolve('lab/feature')).toBe(side.commit.id);
    expect(store.listRefs().find((r) => r.name === 'v1')).toMatchObject({ type: 'tag', commit: side.commit.id });
  });

  it("refuses to delete a profile's own branch with branch -d, and unknown names", () => {
    expectCode(() => store.deleteBranch('lab'), 'E_BAD_ARGUMENT');
    expectCode(() => store.deleteBranch('lab/nope'), 'E_REF_NOT_FOUND');
    expectCode(() => store.deleteTag('lab/feature'), 'E_REF_NOT_FOUND');
    expect(store.resolve('lab')).toBeTruthy();
  });

  it('refuses to remove a profile an assignment boots or to delete a tag an assignment is pinned to, changing nothing', () => {
    store.assign('52:54:00:00:00:01', 'lab@v1');
    const refs = store.listRefs();
    expectCode(() => store.deleteTag('v1'), 'E_IN_USE');
    const e = expectCode(() => store.removeProfile('lab'), 'E_IN_USE');
    expect(e.message).toContain('52:54:00:00:00:01');
    expect(store.listRefs()).toEqual(refs);
    expect(store.getProfile('lab').name).toBe('lab');
    store.unassign('52:54:00:00:00:01');
  });

  it('removes a profile with its branches and tags, restores it by rollback, and gc after retention frees its layers', async () => {
    const other = await store.importBase('other', await tarFile('other.tar', { 'etc/other': 'other\n' }), { level: 3 });
    const push = (await store.commitTar('other', await tarFile('o1.tar', { 'srv/a': 'a\n' }))).commit;
    store.branch('other/push-abc', push.id);
    store.tag('other-v1', push.id);
    const cmdline = store.setCmdline('other', 'console=ttyS0').cmdline;
    const layers = push.manifest.layers.map((l) => l.digest);

    const r = store.removeProfile('other');
    expect(r.refs.map((x) => x.name).sort()).toEqual(['other', 'other-v1', 'other/push-abc']);
    expect(store.listProfiles().map((p) => p.name)).not.toContain('other');
    expectCode(() => store.getProfile('other'), 'E_PROFILE_NOT_FOUND');
    // Kept while the reflog can undo it.
    expect((await store.gc({ dryRun: true })).objects).not.toContain(layers[1]);

    const back = store.rollback('other');
    expect(back.restored!.sort()).toEqual(['other', 'other-v1', 'other/push-abc']);
    expect(store.getProfile('other')).toMatchObject({ cmdline, head: push.id });
    expect(store.resolve('other-v1')).toBe(push.id);

    // gc --dry-run names conflict branches nobody moved for staleBranchMs.
    const later = Date.now() + 15 * DAY;
    expect((await store.gc({ dryRun: true, now: later })).staleBranches.map((b) => b.name)).toEqual(['other/push-abc']);

    store.removeProfile('other');
    const afterRetention = Date.now() + store.config.reflogKeepMs + DAY;
    const g = await store.gc({ now: afterRetention });
    expect(g.commits).toEqual(expect.arrayContaining([other.id, push.id]));
    for (const d of layers) {
      expect(g.objects).toContain(d);
      expect(store.hasObject(d)).toBe(false);
    }
    // lab's layers stay.
    for (const l of store.getCommit(store.resolve('lab')).manifest.layers) expect(store.hasObject(l.digest)).toBe(true);
    // The undo has expired with the reflog.
    expectCode(() => store.rollback('other'), 'E_PROFILE_NOT_FOUND');
  });
});
