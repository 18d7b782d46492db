/**
 * Reading squashfs images without mounting them: a superblock check, a
 * listing and a tar stream, all through squashfs-tools-ng's sqfs2tar.
 */
import { open } from 'node:fs/promises';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { StrataError } from './errors.ts';
import { TarChecker } from './tar-check.ts';
import { ALLOW_ALL } from './tar-rules.ts';
import type { LayerEntry } from './types.ts';

const SUPERBLOCK_SIZE = 96;
/** squashfs compression ids (superblock offset 20). */
const COMPRESSION_IDS: Record<number, string> = { 1: 'gzip', 2: 'lzma', 3: 'lzo', 4: 'xz', 5: 'lz4', 6: 'zstd' };

export interface SquashfsSuperblock {
  compression: string;
  blockSize: number;
  inodes: number;
  bytesUsed: number;
  modificationTime: number;
}

/**
 * Parses and sanity-checks a squashfs 4.0 superblock (pure). Returns null
 * with a reason for anything that is not one.
 */
export function parseSuperblock(buf: Buffer, fileSize: number): SquashfsSuperblock | string {
  if (buf.length < SUPERBLOCK_SIZE) return `too short (${fileSize} bytes) for a squashfs superblock`;
  if (buf.toString('latin1', 0, 4) !== 'hsqs') {
    return `it starts with ${JSON.stringify(buf.toString('latin1', 0, 4).replace(/[^\x20-\x7e]/g, '.'))}, not the squashfs magic 'hsqs'`;
  }
  const major = buf.readUInt16LE(28);
  const minor = buf.readUInt16LE(30);
  if (major !== 4 || minor !== 0) return `squashfs version ${major}.${minor} is not supported (4.0 is)`;
  const blockSize = buf.readUInt32LE(12);
  if (blockSize < 4096 || blockSize > 1 << 20 || (blockSize & (blockSize - 1)) !== 0) return `invalid block size ${blockSize}`;
  const compression = COMPRESSION_IDS[buf.readUInt16LE(20)];
  if (!compression) return `unknown compression id ${buf.readUInt16LE(20)}`;
  const bytesUsed = Number(buf.readBigUInt64LE(40));
  if (bytesUsed > fileSize) return `truncated: the superblock says ${bytesUsed} bytes, the file has ${fileSize}`;
  return { compression, blockSize, inodes: buf.readUInt32LE(4), bytesUsed, modificationTime: buf.readUInt32LE(8) };
}

/** Reads the superblock of `path`; E_NOT_SQUASHFS for anything that is not a squashfs 4.0 image. */
export async function readSuperblock(path: string): Promise<SquashfsSuperblock> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new StrataError('E_NOT_SQUASHFS', `cannot read '${path}': ${(e as Error).message}`, { path }, { cause: e });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new StrataError('E_NOT_SQUASHFS', `'${path}' is not a regular file, so not a squashfs image`, { path });
    const buf = Buffer.alloc(SUPERBLOCK_SIZE);
    const { bytesRead } = await fh.read(buf, 0, SUPERBLOCK_SIZE, 0);
    const sb = parseSuperblock(buf.subarray(0, bytesRead), st.size);
    if (typeof sb === 'string') {
      throw new StrataError('E_NOT_SQUASHFS', `'${path}' is not a squashfs image: ${sb}`, { path });
    }
    return sb;
  } finally {
    await fh.close();
  }
}

export async function assertSquashfs(path: string): Promise<void> {
  await readSuperblock(path);
}

/**
 * The image as a tar stream (sqfs2tar stdout): './'-prefixed paths with a
 * './' entry for the root inode (so its owner, mode and xattrs survive),
 * xattrs as SCHILY.xattr PAX keys, hardlinks as link entries. A failing
 * sqfs2tar becomes an E_CORRUPT error on the stream, never a short tar.
 */
export function squashfsToTar(path: string): NodeJS.ReadableStream {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  // -s: fail instead of skipping what tar cannot hold; -r .: keep the root inode.
  const child = execa('sqfs2tar', ['-s', '-r', '.', path], {
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: { stdout: false, stderr: true },
    maxBuffer: { stderr: 256 * 1024 },
    reject: false,
  });
  child.stdout!.pipe(out, { end: false });
  child.stdout!.on('error', (e) => out.destroy(e));
  child.then((r) => {
    if (out.destroyed) return;
    if (r.exitCode === 0) {
      out.end();
    } else {
      const why = String(r.stderr ?? '').trim() || r.shortMessage || `exit code ${r.exitCode}`;
      out.destroy(new StrataError('E_CORRUPT', `cannot read the squashfs image '${path}' (sqfs2tar: ${why})`, { path }));
    }
  });
  out.once('close', () => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return out;
}

/**
 * Every entry of the image, in sqfs2tar's order, read from the tar stream
 * (nothing is extracted). Whiteouts (char 0:0) and opaque directories
 * (trusted.overlay.opaque=y) are marked. The root appears as path ''.
 * sqfs2tar lists each directory sorted by name, so in a hardlink group the
 * first name in that order is the 'file' and the others are 'hardlink'
 * entries pointing to it: this can differ from the tar that was baked.
 */
export async function listSquashfs(path: string): Promise<LayerEntry[]> {
  await assertSquashfs(path);
  const checker = new TarChecker({ maxEntries: Number.MAX_SAFE_INTEGER, policy: ALLOW_ALL });
  const discard = () => {};
  const sink = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      try {
        checker.push(chunk, discard);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
    final(cb) {
      try {
        checker.finish(discard);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
  });
  await pipeline(squashfsToTar(path), sink);
  return checker.entries;
}
