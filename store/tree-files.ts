/**
 * Reads single files out of a commit's layers without mounting anything:
 * `rdsquashfs -c PATH IMAGE` on the layer that provides the path in the
 * merged tree (store/kernel-choice.ts). The server needs no more rights for
 * this than for a bake.
 */
import { execa } from 'execa';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { StrataError } from './errors.ts';
import type { ModuleSource } from './initrd-image.ts';
import type { KernelTree } from './kernel-choice.ts';
import type { Digest } from './types.ts';

/** Where the bytes of tree path PATH live: the layer image and the path inside it. */
function locate(t: KernelTree, path: string, imageOf: (d: Digest) => string): { image: string; inner: string } | null {
  const e = t.entries.get(path);
  if (!e || (e.type !== 'file' && e.type !== 'hardlink')) return null;
  const layer = t.layerOf.get(e);
  if (!layer) return null;
  // A hardlink's bytes are its target's, in the same layer.
  return { image: imageOf(layer), inner: e.type === 'hardlink' && e.linkname ? e.linkname : e.path };
}

/** Copies the tree's file PATH to DEST. */
export async function extractTreeFile(t: KernelTree, path: string, imageOf: (d: Digest) => string, dest: string): Promise<void> {
  const at = locate(t, path, imageOf);
  if (!at) throw new StrataError('E_NOT_FOUND', `${path} is not a regular file in this tree`);
  const child = execa('rdsquashfs', ['-c', `/${at.inner}`, at.image], {
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: { stdout: false, stderr: true },
    reject: false,
  });
  await pipeline(child.stdout!, createWriteStream(dest));
  const r = await child;
  if (r.exitCode !== 0) {
    throw new StrataError('E_CORRUPT', `cannot read ${path} from layer ${at.image} (rdsquashfs: ${String(r.stderr).trim()})`);
  }
}

/** The tree's small text file PATH, or null when the tree has none. */
export async function readTreeText(t: KernelTree, path: string, imageOf: (d: Digest) => string): Promise<string | null> {
  const at = locate(t, path, imageOf);
  if (!at) return null;
  const r = await execa('rdsquashfs', ['-c', `/${at.inner}`, at.image], { reject: false, maxBuffer: 64 << 20 });
  if (r.exitCode !== 0) throw new StrataError('E_CORRUPT', `cannot read ${path} from layer ${at.image} (rdsquashfs: ${r.stderr.trim()})`);
  return r.stdout;
}

/** A kernel's modules as a commit's tree has them (for store/initrd-image.ts). */
export function treeModules(
  t: KernelTree,
  version: string,
  modulesDir: string,
  imageOf: (d: Digest) => string,
  where: string,
): ModuleSource {
  return {
    kernelVersion: version,
    where,
    readText: (rel) => readTreeText(t, `${modulesDir}/${rel}`, imageOf),
    copy: (rel, dest) => extractTreeFile(t, `${modulesDir}/${rel}`, imageOf, dest),
    listModules: async () => {
      const prefix = `${modulesDir}/`;
      return [...t.entries.keys()]
        .filter((p) => p.startsWith(prefix) && /\.ko(\.(xz|zst|gz))?$/.test(p))
        .map((p) => p.slice(prefix.length));
    },
  };
}
