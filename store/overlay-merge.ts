/**
 * Overlay semantics in user space: what a stack of layers (base first) looks
 * like through overlayfs, and which layer must provide each path when the
 * stack is merged into one layer (flatten). PURE: plain data in, plain data
 * out, no I/O — flatten-stream.ts does the streaming.
 *
 * The overlayfs rules reproduced here (Documentation/filesystems/overlayfs.rst):
 * - a whiteout (char device 0:0) deletes the path and everything below it in
 *   lower layers;
 * - a non-directory hides whatever lower layers have at its path (a lower
 *   directory's whole content included);
 * - a directory over a lower directory merges with it and shows the upper
 *   one's attributes, unless it is opaque (trusted.overlay.opaque=y), which
 *   hides all lower content of that directory;
 * - once a lower layer is cut off at a path, a higher layer cannot make it
 *   visible again (a plain directory recreated over a whiteout stays alone).
 */
import type { LayerEntry } from './types.ts';

export interface MergePlan {
  /**
   * Every path of the output, mapped to the index of the layer whose entry
   * (header, xattrs, data) provides it. Directories map to the topmost layer
   * that has them (overlayfs shows that one's attributes). Never contains
   * whiteouts.
   */
  owner: Map<string, number>;
  /**
   * keepBelow only: directories that must carry trusted.overlay.opaque=y so
   * that the output hides what the lower layers have there, as the merged
   * segment did. Empty when keepBelow is false.
   */
  opaque: Set<string>;
  /** keepBelow only: paths to emit as whiteouts (char 0:0), sorted. Empty when keepBelow is false. */
  whiteouts: string[];
  /**
   * Hardlink groups, per layer index: member path -> the output path that
   * carries the group's data. The carrier is the group's first file when it
   * survives, else its first surviving member; all other surviving members
   * become hardlinks to the carrier. Only groups with a surviving member are
   * listed. A stream reader uses it when the file that bears the data in the
   * layer is itself shadowed by a higher layer.
   */
  linkCarrier: Map<number, Map<string, string>>;
}

interface Node {
  /** Undefined only for a root no layer lists, or a directory no layer lists (implied by a child). */
  entry: LayerEntry | undefined;
  layer: number;
  /** Non-null for directories. */
  children: Map<string, Node> | null;
}

interface Overlay {
  root: Node;
  /** Paths where some layer cut off everything below it (whiteout, non-directory, opaque directory). */
  cut: Set<string>;
}

const parentOf = (p: string): string => {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
};
const baseOf = (p: string): string => p.slice(p.lastIndexOf('/') + 1);
function depthOf(p: string): number {
  if (p === '') return 0;
  let d = 1;
  for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) d++;
  return d;
}

function impliedDir(layer: number): Node {
  return { entry: undefined, layer, children: new Map() };
}

/** The node at `path`, or undefined. */
function lookup(root: Node, path: string): Node | undefined {
  if (path === '') return root;
  let n: Node | undefined = root;
  for (const part of path.split('/')) {
    n = n.children?.get(part);
    if (!n) return undefined;
  }
  return n;
}

/** The directory node at `path`, created (as an implied directory of `layer`) where missing or not a directory. */
function ensureDir(root: Node, path: string, layer: number): Node {
  if (path === '') return root;
  let n = root;
  for (const part of path.split('/')) {
    const children = n.children ?? (n.children = new Map());
    let c = children.get(part);
    if (!c?.children) {
      c = impliedDir(layer);
      children.set(part, c);
    }
    n = c;
  }
  return n;
}

function detach(root: Node, path: string): void {
  if (path === '') return;
  lookup(root, parentOf(path))?.children?.delete(baseOf(path));
}

/** Applies the layers, base first, the way overlayfs resolves a lookup. */
function applyLayers(layers: LayerEntry[][]): Overlay {
  const root: Node = { entry: undefined, layer: -1, children: new Map() };
  const cut = new Set<string>();

  layers.forEach((entries, layer) => {
    // Pass 1: what this layer hides of the lower ones. Done before adding the
    // layer's own entries so an opaque directory only drops LOWER children.
    for (const e of entries) {
      const existing = lookup(root, e.path);
      if (e.whiteout) {
        detach(root, e.path);
        cut.add(e.path);
      } else if (e.type !== 'dir') {
        detach(root, e.path);
        cut.add(e.path);
      } else if (e.opaque) {
        if (existing?.children) existing.children.clear();
        else detach(root, e.path);
        cut.add(e.path);
      } else if (existing && !existing.children) {
        // A directory over a lower non-directory does not merge with it.
        detach(root, e.path);
      }
    }
    // Pass 2: the layer's entries, parents first (a listing need not be sorted).
    // Depths computed once: a comparator that splits paths dominated planMerge's time.
    const adds = entries
      .filter((e) => !e.whiteout)
      .map((e) => ({ e, d: depthOf(e.path) }))
      .sort((a, b) => a.d - b.d);
    for (const { e } of adds) {
      if (e.path === '') {
        root.entry = e;
        root.layer = layer;
        continue;
      }
      const parent = ensureDir(root, parentOf(e.path), layer);
      const children = parent.children!;
      const name = baseOf(e.path);
      const existing = children.get(name);
      if (e.type === 'dir' && existing?.children) {
        existing.entry = e;
        existing.layer = layer;
      } else {
        children.set(name, { entry: e, layer, children: e.type === 'dir' ? new Map() : null });
      }
    }
  });
  return { root, cut };
}

function walk(n: Node, path: string, visit: (path: string, n: Node) => void): void {
  visit(path, n);
  if (!n.children) return;
  for (const [name, c] of n.children) walk(c, path === '' ? name : `${path}/${name}`, visit);
}

/**
 * The tree overlayfs would show for these layers (base first): path -> the
 * entry that provides it (its layer's own entry; hardlinks stay hardlinks
 * whose linkname names a path of that same layer). Whiteouts never appear;
 * opaque flags are as listed. Directories no layer lists are left out.
 */
export function mergedTree(layers: LayerEntry[][]): Map<string, LayerEntry> {
  const { root } = applyLayers(layers);
  const out = new Map<string, LayerEntry>();
  walk(root, '', (path, n) => {
    if (n.entry) out.set(path, n.entry);
  });
  return out;
}

/** True when nothing at `path` or above it was cut off inside the segment. */
function seesBelow(cut: Set<string>, path: string): boolean {
  for (let p = path; ; p = parentOf(p)) {
    if (cut.has(p)) return false;
    if (p === '') return true;
  }
}

/**
 * Decides, for a merge of `layers` (base first) into one layer, which layer
 * provides each output path. keepBelow=false: the output replaces the whole
 * chain, so it carries no whiteouts and no opaque marks. keepBelow=true: the
 * output will sit on top of other, unknown lower layers (flatten --from): a
 * path the segment deleted gets a whiteout while its parent still sees the
 * lower layers, and a directory whose lower content the segment hid gets an
 * opaque mark while its parent still sees them.
 */
export function planMerge(layers: LayerEntry[][], opts: { keepBelow: boolean }): MergePlan {
  const { root, cut } = applyLayers(layers);
  const owner = new Map<string, number>();
  const opaque = new Set<string>();
  const whiteouts: string[] = [];

  const visit = (n: Node, path: string, parentSees: boolean): void => {
    const sees = parentSees && !cut.has(path);
    if (n.entry) owner.set(path, n.layer);
    if (opts.keepBelow && n.children && n.entry && parentSees && !sees) opaque.add(path);
    if (!n.children) return;
    for (const [name, c] of n.children) visit(c, path === '' ? name : `${path}/${name}`, sees);
  };
  visit(root, '', true);

  if (opts.keepBelow) {
    // Every cut point that no longer exists in the output and whose parent
    // still sees the lower layers must delete what they have there. Cut points
    // that are not whiteouts (a file later whited out, an opaque dir later
    // removed) count too: the lower layers may have that path.
    for (const p of cut) {
      if (p === '' || owner.has(p)) continue;
      if (seesBelow(cut, parentOf(p))) whiteouts.push(p);
    }
    whiteouts.sort();
  }

  const linkCarrier = new Map<number, Map<string, string>>();
  layers.forEach((entries, layer) => {
    const byPath = new Map<string, LayerEntry>();
    for (const e of entries) byPath.set(e.path, e);
    // Group members by the file that bears the data (follow chains of links defensively).
    const groups = new Map<string, string[]>();
    for (const e of entries) {
      if (e.type !== 'hardlink' || e.linkname === undefined) continue;
      let head = e.linkname;
      for (let hops = 0; hops < 64; hops++) {
        const t = byPath.get(head);
        if (t?.type !== 'hardlink' || t.linkname === undefined) break;
        head = t.linkname;
      }
      let members = groups.get(head);
      if (!members) groups.set(head, (members = [head]));
      members.push(e.path);
    }
    for (const members of groups.values()) {
      const survivors = members.filter((m) => owner.get(m) === layer);
      if (survivors.length === 0) continue;
      const carrier = survivors[0]!;
      let m = linkCarrier.get(layer);
      if (!m) linkCarrier.set(layer, (m = new Map()));
      for (const member of members) m.set(member, carrier);
    }
  });

  return { owner, opaque, whiteouts, linkCarrier };
}
