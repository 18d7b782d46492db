// Pure tests of the delta planner and the rebase conflict rule (store/tree-delta.ts): plain listings in, decisions out.
import { describe, expect, it } from 'vitest';
import { mergedTree } from '../store/overlay-merge.ts';
import { layersAbove, planDelta, rebaseConflicts } from '../store/tree-delta.ts';
import type { LayerEntry } from '../store/types.ts';

const dir = (path: string, mode = 0o755, extra: Partial<LayerEntry> = {}): LayerEntry => ({
  path,
  type: 'dir',
  mode,
  uid: 0,
  gid: 0,
  size: 0,
  mtime: 1,
  ...extra,
});
const file = (path: string, sha: string, extra: Partial<LayerEntry> = {}): LayerEntry => ({
  path,
  type: 'file',
  mode: 0o644,
  uid: 0,
  gid: 0,
  size: 10,
  mtime: 1,
  sha256: sha,
  ...extra,
});

const OLD = [
  dir(''),
  dir('etc'),
  file('etc/a', 'a1'),
  file('etc/b', 'b1'),
  dir('tmp', 0o1777),
  dir('var'),
  dir('var/cache'),
  file('var/cache/x', 'x'),
];

describe('planDelta: the one layer from the old tree to the new one', () => {
  it('carries changed files with their parent directories, and whiteouts for what went away', () => {
    const next = [dir(''), dir('etc'), file('etc/a', 'a2'), file('etc/b', 'b1'), dir('tmp', 0o1777), file('etc/c', 'c1')];
    const d = planDelta(mergedTree([OLD]), next);
    expect([...d.plan.owner.keys()].sort()).toEqual(['', 'etc', 'etc/a', 'etc/c']);
    // var went as a whole: one whiteout covers its subtree.
    expect(d.plan.whiteouts).toEqual(['var']);
    expect(d.fileBytes).toBe(20);
    expect(d.fullBytes).toBe(30);
  });

  it('counts a metadata change (mode, owner, mtime) of a file with the same content', () => {
    const next = [...OLD.filter((e) => e.path !== 'etc/b'), file('etc/b', 'b1', { mode: 0o600 })];
    expect([...planDelta(mergedTree([OLD]), next).plan.owner.keys()]).toContain('etc/b');
    const touched = [...OLD.filter((e) => e.path !== 'etc/b'), file('etc/b', 'b1', { mtime: 2 })];
    expect([...planDelta(mergedTree([OLD]), touched).plan.owner.keys()]).toContain('etc/b');
  });

  it('ignores a directory whose mtime alone changed, and is empty for the same tree', () => {
    const next = OLD.map((e) => (e.type === 'dir' ? { ...e, mtime: 99 } : e));
    const d = planDelta(mergedTree([OLD]), next);
    expect(d.changes.changed).toEqual([]);
    expect(d.plan.whiteouts).toEqual([]);
  });

  it('whites out a removed file even when the listings leave its directory implied (a tar without directory entries)', () => {
    const old = [file('etc/a', 'a1'), file('etc/b', 'b1')];
    expect(planDelta(mergedTree([old]), [file('etc/a', 'a1')]).plan.whiteouts).toEqual(['etc/b']);
  });

  it('takes a whole hardlink group when one member changed', () => {
    const old = [
      ...OLD,
      file('etc/h', 'h1'),
      { ...file('etc/h2', ''), type: 'hardlink' as const, linkname: 'etc/h', size: 0, sha256: undefined },
    ];
    const next = [
      ...OLD,
      file('etc/h', 'h1'),
      { ...file('etc/h3', ''), type: 'hardlink' as const, linkname: 'etc/h', size: 0, sha256: undefined },
    ];
    const d = planDelta(mergedTree([old]), next);
    expect([...d.plan.owner.keys()]).toEqual(expect.arrayContaining(['etc/h', 'etc/h3']));
    expect(d.plan.whiteouts).toEqual(['etc/h2']);
  });
});

describe('rebaseConflicts: a profile layer against what the new base changed', () => {
  const oldTree = mergedTree([OLD]);
  const newTree = mergedTree([[dir(''), dir('etc'), file('etc/a', 'a2'), file('etc/b', 'b1'), dir('tmp', 0o1777)]]);

  it('lists a path both changed, with what it was in each base and the layer', () => {
    const own = [
      { digest: 'L1', entries: [dir('etc'), file('etc/a', 'mine')] },
      { digest: 'L2', entries: [file('srv/y', 'y')] },
    ];
    expect(rebaseConflicts(own, oldTree, newTree)).toEqual([
      { path: 'etc/a', oldBase: 'file 10 bytes sha256:a1', newBase: 'file 10 bytes sha256:a2', layer: 'L1' },
    ]);
  });

  it('sees a file under a directory the new base removed', () => {
    const own = [{ digest: 'L3', entries: [file('var/cache/y', 'y')] }];
    expect(rebaseConflicts(own, oldTree, newTree).map((c) => c.path)).toEqual(['var/cache/y']);
  });

  it('is empty when the layers touch only paths the base left alone', () => {
    expect(rebaseConflicts([{ digest: 'L4', entries: [dir('etc'), file('etc/b', 'mine'), dir('tmp')] }], oldTree, newTree)).toEqual([]);
  });
});

describe('layersAbove', () => {
  it("gives a head's layers above its base, or null when the base is not the start of the chain", () => {
    expect(layersAbove(['b', 'd', 'l1', 'l2'], ['b', 'd'])).toEqual(['l1', 'l2']);
    expect(layersAbove(['flat'], ['b'])).toBeNull();
  });
});
