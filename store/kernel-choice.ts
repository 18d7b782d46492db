/**
 * Which kernel a tree boots (pure: layer listings in, a decision out).
 *
 * A tree has kernel V when it has a kernel image (`boot/vmlinuz-V`, or
 * `lib/modules/V/vmlinuz` as Fedora lays it out) and the directory
 * `lib/modules/V/`; the newest such V wins unless the profile pins one.
 * Paths are resolved through the tree's symlinks, so a merged-/usr tree
 * (`lib -> usr/lib`) is read where its files really are. Nothing here opens
 * a layer: the listings kept in SQLite are enough.
 */
import { createHash } from 'node:crypto';
import { compareKernelVersions } from './initrd-modules.ts';
import { mergedTree } from './overlay-merge.ts';
import type { Digest, LayerEntry } from './types.ts';

/** The part of a merged tree that can hold kernels, with the layer each entry comes from. */
export interface KernelTree {
  entries: Map<string, LayerEntry>;
  /** Which layer (by digest) provides an entry of `entries`. */
  layerOf: Map<LayerEntry, Digest>;
}

export interface TreeKernel {
  version: string;
  /** Tree path of the kernel image, symlinks resolved. */
  image: string;
  /** Tree path of lib/modules/V, symlinks resolved (usr/lib/modules/V on merged-/usr). */
  modulesDir: string;
}

const ROOTS = ['boot', 'lib/modules', 'usr/lib/modules'];
const ANCESTORS = new Set(['', 'boot', 'lib', 'usr', 'usr/lib', 'lib/modules', 'usr/lib/modules']);

/** Paths that can change which kernel a tree has (and the ancestors whose whiteouts or symlinks matter). */
export function kernelRelevant(path: string): boolean {
  return ANCESTORS.has(path) || ROOTS.some((r) => path.startsWith(`${r}/`));
}

/** The kernel-relevant part of the tree these layers (base first) make. */
export function kernelTree(layers: { digest: Digest; entries: LayerEntry[] }[]): KernelTree {
  const layerOf = new Map<LayerEntry, Digest>();
  const filtered = layers.map((l) =>
    l.entries.filter((e) => {
      if (!kernelRelevant(e.path)) return false;
      layerOf.set(e, l.digest);
      return true;
    }),
  );
  return { entries: mergedTree(filtered), layerOf };
}

/** Follows symlinks in every component of PATH (as the booted system would); null when it leads nowhere. */
export function resolveTreePath(tree: Map<string, LayerEntry>, path: string, hops = 0): string | null {
  if (hops > 40) return null;
  const parts = path.split('/').filter((p) => p && p !== '.');
  let cur = '';
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part === '..') {
      cur = cur.includes('/') ? cur.slice(0, cur.lastIndexOf('/')) : '';
      continue;
    }
    const next = cur ? `${cur}/${part}` : part;
    const e = tree.get(next);
    if (e?.type === 'symlink' && e.linkname !== undefined) {
      const target = e.linkname.startsWith('/') ? e.linkname : cur ? `${cur}/${e.linkname}` : e.linkname;
      const rest = parts.slice(i + 1).join('/');
      return resolveTreePath(tree, rest ? `${target}/${rest}` : target, hops + 1);
    }
    cur = next;
  }
  return cur;
}

function childNames(tree: Map<string, LayerEntry>, dir: string): string[] {
  const prefix = `${dir}/`;
  const out: string[] = [];
  for (const p of tree.keys()) if (p.startsWith(prefix) && !p.slice(prefix.length).includes('/')) out.push(p.slice(prefix.length));
  return out;
}

function isFile(tree: Map<string, LayerEntry>, path: string | null): path is string {
  const t = path === null ? undefined : tree.get(path)?.type;
  return t === 'file' || t === 'hardlink';
}

/** Every kernel the tree has, oldest first. */
export function kernelsInTree(tree: Map<string, LayerEntry>): TreeKernel[] {
  const modulesRoot = resolveTreePath(tree, 'lib/modules');
  if (modulesRoot === null || tree.get(modulesRoot)?.type !== 'dir') return [];
  const out: TreeKernel[] = [];
  for (const v of childNames(tree, modulesRoot)) {
    const modulesDir = resolveTreePath(tree, `lib/modules/${v}`);
    if (modulesDir === null || tree.get(modulesDir)?.type !== 'dir') continue;
    const image = [resolveTreePath(tree, `boot/vmlinuz-${v}`), resolveTreePath(tree, `lib/modules/${v}/vmlinuz`)].find((p) =>
      isFile(tree, p),
    );
    if (image) out.push({ version: v, image, modulesDir });
  }
  return out.sort((a, b) => compareKernelVersions(a.version, b.version));
}

/** Modules for V in the tree (the directory), whether or not an image sits beside them. */
export function modulesDirFor(tree: Map<string, LayerEntry>, version: string): string | null {
  const d = resolveTreePath(tree, `lib/modules/${version}`);
  return d !== null && tree.get(d)?.type === 'dir' ? d : null;
}

export interface KernelChoice {
  kernel: TreeKernel | null;
  /** Why there is none, when there is none. */
  why?: string;
}

/** The newest kernel, or the pinned one; a pin the tree lacks chooses nothing and says so. */
export function chooseKernel(tree: Map<string, LayerEntry>, pin: string | null): KernelChoice {
  const all = kernelsInTree(tree);
  if (pin) {
    const k = all.find((x) => x.version === pin);
    if (k) return { kernel: k };
    return {
      kernel: null,
      why: `the profile pins kernel ${pin}, which this tree does not have (it has ${all.map((x) => x.version).join(', ') || 'none'})`,
    };
  }
  const newest = all.at(-1);
  return newest ? { kernel: newest } : { kernel: null, why: 'no kernel in this tree (no /boot/vmlinuz-V with a /lib/modules/V/)' };
}

function identity(t: KernelTree, e: LayerEntry): unknown[] {
  return [e.type, e.size, e.mtime, e.linkname ?? '', e.sha256 ?? t.layerOf.get(e) ?? ''];
}

/**
 * Names a kernel's modules: its version and every entry under its modules
 * directory (by content hash when the listing has one, else by the layer
 * that provides it). Equal fingerprints mean the same initramfs.
 */
export function modulesFingerprint(t: KernelTree, version: string, modulesDir: string): string {
  const h = createHash('sha256').update(version);
  const prefix = `${modulesDir}/`;
  const paths = [...t.entries.keys()].filter((p) => p.startsWith(prefix)).sort();
  for (const p of paths) h.update(JSON.stringify([p.slice(prefix.length), identity(t, t.entries.get(p)!)]));
  return h.digest('hex');
}

/** Names a tree kernel: its image and its modules. Equal fingerprints mean the same kernel and initramfs. */
export function kernelFingerprint(t: KernelTree, k: TreeKernel): string {
  return createHash('sha256')
    .update(JSON.stringify([k.image, identity(t, t.entries.get(k.image)!), modulesFingerprint(t, k.version, k.modulesDir)]))
    .digest('hex');
}

/**
 * The version a bzImage says it is: the setup header (magic "HdrS" at 0x202)
 * points at 0x20e to a string "6.1.0-54-cloud-amd64 (builder) #1 SMP ...".
 * null for anything else (a fake or non-x86 image).
 */
export function bzImageVersion(head: Buffer): string | null {
  if (head.length < 0x210 || head.toString('latin1', 0x202, 0x206) !== 'HdrS') return null;
  const off = head.readUInt16LE(0x20e) + 0x200;
  if (off >= head.length) return null;
  const end = head.indexOf(0, off);
  const text = head.toString('latin1', off, end < 0 ? Math.min(head.length, off + 256) : end);
  const v = text.split(' ')[0] ?? '';
  return /^[0-9][\w.+~-]*$/.test(v) ? v : null;
}
