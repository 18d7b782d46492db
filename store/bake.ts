/**
 * Baking: an upper-directory tar stream becomes a squashfs image file.
 *
 *   input -> decompress (zstd/gzip/xz child, byte limit)
 *         -> TarCheckStream (checks every entry, re-encodes canonical headers)
 *         -> tar2sqfs stdin -> temp image in tmpDir
 *
 * Nothing is held in memory beyond stream buffers and the entry list, nothing
 * is extracted. On any failure (check, limit, tar2sqfs, disk full, abort)
 * tar2sqfs is killed and the temp image removed before the error is thrown.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm, statfs } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { decompress } from './decompress.ts';
import { StrataError, isStrataError } from './errors.ts';
import { parseSuperblock } from './squashfs.ts';
import { TarCheckStream } from './tar-check.ts';
import { ALLOW_ALL, type TarPolicy } from './tar-rules.ts';
import type { Compressor, Digest, LayerEntry } from './types.ts';

export type { TarPolicy } from './tar-rules.ts';
export { ALLOW_ALL } from './tar-rules.ts';

export interface BakeOptions {
  /** Directory on the same filesystem as the object store (the caller renames the result). */
  tmpDir: string;
  compressor: Compressor;
  /** null = tar2sqfs's default level for that compressor. */
  level: number | null;
  /** zstd-bomb / quota limit on the decompressed tar. */
  maxUncompressedBytes: number;
  maxEntries: number;
  /** The metadata budget (paths, link targets, xattrs) of the archive and of one entry (store/tar-rules.ts). */
  maxMetadataBytes?: number;
  maxEntryMetadataBytes?: number;
  /** Default: everything allowed (admin imports); pushes pass a stricter one. */
  policy?: TarPolicy;
  signal?: AbortSignal;
  /** Compression threads; default: all cores. The image does not depend on it. */
  jobs?: number;
  /**
   * Only for a plain tar the store generated itself (flatten's merged
   * stream, whose headers it encoded from checked layers): skip decompression
   * and TarCheckStream, and take the entry list from this function, called
   * once the input has ended; it must return exactly what TarCheckStream
   * would have listed for those bytes. The byte and entry limits still
   * apply; `policy` is not looked at (the tar was not written by a user).
   */
  trustedListing?: () => { entries: LayerEntry[]; warnings: string[] };
}

/** Counts a trusted tar's bytes (uncompressedBytes) and enforces the byte limit, without a stream hop. */
function countBytes(source: NodeJS.ReadableStream, maxBytes: number): { source: NodeJS.ReadableStream; bytes: () => number } {
  let n = 0;
  const src = source as NodeJS.ReadableStream & { destroy?: (e: Error) => void };
  source.on('data', (c: Buffer) => {
    n += c.length;
    if (n > maxBytes) {
      src.destroy?.(
        new StrataError('E_TOO_LARGE', `the archive decompresses to more than ${maxBytes} bytes (the configured limit); refusing it`, {
          limit: maxBytes,
        }),
      );
    }
  });
  return { source, bytes: () => n };
}

/**
 * Temp images are named `.bake-<pid>-<16 hex>.sqfs.tmp` in tmpDir; a process
 * killed mid-bake leaves one behind, which the store may delete at start-up.
 */
export function isBakeTempName(name: string): boolean {
  return /^\.bake-\d+-[0-9a-f]{16}\.sqfs\.tmp$/.test(name);
}

export interface BakedImage {
  /** Temp file in tmpDir, fsynced; the caller renames or deletes it. */
  path: string;
  /** sha256 hex of the image. */
  digest: Digest;
  size: number;
  entries: LayerEntry[];
  uncompressedBytes: number;
  warnings: string[];
}

const LEVELS: Record<Compressor, [number, number] | null> = { zstd: [1, 22], gzip: [1, 9], xz: [0, 9], lz4: null };
const SQUASHFS_COMPRESSION: Record<Compressor, string> = { zstd: 'zstd', gzip: 'gzip', xz: 'xz', lz4: 'lz4' };

/**
 * tar2sqfs's command line (pure). Determinism, measured with 1.2.0: the image
 * depends only on the tar and these options, not on -j (blocks are written in
 * input order whatever thread compressed them) nor on the clock: the
 * superblock time and the attributes of implied directories come from
 * SOURCE_DATE_EPOCH / --defaults, which we pin to 0 so that a server's
 * environment cannot change digests. File mtimes are kept (no -k).
 */
export function tar2sqfsArgs(compressor: Compressor, level: number | null, jobs: number, out: string): { args: string[] } {
  // -c always: Debian's tar2sqfs defaults to xz. -s: fail on any record it
  // would otherwise skip. -q: no progress output.
  const args = ['-q', '-s', '-c', compressor];
  if (level !== null) {
    const range = LEVELS[compressor];
    if (range === null) {
      // lz4 has no levels in squashfs, only the slower "hc" variant; take it
      // for what the lz4 command calls high levels (3 and up).
      if (level >= 3) args.push('-X', 'hc');
    } else {
      if (!Number.isInteger(level) || level < range[0] || level > range[1]) {
        throw new StrataError('E_BAD_ARGUMENT', `${compressor} level ${level} is out of range ${range[0]}..${range[1]}`);
      }
      args.push('-X', `level=${level}`);
    }
  }
  args.push('-j', String(Math.max(1, Math.floor(jobs))), '--defaults', 'uid=0,gid=0,mode=0755,mtime=0', out);
  return { args };
}

function openInput(input: NodeJS.ReadableStream | string): NodeJS.ReadableStream {
  if (typeof input !== 'string') return input;
  if (input === '-') return process.stdin;
  return createReadStream(input, { highWaterMark: 1 << 20 });
}

/**
 * tar2sqfs 1.2 reports a failed write of its image as a bare "<entry>: I/O
 * error." (its file backend drops errno) and deletes the image, so a full disk
 * cannot be read from its message. It is recognised instead by an I/O error
 * on a filesystem that has less room left than the tar bytes we fed it: the
 * image could not have fitted. With more room than that, an I/O error is a
 * real one.
 */
async function diskFullLikely(stderr: string, dir: string, bytesFed: number): Promise<boolean> {
  if (!/I\/O error/i.test(stderr)) return false;
  try {
    const fs = await statfs(dir);
    return fs.bavail * fs.bsize < bytesFed;
  } catch {
    return false;
  }
}

function mapToolFailure(stderr: string, what: string, full = false): StrataError {
  const text = stderr.trim();
  if (full || /No space left|ENOSPC|Disk quota exceeded/i.test(text)) {
    return new StrataError(
      'E_NO_SPACE',
      `no space left on the device while baking${text ? ` (tar2sqfs: ${text.split('\n').pop()})` : ''}; free some space (strata gc) and try again`,
    );
  }
  return new StrataError('E_BAKE_FAILED', `tar2sqfs failed (${what})${text ? `: ${text}` : ''}`);
}

/** Checks the image, hashes it and makes it durable. */
async function finishImage(path: string, compressor: Compressor): Promise<{ digest: Digest; size: number }> {
  const fh = await open(path, 'r+');
  try {
    const st = await fh.stat();
    const head = Buffer.alloc(96);
    const { bytesRead } = await fh.read(head, 0, 96, 0);
    const sb = parseSuperblock(head.subarray(0, bytesRead), st.size);
    if (typeof sb === 'string') throw new StrataError('E_BAKE_FAILED', `tar2sqfs wrote a broken image: ${sb}`);
    if (sb.compression !== SQUASHFS_COMPRESSION[compressor]) {
      throw new StrataError('E_BAKE_FAILED', `tar2sqfs wrote a ${sb.compression} image, ${compressor} was asked for`);
    }
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let pos = 0; pos < st.size; ) {
      const { bytesRead: n } = await fh.read(buf, 0, buf.length, pos);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      pos += n;
    }
    // Durable before the caller renames it into the object store.
    await fh.sync();
    return { digest: hash.digest('hex'), size: st.size };
  } finally {
    await fh.close();
  }
}

export async function bakeTar(input: NodeJS.ReadableStream | string, opts: BakeOptions): Promise<BakedImage> {
  const { args } = tar2sqfsArgs(opts.compressor, opts.level, opts.jobs ?? availableParallelism(), '');
  opts.signal?.throwIfAborted();
  const tmpPath = join(opts.tmpDir, `.bake-${process.pid}-${randomBytes(8).toString('hex')}.sqfs.tmp`);
  args[args.length - 1] = tmpPath;

  const source = openInput(input);
  // The usual path: decompress, then check and re-encode every header. The
  // trusted path (a tar the store made): only count bytes (see "Flatten
  // speed" in docs/decisions.md: the re-check was a third of flatten's CPU).
  const trusted = opts.trustedListing;
  const dec = trusted ? null : decompress(source, { maxBytes: opts.maxUncompressedBytes });
  const counted = trusted ? countBytes(source, opts.maxUncompressedBytes) : null;
  const tarBytes = (): number => dec?.bytes ?? counted!.bytes();
  const check = trusted
    ? null
    : new TarCheckStream({
        maxEntries: opts.maxEntries,
        policy: opts.policy ?? ALLOW_ALL,
        maxMetadataBytes: opts.maxMetadataBytes,
        maxEntryMetadataBytes: opts.maxEntryMetadataBytes,
      });
  const proc = execa('tar2sqfs', args, {
    stdin: 'pipe',
    stdout: 'ignore',
    stderr: 'pipe',
    buffer: { stderr: true },
    maxBuffer: { stderr: 1 << 20 },
    reject: false,
    env: { SOURCE_DATE_EPOCH: '0' },
  });
  let weKilled = false;
  const kill = () => {
    if (proc.exitCode === null && proc.signalCode === null) weKilled = true;
    proc.kill('SIGKILL');
  };
  opts.signal?.addEventListener('abort', kill, { once: true });
  // tar2sqfs may exit before reading everything (error, disk full): the EPIPE
  // on its stdin is not the error to report, its exit status is.
  proc.stdin!.on('error', () => {});

  const sig = opts.signal ? [{ signal: opts.signal }] : [];
  const piping = (dec && check ? pipeline(dec, check, proc.stdin!, ...sig) : pipeline(counted!.source, proc.stdin!, ...sig)).then(
    () => null,
    (e: unknown) => {
      kill();
      return e;
    },
  );
  try {
    const [pipeErr, res] = await Promise.all([piping, proc]);
    if (opts.signal?.aborted) throw opts.signal.reason ?? new Error('bake aborted');
    if (isStrataError(pipeErr)) throw pipeErr;
    const pipeCode = (pipeErr as NodeJS.ErrnoException | null)?.code;
    // tar2sqfs's own failure (an EPIPE in the pipeline is then only its
    // consequence) versus our kill after an input error.
    const killedByUs = weKilled && res.signal === 'SIGKILL';
    if (res.failed && !killedByUs) {
      if (res.exitCode === undefined && !res.signal) {
        // The machine's fault, not the archive's (tool missing, no processes
        // left): `transient` tells a push's baker to keep it and retry.
        throw new StrataError(
          'E_BAKE_FAILED',
          `cannot run tar2sqfs (${res.shortMessage}); install squashfs-tools-ng`,
          { transient: true },
          { cause: res.cause },
        );
      }
      throw mapToolFailure(
        String(res.stderr ?? ''),
        res.signal ? `killed by ${res.signal}` : `exit code ${res.exitCode}`,
        await diskFullLikely(String(res.stderr ?? ''), opts.tmpDir, tarBytes()),
      );
    }
    if (pipeErr) {
      const code = pipeCode;
      if (code === 'ENOENT' || code === 'EISDIR' || code === 'EACCES') {
        throw new StrataError('E_BAD_SOURCE', `cannot read the archive: ${(pipeErr as Error).message}`, {}, { cause: pipeErr });
      }
      if (code === 'ENOSPC' || code === 'EDQUOT') throw mapToolFailure('No space left on device', '');
      // An errno (EIO, EMFILE, ...) is the machine's, worth retrying; anything else is about the input.
      const io = typeof code === 'string' && /^E[A-Z]+$/.test(code);
      throw new StrataError('E_BAKE_FAILED', `baking failed: ${(pipeErr as Error).message}`, io ? { transient: true } : {}, {
        cause: pipeErr,
      });
    }
    if (res.failed) throw new StrataError('E_BAKE_FAILED', 'tar2sqfs was stopped before it finished');
    const listing = check ? { entries: check.checker.entries, warnings: check.checker.warnings } : trusted!();
    if (listing.entries.length > opts.maxEntries) {
      throw new StrataError('E_TOO_LARGE', `the archive has more than ${opts.maxEntries} entries (the configured limit)`, {
        limit: opts.maxEntries,
      });
    }
    let fin;
    try {
      fin = await finishImage(tmpPath, opts.compressor);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') throw mapToolFailure('No space left on device', '');
      throw e;
    }
    return {
      path: tmpPath,
      digest: fin.digest,
      size: fin.size,
      entries: listing.entries,
      uncompressedBytes: tarBytes(),
      warnings: listing.warnings,
    };
  } catch (e) {
    kill();
    await proc.catch(() => {});
    await rm(tmpPath, { force: true });
    throw e;
  } finally {
    opts.signal?.removeEventListener('abort', kill);
  }
}
