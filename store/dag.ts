/**
 * Pure functions over the commit DAG and layer path sets. No I/O: callers
 * pass a lookup function, so these are tested on plain data and reused by
 * the store, the baker's parent rules and GC.
 */
import type { CommitId, Digest, LayerEntry } from './types.ts';

export interface DagNode {
  id: CommitId;
  parent: CommitId | null;
  mergeParent: CommitId | null;
  createdAt: number;
}

export type Lookup = (id: CommitId) => DagNode | undefined;

/** Every commit reachable from `roots` through parent and merge-parent links. */
export function reachable(roots: Iterable<CommitId>, get: Lookup): Set<CommitId> {
  const seen = new Set<CommitId>();
  const stack = [...roots];
  while (stack.length) {
    const id = stack.pop()!;
    if (seen.has(id)) continue;
    const n = get(id);
    if (!n) continue;
    seen.add(id);
    if (n.parent) stack.push(n.parent);
    if (n.mergeParent) stack.push(n.mergeParent);
  }
  return seen;
}

/** Nearest common ancestor of a and b (by first reaching all of a's ancestors). */
export function mergeBase(a: CommitId, b: CommitId, get: Lookup): CommitId | null {
  const ancA = reachable([a], get);
  // Breadth-first from b: the first commit found that a also reaches.
  const queue: CommitId[] = [b];
  const seen = new Set<CommitId>();
  while (queue.length) {
    const id = queue.shift()!;
    if (seen.has(id)) continue;
    seen.add(id);
    if (ancA.has(id)) return id;
    const n = get(id);
    if (!n) continue;
    if (n.parent) queue.push(n.parent);
    if (n.mergeParent) queue.push(n.mergeParent);
  }
  return null;
}

export function isAncestor(ancestor: CommitId, of: CommitId, get: Lookup): boolean {
  return reachable([of], get).has(ancestor);
}

/**
 * Log order: newest first, every commit after all of its children (a
 * topological order with time as the tie-break), like `git log --topo-order`.
 */
export function logOrder(heads: CommitId[], get: Lookup, limit = Infinity): DagNode[] {
  const nodes = new Map<CommitId, DagNode>();
  for (const id of reachable(heads, get)) nodes.set(id, get(id)!);
  const children = new Map<CommitId, number>();
  for (const n of nodes.values()) {
    for (const p of [n.parent, n.mergeParent]) if (p && nodes.has(p)) children.set(p, (children.get(p) ?? 0) + 1);
  }
  const ready = [...nodes.values()].filter((n) => !children.get(n.id));
  const out: DagNode[] = [];
  const byTime = (x: DagNode, y: DagNode) => y.createdAt - x.createdAt || (x.id < y.id ? -1 : 1);
  ready.sort(byTime);
  while (ready.length && out.length < limit) {
    const n = ready.shift()!;
    out.push(n);
    for (const p of [n.parent, n.mergeParent]) {
      if (!p || !nodes.has(p)) continue;
      const left = children.get(p)! - 1;
      children.set(p, left);
      if (left === 0) {
        const pn = nodes.get(p)!;
        // Insert keeping newest-first order among ready nodes.
        let i = 0;
        while (i < ready.length && byTime(ready[i]!, pn) <= 0) i++;
        ready.splice(i, 0, pn);
      }
    }
  }
  return out;
}

/** Walks N first parents. */
export function nthFirstParent(id: CommitId, n: number, get: Lookup): CommitId | null {
  let cur: CommitId | null = id;
  for (let i = 0; i < n && cur; i++) cur = get(cur)?.parent ?? null;
  return cur;
}

/**
 * The paths a layer "touches" for conflict checks. Plain directories are left
 * out: an upper dir holds every parent directory of a changed file (overlayfs
 * copies them up), so two layers would always share `etc/` and conflict on
 * nothing real. Opaque directories and whiteouts count, and they cover their
 * whole subtree.
 */
export interface TouchSet {
  exact: Set<string>;
  /** Whiteouts and opaque dirs: they affect every path below them. */
  subtree: Set<string>;
}

export function touchedPaths(entries: LayerEntry[]): TouchSet {
  const t: TouchSet = { exact: new Set(), subtree: new Set() };
  for (const e of entries) {
    if (e.path === '') continue;
    if (e.whiteout || (e.type === 'dir' && e.opaque)) {
      t.subtree.add(e.path);
      t.exact.add(e.path);
      continue;
    }
    if (e.type === 'dir') continue;
    t.exact.add(e.path);
  }
  return t;
}

export function unionTouch(sets: TouchSet[]): TouchSet {
  const u: TouchSet = { exact: new Set(), subtree: new Set() };
  for (const s of sets) {
    for (const p of s.exact) u.exact.add(p);
    for (const p of s.subtree) u.subtree.add(p);
  }
  return u;
}

function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  let i = path.lastIndexOf('/');
  while (i > 0) {
    out.push(path.slice(0, i));
    i = path.lastIndexOf('/', i - 1);
  }
  return out;
}

/** Paths on which two layers' changes collide, sorted. */
export function conflictingPaths(a: TouchSet, b: TouchSet): string[] {
  const out = new Set<string>();
  const check = (x: TouchSet, y: TouchSet) => {
    for (const p of x.exact) {
      if (y.exact.has(p)) out.add(p);
      for (const anc of ancestorsOf(p))
        if (y.subtree.has(anc)) {
          out.add(p);
          break;
        }
    }
  };
  check(a, b);
  check(b, a);
  return [...out].sort();
}

/** Layers present in one chain and not the other (what changed between them). */
export function chainDifference(a: Digest[], b: Digest[]): Digest[] {
  const sa = new Set(a);
  const sb = new Set(b);
  return [...a.filter((d) => !sb.has(d)), ...b.filter((d) => !sa.has(d))];
}
