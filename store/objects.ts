/**
 * The content-addressed object store: every blob (layer squashfs, kernel,
 * initrd) lives once under objects/sha256/<2 hex>/<62 hex> and is never
 * rewritten.
 *
 * Durability order (docs/design.md, facts: SQLite durability): a blob is written to a
 * temp file, fsynced, renamed into place and its directory fsynced BEFORE any
 * database row names it. A crash can therefore leave an unreferenced blob
 * (gc removes it) but never a row naming a missing or half-written blob.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, promises as fsp } from 'node:fs';
import { join, dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { StrataError, wrapIoError } from './errors.ts';
import { fsyncPath } from '../protocol/durable.ts';
import type { Digest } from './types.ts';

const HEX64 = /^[0-9a-f]{64}$/;

export function assertDigest(d: string): Digest {
  if (!HEX64.test(d))
    throw new StrataError('E_BAD_ARGUMENT', `not a sha256 digest: ${JSON.stringify(d).slice(0, 80)} (expected 64 lowercase hex digits)`);
  return d;
}

export async function sha256File(path: string): Promise<{ digest: Digest; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), async function* (src) {
    for await (const chunk of src) {
      h.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
  });
  return { digest: h.digest('hex'), size };
}

export class ObjectStore {
  readonly root: string;
  readonly tmpDir: string;
  constructor(dataDir: string) {
    this.root = join(dataDir, 'objects', 'sha256');
    this.tmpDir = join(dataDir, 'tmp');
  }

  async init(): Promise<void> {
    await fsp.mkdir(this.root, { recursive: true });
    await fsp.mkdir(this.tmpDir, { recursive: true });
  }

  pathOf(digest: Digest): string {
    assertDigest(digest);
    return join(this.root, digest.slice(0, 2), digest.slice(2));
  }

  has(digest: Digest): boolean {
    return existsSync(this.pathOf(digest));
  }

  /** A fresh temp path on the same filesystem as the objects (so rename is atomic). */
  tempPath(tag = 'blob'): string {
    return join(this.tmpDir, `${tag}-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  /**
   * Moves an already fsynced temp file into the store under its digest.
   * "Already there" is success: the temp file is dropped and the existing
   * blob's bytes kept (blobs are immutable, so equal digest = equal bytes).
   * Its mtime is set to now: the caller is about to reference it, and gc
   * spares blobs younger than its grace period, so a blob that was garbage a
   * moment ago is not deleted under the commit that now needs it.
   */
  async adopt(tmpPath: string, digest: Digest): Promise<string> {
    const dest = this.pathOf(digest);
    if (existsSync(dest)) {
      await fsp.rm(tmpPath, { force: true });
      const now = new Date();
      await fsp.utimes(dest, now, now).catch(() => {});
      return dest;
    }
    const dir = dirname(dest);
    try {
      await fsp.mkdir(dir, { recursive: true });
      await fsp.chmod(tmpPath, 0o444);
      await fsp.rename(tmpPath, dest);
      // The rename is durable only once the directory entry is on disk.
      await fsyncPath(dir);
    } catch (e) {
      await fsp.rm(tmpPath, { force: true });
      throw wrapIoError(e, 'storing an object');
    }
    return dest;
  }

  /** Copies a file into the store (hashing while copying), fsynced, atomically. */
  async putFile(src: string): Promise<{ digest: Digest; size: number }> {
    const tmp = this.tempPath('put');
    const h = createHash('sha256');
    let size = 0;
    try {
      const out = await fsp.open(tmp, 'w', 0o600);
      try {
        for await (const chunk of createReadStream(src, { highWaterMark: 1 << 20 })) {
          h.update(chunk as Buffer);
          size += (chunk as Buffer).length;
          await out.write(chunk as Buffer);
        }
        await out.sync();
      } finally {
        await out.close();
      }
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw wrapIoError(e, `copying ${src} into the store`);
    }
    const digest = h.digest('hex');
    await this.adopt(tmp, digest);
    return { digest, size };
  }

  async remove(digest: Digest): Promise<void> {
    await fsp.rm(this.pathOf(digest), { force: true });
  }

  async *list(): AsyncGenerator<Digest> {
    let dirs: string[] = [];
    try {
      dirs = await fsp.readdir(this.root);
    } catch {
      return;
    }
    for (const d of dirs.sort()) {
      if (!/^[0-9a-f]{2}$/.test(d)) continue;
      for (const f of (await fsp.readdir(join(this.root, d))).sort()) {
        if (/^[0-9a-f]{62}$/.test(f)) yield d + f;
      }
    }
  }

  /**
   * Removes temp files left by a crash (they never became objects). Another
   * strata process may be baking right now: a temp name carries its
   * writer's pid, and only files of dead writers (or, without a pid, older
   * than a day) are removed.
   */
  async cleanTemp(): Promise<void> {
    for (const f of await fsp.readdir(this.tmpDir).catch(() => [] as string[])) {
      const pid = /-(\d+)-[0-9a-f]{6,}/.exec(f)?.[1];
      let dead: boolean;
      if (pid) {
        try {
          process.kill(Number(pid), 0);
          dead = false;
        } catch (e) {
          dead = (e as NodeJS.ErrnoException).code === 'ESRCH';
        }
      } else {
        const st = await fsp.stat(join(this.tmpDir, f)).catch(() => null);
        dead = !!st && Date.now() - st.mtimeMs > 24 * 3600 * 1000;
      }
      if (dead) await fsp.rm(join(this.tmpDir, f), { force: true, recursive: true });
    }
  }
}
