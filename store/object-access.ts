/** Blobs as the store's users reach them: a blob's file, and a commit's blobs copied out (export). */
import { existsSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { StoreCore } from './core.ts';
import { StrataError, wrapIoError } from './errors.ts';
import { assertDigest } from './objects.ts';
import { getCommit, manifestText, resolve } from './revisions.ts';
import type { BlobRef, CommitId } from './types.ts';

export function objectPath(core: StoreCore, digest: string): string {
  const p = core.objects.pathOf(assertDigest(digest));
  if (!existsSync(p)) throw new StrataError('E_OBJECT_NOT_FOUND', `no object sha256:${digest} in this store`);
  return p;
}

export function hasObject(core: StoreCore, digest: string): boolean {
  return core.objects.has(assertDigest(digest));
}

/** Writes manifest + kernel + initrd + layers (named by digest) into DIR. */
export async function exportCommit(core: StoreCore, rev: string, dir: string): Promise<{ id: CommitId; files: string[] }> {
  const id = resolve(core, rev);
  const c = getCommit(core, id);
  await fsp.mkdir(dir, { recursive: true });
  const files: string[] = [];
  const blobs = [c.manifest.kernel, c.manifest.initrd, ...c.manifest.layers].filter((b): b is BlobRef => !!b);
  try {
    for (const b of blobs) {
      const dest = join(dir, b.digest);
      if (!existsSync(dest)) await fsp.copyFile(objectPath(core, b.digest), dest);
      files.push(dest);
    }
    const mpath = join(dir, `${id}.manifest`);
    await fsp.writeFile(mpath, manifestText(core, id));
    files.push(mpath);
    await fsp.writeFile(join(dir, 'manifest'), manifestText(core, id));
  } catch (e) {
    throw wrapIoError(e, `exporting to ${dir}`);
  }
  return { id, files };
}
