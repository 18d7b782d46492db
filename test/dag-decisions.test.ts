import { describe, expect, it } from 'vitest';
import { chainDifference, conflictingPaths, isAncestor, logOrder, mergeBase, reachable, touchedPaths, type DagNode } from '../store/dag.ts';
import { matchAssignment, parseMatch } from '../store/assignments.ts';
import type { Assignment, LayerEntry } from '../store/types.ts';

function dag(spec: [string, string | null, string | null, number][]) {
  const m = new Map<string, DagNode>(spec.map(([id, parent, mergeParent, createdAt]) => [id, { id, parent, mergeParent, createdAt }]));
  return (id: string) => m.get(id);
}

//   a - b - c - e (merge of d)
//        \- d -/
const g = dag([
  ['a', null, null, 1],
  ['b', 'a', null, 2],
  ['c', 'b', null, 3],
  ['d', 'b', null, 4],
  ['e', 'c', 'd', 5],
]);

describe('DAG walks', () => {
  it('log lists every commit once, children before parents, merges included', () => {
    const order = logOrder(['e'], g).map((n) => n.id);
    expect(order[0]).toBe('e');
    expect(order.sort()).toEqual(['a', 'b', 'c', 'd', 'e']);
    const pos = (x: string) => logOrder(['e'], g).findIndex((n) => n.id === x);
    expect(pos('c')).toBeLessThan(pos('b'));
    expect(pos('d')).toBeLessThan(pos('b'));
    expect(pos('b')).toBeLessThan(pos('a'));
  });
  it('merge base and ancestry', () => {
    expect(mergeBase('c', 'd', g)).toBe('b');
    expect(isAncestor('d', 'e', g)).toBe(true);
    expect(isAncestor('e', 'd', g)).toBe(false);
    expect([...reachable(['c'], g)].sort()).toEqual(['a', 'b', 'c']);
  });
  it('log of 10,000 commits is fast enough to be interactive', () => {
    const spec: [string, string | null, string | null, number][] = [];
    for (let i = 0; i < 10000; i++) spec.push([`c${i}`, i ? `c${i - 1}` : null, null, i]);
    const big = dag(spec);
    const t = Date.now();
    expect(logOrder(['c9999'], big).length).toBe(10000);
    expect(Date.now() - t).toBeLessThan(5000); // generous: CI must not fail on a slow machine
  });
});

const f = (path: string, extra: Partial<LayerEntry> = {}): LayerEntry => ({
  path,
  type: 'file',
  mode: 0o644,
  uid: 0,
  gid: 0,
  size: 1,
  mtime: 0,
  ...extra,
});
const dir = (path: string, extra: Partial<LayerEntry> = {}): LayerEntry => ({
  path,
  type: 'dir',
  mode: 0o755,
  uid: 0,
  gid: 0,
  size: 0,
  mtime: 0,
  ...extra,
});

describe('conflict checks', () => {
  it('shared parent directories are not conflicts, the same file is', () => {
    const a = touchedPaths([dir('etc'), f('etc/a')]);
    const b = touchedPaths([dir('etc'), f('etc/b')]);
    expect(conflictingPaths(a, b)).toEqual([]);
    expect(conflictingPaths(a, touchedPaths([dir('etc'), f('etc/a')]))).toEqual(['etc/a']);
  });
  it('a whiteout or opaque dir conflicts with changes below it', () => {
    const del = touchedPaths([dir('opt'), f('opt/app', { type: 'char', whiteout: true })]);
    const change = touchedPaths([dir('opt'), dir('opt/app'), f('opt/app/config')]);
    expect(conflictingPaths(del, change)).toEqual(['opt/app/config']);
    const opaque = touchedPaths([dir('srv', { opaque: true })]);
    expect(conflictingPaths(opaque, touchedPaths([f('srv/x')]))).toEqual(['srv/x']);
  });
  it('chain difference names the layers on either side only', () => {
    expect(chainDifference(['b', 'l1'], ['b', 'l2', 'l3'])).toEqual(['l1', 'l2', 'l3']);
  });
});

describe('assignment matching', () => {
  const mk = (match: string, profile: string): Assignment => ({ ...parseMatch(match), profile, pin: null, cmdline: '' });
  const all = [
    mk('default', 'def'),
    mk('10.0.0.0/8', 'wide'),
    mk('10.1.0.0/16', 'narrow'),
    mk('10.1.2.3', 'exact'),
    mk('AA-BB-CC-DD-EE-FF', 'bymac'),
  ];
  it('MAC over IP over smallest CIDR over default', () => {
    expect(matchAssignment(all, 'aa:bb:cc:dd:ee:ff', '10.1.2.3')?.profile).toBe('bymac');
    expect(matchAssignment(all, '00:00:00:00:00:01', '10.1.2.3')?.profile).toBe('exact');
    expect(matchAssignment(all, null, '10.1.9.9')?.profile).toBe('narrow');
    expect(matchAssignment(all, null, '10.200.0.1')?.profile).toBe('wide');
    expect(matchAssignment(all, null, '192.168.1.1')?.profile).toBe('def');
    expect(matchAssignment(all, null, '::ffff:10.1.9.9')?.profile).toBe('narrow');
    expect(
      matchAssignment(
        all.filter((a) => a.kind !== 'default'),
        null,
        '192.168.1.1',
      ),
    ).toBeNull();
  });
  it('refuses what is not a MAC, IP, CIDR or default', () => {
    expect(() => parseMatch('lab-7')).toThrow(/cannot read/);
    expect(parseMatch('10.1.2.3/16').match).toBe('10.1.0.0/16');
  });
});
