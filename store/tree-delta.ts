/**
 * Comparing two trees (what a chain of layers shows through overlayfs) and
 * the decisions that follow from it. PURE: plain listings in, plain data
 * out; store/new-base.ts and store/rebase.ts do the I/O.
 *
 * - planDelta: the one layer that, stacked on the old tree, shows the new
 *   tree (files added or changed by content hash or metadata, whiteouts for
 *   what went away), so clients holding the old chain fetch only that layer.
 * - baseChanges / rebaseConflicts: which paths a new base changes, and which
 *   of them a profile's own layers also touch (a rebase replays those layers
 *   unchanged only when none do).
 */
import { conflictingPaths, type TouchSet, touchedPaths } from './dag.ts';
import { mergedTree, type MergePlan, planMerge } from './overlay-merge.ts';
import type { Digest, LayerEntry } from './types.ts';

export type Tree = Map<string, LayerEntry>;

const parentOf = (p: string): string => {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
};

function sameXattrs(a: LayerEntry['xattrs'], b: LayerEntry['xattrs']): boolean {
  const ka = Object.keys(a ?? {}).sort();
  const kb = Object.keys(b ?? {}).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a![k] === b![k]);
}

/**
 * Whether a path looks the same in both trees: same type and metadata, and
 * for a regular file the same content (its sha256 when both listings have
 * it, which every baked or imported layer does; otherwise size and mtime).
 */
export function sameEntry(a: LayerEntry, b: LayerEntry): boolean {
  if (a.type !== b.type || a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid) return false;
  if (a.type !== 'dir' && a.mtime !== b.mtime) return false;
  if ((a.linkname ?? '') !== (b.linkname ?? '') || !!a.opaque !== !!b.opaque) return false;
  if ((a.devmajor ?? 0) !== (b.devmajor ?? 0) || (a.devminor ?? 0) !== (b.devminor ?? 0)) return false;
  if (!sameXattrs(a.xattrs, b.xattrs)) return false;
  if (a.type === 'file') {
    if (a.size !== b.size) return false;
    if (a.sha256 && b.sha256) return a.sha256 === b.sha256;
  }
  return true;
}

export interface TreeChanges {
  /** Paths in the new tree that are new or differ (sorted). */
  changed: string[];
  /** Paths of the old tree that the new one lacks (sorted). */
  removed: string[];
}

/**
 * Directories count only when their type or attributes other than mtime
 * changed: a rebuilt image touches the mtime of most directories, and
 * shipping or comparing them would change nothing a program sees.
 */
export function treeChanges(oldTree: Tree, newTree: Tree): TreeChanges {
  const changed: string[] = [];
  const removed: string[] = [];
  for (const [p, e] of newTree) {
    const o = oldTree.get(p);
    if (!o || !sameEntry(o, e)) changed.push(p);
  }
  for (const p of oldTree.keys()) if (!newTree.has(p)) removed.push(p);
  return { changed: changed.sort(), removed: removed.sort() };
}

export interface DeltaPlan {
  /** The merge plan for planToTar over the one full new image: which of its paths go into the delta, which get whiteouts. */
  plan: MergePlan;
  /** File bytes the delta carries (its size before compression, about). */
  fileBytes: number;
  /** File bytes of the whole new tree. */
  fullBytes: number;
  changes: TreeChanges;
}

/**
 * The delta layer from OLD (the merged tree of the old base's chain) to the
 * new image whose listing is NEWENTRIES. It carries every changed path with
 * every directory above it (with the new tree's attributes: a directory in
 * an upper layer shows its own mode and owner), every member of a hardlink
 * group of which one member changed, and a whiteout for each removed path
 * whose parent is still a directory in the new tree (a removed directory's
 * whiteout hides all below it).
 */
export function planDelta(oldTree: Tree, newEntries: LayerEntry[]): DeltaPlan {
  const newTree = mergedTree([newEntries]);
  const changes = treeChanges(oldTree, newTree);
  const include = new Set<string>();
  const add = (p: string) => {
    for (let q = p; !include.has(q); q = parentOf(q)) {
      if (newTree.has(q)) include.add(q);
      if (q === '') break;
    }
  };
  if (newTree.has('')) include.add('');
  for (const p of changes.changed) add(p);

  // Hardlink groups go whole: the member that carries the data must be in the layer.
  const groups = new Map<string, string[]>();
  for (const e of newEntries) {
    if (e.type !== 'hardlink' || e.linkname === undefined) continue;
    const g = groups.get(e.linkname) ?? [e.linkname];
    g.push(e.path);
    groups.set(e.linkname, g);
  }
  for (const members of groups.values()) if (members.some((m) => include.has(m))) for (const m of members) add(m);

  // Sorted, so a removed directory comes before what was in it and its one whiteout covers them.
  const whiteouts: string[] = [];
  const gone = new Set<string>();
  for (const p of changes.removed) {
    let covered = false;
    for (let q = parentOf(p); ; q = parentOf(q)) {
      if (gone.has(q)) covered = true;
      if (q === '' || covered) break;
    }
    const parent = newTree.get(parentOf(p));
    // Under a path that is now a file or link, nothing of the old subtree shows anyway.
    if (covered || (parent && parent.type !== 'dir')) continue;
    gone.add(p);
    whiteouts.push(p);
    add(parentOf(p));
  }

  const full = planMerge([newEntries], { keepBelow: false });
  const owner = new Map<string, number>();
  for (const p of include) if (full.owner.has(p)) owner.set(p, 0);
  let fileBytes = 0;
  let fullBytes = 0;
  for (const e of newEntries) {
    if (e.type !== 'file') continue;
    fullBytes += e.size;
    if (owner.has(e.path)) fileBytes += e.size;
  }
  return {
    plan: { owner, opaque: new Set(), whiteouts: whiteouts.sort(), linkCarrier: full.linkCarrier },
    fileBytes,
    fullBytes,
    changes,
  };
}

/** The paths a base change affects, for conflict checks (as touchedPaths counts a layer's). */
export function baseChangeTouch(oldTree: Tree, newTree: Tree): TouchSet {
  const { changed, removed } = treeChanges(oldTree, newTree);
  const t: TouchSet = { exact: new Set(), subtree: new Set() };
  for (const p of changed) {
    const e = newTree.get(p)!;
    const o = oldTree.get(p);
    // A directory that stayed a directory changes no path below it.
    if (p === '' || (e.type === 'dir' && (!o || o.type === 'dir'))) continue;
    t.exact.add(p);
    if (o?.type === 'dir') t.subtree.add(p);
  }
  for (const p of removed) {
    t.exact.add(p);
    if (oldTree.get(p)?.type === 'dir') t.subtree.add(p);
  }
  return t;
}

export interface RebaseConflict {
  path: string;
  /** What the path is in the old base ("absent", "file 1234 bytes sha256:abcd…", ...). */
  oldBase: string;
  newBase: string;
  /** The profile's own layer that touches the path. */
  layer: Digest;
}

export function describeEntry(e: LayerEntry | undefined): string {
  if (!e) return 'absent';
  if (e.type === 'file') return `file ${e.size} bytes${e.sha256 ? ` sha256:${e.sha256.slice(0, 12)}` : ''}`;
  if (e.type === 'symlink') return `symlink -> ${e.linkname ?? ''}`;
  if (e.type === 'hardlink') return `hardlink -> ${e.linkname ?? ''}`;
  return e.type;
}

/**
 * Paths where a profile's own layers (base first) and the change from the
 * old base to the new one collide, one row per (path, layer). Empty: the
 * layers can be stacked on the new base as they are.
 */
export function rebaseConflicts(own: { digest: Digest; entries: LayerEntry[] }[], oldTree: Tree, newTree: Tree): RebaseConflict[] {
  const base = baseChangeTouch(oldTree, newTree);
  const out: RebaseConflict[] = [];
  for (const l of own) {
    for (const path of conflictingPaths(touchedPaths(l.entries), base)) {
      out.push({ path, oldBase: describeEntry(oldTree.get(path)), newBase: describeEntry(newTree.get(path)), layer: l.digest });
    }
  }
  return out;
}

/** The layers of HEAD above BASE (base first), or null when BASE's chain is not the start of HEAD's. */
export function layersAbove(head: Digest[], base: Digest[]): Digest[] | null {
  if (base.length > head.length || !base.every((d, i) => head[i] === d)) return null;
  return head.slice(base.length);
}
