/**
 * Upper dir -> tar stream (protocol/tar-encode.ts, the store's encoder), keeping everything overlayfs
 * needs when the tar is baked into a lower layer: whiteouts (char 0:0), opaque
 * and redirect xattrs, other xattrs, hardlinks, symlinks, devices, owners,
 * modes, mtimes.
 *
 * Consistency: the caller syncs the filesystem first; every regular file is
 * fstat'ed before and after it is read (size, mtime, ctime). A file that
 * changed is read again, up to `unstableRetries` times; then the commit is
 * refused (E_BAD_SOURCE, details.unstable) rather than writing a torn file.
 * A file changed in the last second is not read until it is older: a
 * same-size rewrite inside one timestamp tick leaves size and mtime alike,
 * and a program that truncates and then rewrites a file may pause between
 * the two (a loaded machine deschedules it), leaving a short-lived empty or
 * partial file that must not be taken for a finished one.
 * Files too large to hold in memory are streamed; if one of those changed, the
 * whole snapshot is restarted (SnapshotRestart) since its bytes are already out.
 */
import {
  closeSync,
  constants as fsc,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  type BigIntStats,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { StrataError } from '../store/errors.ts';
import { encodeEntryHeader, padding, type HeaderStyle, type TarEntryType } from '../protocol/tar-encode.ts';
import { tarOut } from './tar-out.ts';
import type { Excluder } from '../protocol/excludes.ts';
import { readTreeXattrs, selectXattrs, type Xattrs } from './xattrs.ts';

export const BUFFER_LIMIT = 16 * 1024 * 1024;
const CHUNK = 1024 * 1024;
/**
 * A file modified less than this long ago is not read yet: timestamps come
 * from a coarse clock (one tick, up to 10 ms), so a change made in the same
 * tick as our first fstat would leave size and mtime unchanged. Once the last
 * change is older than a few ticks, any change during the read shows up as a
 * newer mtime/ctime. A file that stays this fresh through every retry is
 * being written continuously: refused.
 */
export const SETTLE_MS = 1000;
const SETTLE_NS = BigInt(SETTLE_MS) * 1_000_000n;

/** How long until a file with these timestamps counts as settled (0 when it does). */
export function settleWaitMs(st: BigIntStats, nowNs = BigInt(Date.now()) * 1_000_000n): number {
  const newest = st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs;
  const left = SETTLE_NS - (nowNs - newest);
  return left > 0n ? Number(left / 1_000_000n) + 10 : 0;
}

export interface SnapshotOptions {
  upper: string;
  exclude: Excluder;
  xattrs: boolean;
  unstableRetries: number;
  /** Paths pushed earlier since boot: those gone now get a synthesized whiteout (see commit.ts). */
  pushedPaths?: ReadonlySet<string>;
  log?: (msg: string) => void;
}

export interface SnapshotResult {
  entries: number;
  fileBytes: number;
  /** Every path the tar carries (relative, no './'), synthesized whiteouts included. */
  paths: string[];
  synthesizedWhiteouts: string[];
  warnings: string[];
  /** Changes whenever anything a commit would carry changes. */
  fingerprint: string;
}

/** Thrown when a streamed (large) file changed under us: the caller restarts the snapshot. */
export class SnapshotRestart extends Error {
  constructor(readonly path: string) {
    super(`${path} changed while it was being read`);
  }
}

/** Linux dev_t -> major/minor (glibc's encoding). */
export function devParts(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

type Kind = 'file' | 'directory' | 'symlink' | 'character-device' | 'block-device' | 'fifo' | 'socket';

export function kindOf(st: BigIntStats): Kind {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'character-device';
  if (st.isBlockDevice()) return 'block-device';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

export const isWhiteout = (st: BigIntStats): boolean => st.isCharacterDevice() && st.rdev === 0n;

/** syncfs(2) on the upper dir's filesystem (coreutils `sync -f`; plain `sync` where -f is missing). */
export async function syncFilesystem(path: string): Promise<void> {
  const run = (args: string[]) =>
    new Promise<number>((resolve) => {
      const c = spawn('sync', args, { stdio: 'ignore' });
      c.on('error', () => resolve(127));
      c.on('close', (code) => resolve(code ?? 1));
    });
  if ((await run(['-f', path])) !== 0) await run([]);
}

const sameContentStat = (a: BigIntStats, b: BigIntStats) =>
  a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino;

function readAll(fd: number, size: number): Buffer | null {
  const buf = Buffer.allocUnsafe(size);
  let off = 0;
  while (off < size) {
    const n = readSync(fd, buf, off, size - off, off);
    if (n === 0) return null; // shrank while reading
    off += n;
  }
  return buf;
}

interface StableFile {
  data: Buffer;
  st: BigIntStats;
}

/**
 * Reads a small regular file so that the bytes belong to one version of it.
 * Returns null when the file vanished, 'large' when it must be streamed.
 */
async function readStable(abs: string, retries: number): Promise<StableFile | null | 'large'> {
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (attempt > 0) await sleep(50 * attempt);
    let fd: number;
    try {
      fd = openSync(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    let wait = 0;
    try {
      const before = fstatSync(fd, { bigint: true });
      if (!before.isFile()) return null; // replaced by something else: the next commit sees it
      wait = settleWaitMs(before);
      if (wait === 0) {
        if (before.size > BigInt(BUFFER_LIMIT)) return 'large';
        const data = readAll(fd, Number(before.size));
        const after = fstatSync(fd, { bigint: true });
        if (data && sameContentStat(before, after)) return { data, st: after };
      }
    } finally {
      closeSync(fd);
    }
    // Too fresh: wait until it would have settled, then look again.
    if (wait > 0) await sleep(wait);
  }
  throw unstable(abs, retries);
}

/** True when the file's last change is old enough for a later change to show in its timestamps. */
export function settled(st: BigIntStats, nowNs = BigInt(Date.now()) * 1_000_000n): boolean {
  const newest = st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs;
  return nowNs - newest > SETTLE_NS;
}

export function unstable(abs: string, retries: number): StrataError {
  return new StrataError(
    'E_BAD_SOURCE',
    `${abs} kept changing while it was being read (${retries + 1} tries); commit refused so that no torn file lands in a layer. Stop the program writing it, or exclude it, and commit again.`,
    { unstable: abs },
  );
}

/** The header of one entry, before the encoder's defaults (no link, no device, no xattrs) are filled in. */
interface EntryHeader {
  /** './etc/hostname' (as `tar -C upper .` names it); the root is '' (the encoder writes './'). */
  name: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Whole seconds. */
  mtime: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
}

/**
 * GNU tar's habits (directories as 'dir/', the PAX block's header copying
 * the entry's). The store re-encodes what it checks, so these bytes never
 * reach a layer digest; any style tar2sqfs and the checker read would do.
 */
const AGENT_STYLE: HeaderStyle = { dirSlash: true, longNameMarker: false, paxHeaderCopiesEntry: true };

const KIND_TYPE: Record<Exclude<Kind, 'socket'>, TarEntryType> = {
  file: 'file',
  directory: 'dir',
  symlink: 'symlink',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
};

export async function writeSnapshot(opts: SnapshotOptions, out: Writable): Promise<SnapshotResult> {
  const tar = tarOut(out);
  try {
    const result = await produce(opts, tar.write);
    await tar.finish();
    return result;
  } catch (e) {
    tar.abort();
    throw e;
  }
}

async function produce(opts: SnapshotOptions, write: (buf: Buffer) => Promise<void>): Promise<SnapshotResult> {
  const xattrMap = opts.xattrs ? await readTreeXattrs(opts.upper) : new Map<string, Xattrs>();
  const warnings: string[] = [];
  const droppedNames = new Set<string>();
  const hash = createHash('sha256');
  const paths: string[] = [];
  const presentDirs = new Set<string>(['']);
  const present = new Set<string>();
  const links = new Map<string, string>();
  let entries = 0;
  let fileBytes = 0;

  /** Writes the header of one entry (the data, if any, follows: see `data`). */
  const emit = async (h: EntryHeader, xattrs: Xattrs) => {
    const header = encodeEntryHeader(
      {
        path: Buffer.from(h.name, 'utf8'),
        type: h.type,
        mode: h.mode,
        uid: h.uid,
        gid: h.gid,
        size: h.size,
        mtime: h.mtime,
        linkname: Buffer.from(h.linkname ?? '', 'utf8'),
        devmajor: h.devmajor ?? 0,
        devminor: h.devminor ?? 0,
        xattrs,
      },
      AGENT_STYLE,
    );
    await write(header);
    entries++;
  };
  const data = async (body: Buffer) => {
    await write(body);
    await write(padding(body.length));
  };

  const xattrPax = (rel: string, abs: string): { pax: Xattrs; sig: string } => {
    const xs = xattrMap.get(rel);
    if (!xs || xs.length === 0) return { pax: [], sig: '' };
    const d = selectXattrs(xs);
    if (d.metacopy) {
      throw new StrataError(
        'E_BAD_SOURCE',
        `${abs} is an overlayfs metacopy (its data is in a lower layer): mount the overlay with metacopy=off to commit it`,
        { path: abs },
      );
    }
    for (const n of d.dropped) droppedNames.add(n);
    d.keep.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return {
      pax: d.keep,
      sig: d.keep.map(([n, v]) => `${n}=${v.toString('base64')}`).join(','),
    };
  };

  const baseHeader = (rel: string, st: BigIntStats, type: EntryHeader['type']): EntryHeader => {
    const mtimeSec = Number(st.mtimeNs / 1_000_000_000n);
    return {
      name: rel === '' ? '' : `./${rel}`,
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: 0,
      mtime: Math.max(0, mtimeSec),
    };
  };

  const record = (rel: string, st: BigIntStats, extra: string) => {
    paths.push(rel);
    present.add(rel);
    hash.update(`${rel}\0${st.mode}\0${st.uid}\0${st.gid}\0${st.size}\0${st.mtimeNs}\0${st.ctimeNs}\0${st.ino}\0${st.rdev}\0${extra}\n`);
  };

  const visit = async (rel: string): Promise<void> => {
    const abs = rel === '' ? opts.upper : join(opts.upper, rel);
    let st: BigIntStats;
    try {
      st = lstatSync(abs, { bigint: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // deleted during the walk
      throw e;
    }
    const kind = kindOf(st);
    if (kind === 'socket') {
      warnings.push(`skipped socket ${rel}`);
      return;
    }
    const { pax, sig } = xattrPax(rel, abs);

    if (kind === 'directory') {
      let names: string[];
      try {
        names = readdirSync(abs);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw e;
      }
      await emit(baseHeader(rel, st, 'dir'), pax);
      record(rel, st, sig);
      presentDirs.add(rel);
      names.sort();
      for (const name of names) {
        const childRel = rel === '' ? name : `${rel}/${name}`;
        if (opts.exclude(childRel)) continue;
        await visit(childRel);
      }
      return;
    }

    // Hardlinks: the same inode seen again becomes a link entry. Whiteouts are
    // excluded: overlayfs makes them hardlinks of one shared inode.
    const linkKey = st.nlink > 1n && !isWhiteout(st) ? `${st.dev}:${st.ino}` : null;
    if (linkKey) {
      const first = links.get(linkKey);
      if (first !== undefined) {
        const h = baseHeader(rel, st, 'hardlink');
        h.linkname = `./${first}`;
        await emit(h, []);
        record(rel, st, `link:${first}`);
        return;
      }
    }

    if (kind === 'symlink') {
      let target: string;
      try {
        target = readlinkSync(abs);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw e;
      }
      const h = baseHeader(rel, st, 'symlink');
      h.linkname = target;
      await emit(h, pax);
      record(rel, st, `${sig}\0${target}`);
    } else if (kind === 'file') {
      const got = await readStable(abs, opts.unstableRetries);
      if (got === null) return;
      if (got === 'large') {
        await streamLarge(abs, rel, pax, sig);
      } else {
        const h = baseHeader(rel, got.st, 'file');
        h.size = got.data.length;
        await emit(h, pax);
        await data(got.data);
        fileBytes += got.data.length;
        record(rel, got.st, sig);
      }
    } else {
      const h = baseHeader(rel, st, KIND_TYPE[kind]);
      if (kind !== 'fifo') {
        const { major, minor } = devParts(st.rdev);
        h.devmajor = major;
        h.devminor = minor;
      }
      await emit(h, pax);
      record(rel, st, sig);
    }
    if (linkKey) links.set(linkKey, rel);
  };

  const streamLarge = async (abs: string, rel: string, pax: Xattrs, sig: string) => {
    const fd = openSync(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    try {
      const before = fstatSync(fd, { bigint: true });
      if (!settled(before)) throw new SnapshotRestart(abs);
      const h = baseHeader(rel, before, 'file');
      h.size = Number(before.size);
      await emit(h, pax);
      let off = 0;
      const size = h.size;
      while (off < size) {
        const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - off));
        const n = readSync(fd, buf, 0, buf.length, off);
        if (n === 0) throw new SnapshotRestart(abs);
        off += n;
        await write(n === buf.length ? buf : buf.subarray(0, n));
      }
      await write(padding(size));
      const after = fstatSync(fd, { bigint: true });
      if (!sameContentStat(before, after)) throw new SnapshotRestart(abs);
      fileBytes += size;
      record(rel, after, sig);
    } finally {
      closeSync(fd);
    }
  };

  await visit('');

  // Paths pushed earlier in this boot that are gone now: the overlay removed
  // them without a whiteout because no lower layer had them, but an earlier
  // pushed layer does, so the new layer must delete them explicitly. Only the
  // topmost gone path needs one (its parent must be a directory still here).
  const synthesized: string[] = [];
  if (opts.pushedPaths) {
    for (const p of [...opts.pushedPaths].sort()) {
      if (p === '' || present.has(p) || opts.exclude(p)) continue;
      const slash = p.lastIndexOf('/');
      const parent = slash < 0 ? '' : p.slice(0, slash);
      if (!presentDirs.has(parent)) continue;
      synthesized.push(p);
    }
    const now = Math.floor(Date.now() / 1000);
    for (const p of synthesized) {
      await emit({ name: `./${p}`, type: 'char', mode: 0, uid: 0, gid: 0, size: 0, mtime: now, devmajor: 0, devminor: 0 }, []);
      paths.push(p);
      hash.update(`whiteout\0${p}\n`);
    }
  }
  if (droppedNames.size) {
    warnings.push(`xattrs squashfs cannot store were left out: ${[...droppedNames].sort().join(', ')}`);
  }
  return { entries, fileBytes, paths, synthesizedWhiteouts: synthesized, warnings, fingerprint: hash.digest('hex') };
}
