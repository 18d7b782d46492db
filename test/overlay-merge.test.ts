// Pure tests of the overlay rules flatten relies on: what overlayfs would
// show for a stack of layers, and which layer provides each path of a merge.
import { describe, expect, it } from 'vitest';
import { mergedTree, planMerge } from '../store/overlay-merge.ts';
import type { LayerEntry } from '../store/types.ts';

const base = { mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1_700_000_000 };
const dir = (path: string, extra: Partial<LayerEntry> = {}): LayerEntry => ({ ...base, mode: 0o755, path, type: 'dir', ...extra });
const file = (path: string, size = 1, extra: Partial<LayerEntry> = {}): LayerEntry => ({ ...base, path, type: 'file', size, ...extra });
const wh = (path: string): LayerEntry => ({ ...base, mode: 0, path, type: 'char', devmajor: 0, devminor: 0, whiteout: true });
const link = (path: string, target: string): LayerEntry => ({ ...base, path, type: 'hardlink', linkname: target });
const sym = (path: string, target: string): LayerEntry => ({ ...base, mode: 0o777, path, type: 'symlink', linkname: target });

/** path -> "layer:type" for readable expectations. */
const view = (layers: LayerEntry[][]): Record<string, string> => {
  const t = mergedTree(layers);
  const out: Record<string, string> = {};
  for (const [p, e] of t) out[p] = `${layers.findIndex((l) => l.includes(e))}:${e.type}`;
  return out;
};
const owners = (layers: LayerEntry[][], keepBelow: boolean): Record<string, number> =>
  Object.fromEntries([...planMerge(layers, { keepBelow }).owner].sort(([a], [b]) => a.localeCompare(b)));

describe('mergedTree', () => {
  it('shows a file overridden by a higher layer from that layer, and keeps the rest', () => {
    const layers = [
      [dir(''), dir('etc'), file('etc/hostname', 5), file('etc/passwd', 100)],
      [dir('', { mode: 0o700 }), dir('etc'), file('etc/hostname', 9)],
    ];
    expect(view(layers)).toEqual({ '': '1:dir', etc: '1:dir', 'etc/hostname': '1:file', 'etc/passwd': '0:file' });
    expect(mergedTree(layers).get('')!.mode).toBe(0o700);
    expect(mergedTree(layers).get('etc/hostname')!.size).toBe(9);
  });

  it('drops a path and everything below it at a whiteout', () => {
    const layers = [
      [dir(''), dir('opt'), dir('opt/app'), file('opt/app/bin'), file('opt/keep'), file('gone')],
      [dir(''), dir('opt'), wh('opt/app'), wh('gone')],
    ];
    expect(view(layers)).toEqual({ '': '1:dir', opt: '1:dir', 'opt/keep': '0:file' });
  });

  it('replaces a directory by an opaque one: lower children vanish, its own stay', () => {
    const layers = [
      [dir(''), dir('srv'), file('srv/old1'), dir('srv/sub'), file('srv/sub/x')],
      [dir(''), dir('srv', { opaque: true, mode: 0o750 }), file('srv/new')],
    ];
    expect(view(layers)).toEqual({ '': '1:dir', srv: '1:dir', 'srv/new': '1:file' });
  });

  it('lets a higher layer recreate what a whiteout deleted, without the old content', () => {
    const layers = [
      [dir(''), dir('d'), file('d/old'), file('f', 3)],
      [dir(''), wh('d'), wh('f')],
      [dir(''), dir('d'), file('d/new'), file('f', 7)],
    ];
    expect(view(layers)).toEqual({ '': '2:dir', d: '2:dir', 'd/new': '2:file', f: '2:file' });
  });

  it('a file over a directory hides the whole lower directory; a directory over a file does not merge', () => {
    const layers = [
      [dir(''), dir('x'), file('x/inner'), file('y')],
      [dir(''), file('x'), dir('y'), file('y/child')],
    ];
    expect(view(layers)).toEqual({ '': '1:dir', x: '1:file', y: '1:dir', 'y/child': '1:file' });
  });

  it('works on unsorted listings without a root entry', () => {
    const layers = [
      [file('a/b/c'), dir('a/b'), dir('a')],
      [file('a/b/d'), dir('a')],
    ];
    expect(view(layers)).toEqual({ a: '1:dir', 'a/b': '0:dir', 'a/b/c': '0:file', 'a/b/d': '1:file' });
  });
});

describe('planMerge', () => {
  const chain = [
    [dir(''), dir('etc'), file('etc/a'), file('etc/b'), dir('var'), dir('var/cache'), file('var/cache/big'), file('tmpfile')],
    [
      dir(''),
      dir('etc'),
      file('etc/a', 2),
      wh('etc/b'),
      dir('var'),
      dir('var/cache', { opaque: true }),
      file('var/cache/new'),
      wh('tmpfile'),
    ],
    [dir(''), sym('etc/link', 'a'), dir('etc'), dir('newdir')],
  ];

  it('keepBelow=false: one owner per surviving path, no whiteouts, no opaque marks', () => {
    const plan = planMerge(chain, { keepBelow: false });
    expect(owners(chain, false)).toEqual({
      '': 2,
      etc: 2,
      'etc/a': 1,
      'etc/link': 2,
      newdir: 2,
      var: 1,
      'var/cache': 1,
      'var/cache/new': 1,
    });
    expect(plan.whiteouts).toEqual([]);
    expect([...plan.opaque]).toEqual([]);
  });

  it('keepBelow=true over the segment above the base: whiteouts and opaque marks where the base shows through', () => {
    const segment = chain.slice(1);
    const plan = planMerge(segment, { keepBelow: true });
    // segment indexes: 0 = chain layer 1, 1 = chain layer 2
    expect(owners(segment, true)).toEqual({
      '': 1,
      etc: 1,
      'etc/a': 0,
      'etc/link': 1,
      newdir: 1,
      var: 0,
      'var/cache': 0,
      'var/cache/new': 0,
    });
    expect(plan.whiteouts).toEqual(['etc/b', 'tmpfile']);
    expect([...plan.opaque]).toEqual(['var/cache']);
  });

  it('keepBelow=true: a directory recreated after rmdir is opaque; nothing below an opaque dir needs marks', () => {
    const segment = [
      [dir(''), wh('d'), dir('o', { opaque: true }), dir('o/sub'), file('o/sub/f'), wh('o/gone')],
      [dir(''), dir('d'), file('d/x'), dir('o'), dir('o/sub', { opaque: true }), wh('o/sub/f')],
    ];
    const plan = planMerge(segment, { keepBelow: true });
    expect([...plan.opaque].sort()).toEqual(['d', 'o']);
    // o/gone and o/sub/f sit under the opaque o: the lower layers cannot show them anyway.
    expect(plan.whiteouts).toEqual([]);
    expect(owners(segment, true)).toEqual({ '': 1, d: 1, 'd/x': 1, o: 1, 'o/sub': 1 });
  });

  it('keepBelow=true: a whiteout of a file that an earlier segment layer created still deletes below', () => {
    const segment = [
      [dir(''), file('f')],
      [dir(''), wh('f')],
    ];
    expect(planMerge(segment, { keepBelow: true }).whiteouts).toEqual(['f']);
    expect(planMerge(segment, { keepBelow: false }).whiteouts).toEqual([]);
  });

  it('keepBelow=true: an opaque root hides the lower layers entirely', () => {
    const segment = [[dir('', { opaque: true }), file('only')]];
    const plan = planMerge(segment, { keepBelow: true });
    expect([...plan.opaque]).toEqual(['']);
    expect(plan.whiteouts).toEqual([]);
  });

  it('keeps hardlinks whose target survives in the same layer', () => {
    const layers = [[dir(''), file('bin/a', 10), link('bin/b', 'bin/a'), dir('bin')]];
    const plan = planMerge(layers, { keepBelow: false });
    expect(plan.owner.get('bin/b')).toBe(0);
    expect(plan.linkCarrier.get(0)).toEqual(
      new Map([
        ['bin/a', 'bin/a'],
        ['bin/b', 'bin/a'],
      ]),
    );
  });

  it('moves the data of a hardlink group to its first surviving member when the target is shadowed', () => {
    const layers = [
      [dir(''), dir('bin'), file('bin/a', 10), link('bin/b', 'bin/a'), link('bin/c', 'bin/a'), file('bin/solo')],
      [dir(''), dir('bin'), file('bin/a', 99)],
    ];
    const plan = planMerge(layers, { keepBelow: false });
    expect(plan.owner.get('bin/a')).toBe(1);
    expect(plan.owner.get('bin/b')).toBe(0);
    expect(plan.linkCarrier.get(0)).toEqual(
      new Map([
        ['bin/a', 'bin/b'],
        ['bin/b', 'bin/b'],
        ['bin/c', 'bin/b'],
      ]),
    );
    expect(plan.linkCarrier.get(1)).toBeUndefined();
  });

  it('drops a hardlink group entirely when every member is shadowed', () => {
    const layers = [
      [dir(''), file('a'), link('b', 'a')],
      [dir(''), wh('a'), wh('b')],
    ];
    const plan = planMerge(layers, { keepBelow: false });
    expect(plan.linkCarrier.size).toBe(0);
    expect([...plan.owner.keys()]).toEqual(['']);
  });
});
