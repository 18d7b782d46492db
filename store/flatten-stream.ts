/**
 * Flatten in user space: one tar stream that holds what a stack of squashfs
 * layers shows through overlayfs, ready for tar2sqfs. No mount, no extraction:
 * each layer is read once, in order, as sqfs2tar's tar stream, and only the
 * entries the merge plan (overlay-merge.ts) gives to that layer are copied,
 * file bodies streamed chunk by chunk.
 *
 * Why a small tar reader/writer here instead of tar-stream: squashfs keeps
 * xattr values as raw bytes (security.capability is binary) and sqfs2tar and
 * tar2sqfs carry them raw in PAX `SCHILY.xattr.*` records. tar-stream 3
 * decodes and encodes PAX values as UTF-8 strings, which corrupts any value
 * that is not valid UTF-8 (its pack() also cannot emit a raw PAX block). The
 * reader and writer below keep xattr values as Buffers end to end.
 */
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { StrataError } from './errors.ts';
import { planMerge, type MergePlan } from './overlay-merge.ts';
import type { LayerEntry } from './types.ts';

const OPAQUE_XATTR = 'trusted.overlay.opaque';

type TarType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarHeader {
  /** Normalised like LayerEntry.path: no leading './' or '/', no trailing '/', root = ''. */
  path: string;
  type: TarType;
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of data that follow (files only). */
  size: number;
  /** Seconds since the epoch; may be fractional when a PAX record says so. */
  mtime: number;
  /** Symlink target as stored, or hardlink target (normalised like path). */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Raw xattr values, keyed by full name (e.g. 'user.foo', 'security.capability'). */
  xattrs: Map<string, Buffer>;
}

// ---------------------------------------------------------------- reading

/** Pulls exact byte counts out of an async stream of chunks, without copying bodies. */
class ByteSource {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async more(): Promise<boolean> {
    if (this.ended) return false;
    const r = await this.it.next();
    if (r.done) {
      this.ended = true;
      return false;
    }
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    if (b.length > 0) {
      this.chunks.push(b);
      this.buffered += b.length;
    }
    return true;
  }

  /** Exactly n bytes; null at a clean end of stream; throws when it ends part-way. */
  async read(n: number): Promise<Buffer | null> {
    while (this.buffered < n) {
      if (!(await this.more())) {
        if (this.buffered === 0) return null;
        throw new StrataError('E_BAD_TAR', 'the layer tar stream ended in the middle of an entry');
      }
    }
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }

  /** Yields the next n bytes as they arrive (chunks are the producer's, not copies). */
  async *pieces(progress: { left: number }): AsyncGenerator<Buffer> {
    while (progress.left > 0) {
      if (this.buffered === 0 && !(await this.more())) {
        throw new StrataError('E_BAD_TAR', 'the layer tar stream ended in the middle of a file');
      }
      if (this.buffered === 0) continue;
      const c = this.chunks[0]!;
      const take = Math.min(c.length, progress.left);
      if (take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(take);
      this.buffered -= take;
      progress.left -= take;
      yield take === c.length ? c : c.subarray(0, take);
    }
  }

  async skip(n: number): Promise<void> {
    for await (const piece of this.pieces({ left: n })) void piece;
  }

  /** Reads to the end (sqfs2tar may pad after the end-of-archive blocks). */
  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    while (await this.more()) {
      this.chunks = [];
      this.buffered = 0;
    }
  }
}

const cstr = (b: Buffer, off: number, len: number): string => {
  const f = b.subarray(off, off + len);
  const z = f.indexOf(0);
  return (z < 0 ? f : f.subarray(0, z)).toString('utf8');
};

function numeric(b: Buffer, off: number, len: number): number {
  const f = b.subarray(off, off + len);
  if (f[0]! & 0x80) {
    // GNU base-256: big-endian, first byte's high bit is the marker.
    let v = f[0]! & 0x7f;
    for (let i = 1; i < f.length; i++) v = v * 256 + f[i]!;
    return v;
  }
  const s = f.toString('latin1').replace(/[\0 ]+$/g, '').replace(/^[\0 ]+/, '');
  return s === '' ? 0 : parseInt(s, 8);
}

function checksumOk(block: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : block[i]!;
  return sum === numeric(block, 148, 8);
}

/** Normalises a tar member name the way LayerEntry paths are. */
export function normaliseTarPath(name: string): string {
  let p = name;
  while (p.startsWith('./')) p = p.slice(2);
  p = p.replace(/^\/+/, '').replace(/\/+$/, '');
  return p === '.' ? '' : p;
}

/** PAX records, values kept as raw bytes (xattrs may be binary). */
function parsePax(buf: Buffer, into: Map<string, Buffer>): void {
  let off = 0;
  while (off < buf.length) {
    const sp = buf.indexOf(0x20, off);
    if (sp < 0) break;
    const len = parseInt(buf.subarray(off, sp).toString('latin1'), 10);
    if (!(len > 0) || off + len > buf.length) throw new StrataError('E_BAD_TAR', 'malformed PAX header in a layer tar stream');
    const rec = buf.subarray(sp + 1, off + len - 1); // drop the trailing '\n'
    const eq = rec.indexOf(0x3d);
    if (eq > 0) into.set(rec.subarray(0, eq).toString('utf8'), Buffer.from(rec.subarray(eq + 1)));
    off += len;
  }
}

const TYPES: Record<string, TarType | undefined> = {
  '0': 'file', '\0': 'file', '7': 'file', '1': 'hardlink', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo',
};

export interface TarItem {
  header: TarHeader;
  /** The entry's data; must be consumed (or not at all) before asking for the next item. */
  body(): AsyncGenerator<Buffer>;
}

/** Streams the entries of a tar (ustar, GNU, PAX). Bodies are never buffered whole. */
export async function* readTar(chunks: AsyncIterable<Buffer>): AsyncGenerator<TarItem> {
  const src = new ByteSource(chunks[Symbol.asyncIterator]());
  let pax: Map<string, Buffer> | null = null;
  const globalPax = new Map<string, Buffer>();
  let longName: string | null = null;
  let longLink: string | null = null;
  for (;;) {
    const block = await src.read(512);
    if (!block || block.every((x) => x === 0)) {
      await src.drain();
      return;
    }
    if (!checksumOk(block)) throw new StrataError('E_BAD_TAR', 'bad tar header checksum in a layer tar stream');
    const flag = String.fromCharCode(block[156]!);
    const size = numeric(block, 124, 12);
    const pad = (512 - (size % 512)) % 512;

    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > 64 * 1024 * 1024) throw new StrataError('E_BAD_TAR', 'oversized extended header in a layer tar stream');
      const body = (await src.read(size)) ?? Buffer.alloc(0);
      if (size > 0 && body.length < size) throw new StrataError('E_BAD_TAR', 'truncated extended header');
      await src.skip(pad);
      if (flag === 'x') parsePax(body, (pax ??= new Map()));
      else if (flag === 'g') parsePax(body, globalPax);
      else if (flag === 'L') longName = cstr(body, 0, body.length);
      else longLink = cstr(body, 0, body.length);
      continue;
    }

    const type = TYPES[flag];
    if (!type) throw new StrataError('E_BAD_TAR', `unsupported tar entry type '${flag}' in a layer tar stream`);
    const ustar = block.subarray(257, 263).toString('latin1') === 'ustar\0';
    const prefix = ustar ? cstr(block, 345, 155) : '';
    let name = prefix ? `${prefix}/${cstr(block, 0, 100)}` : cstr(block, 0, 100);
    let linkname = cstr(block, 157, 100);
    const h: TarHeader = {
      path: '',
      type,
      mode: numeric(block, 100, 8) & 0o7777,
      uid: numeric(block, 108, 8),
      gid: numeric(block, 116, 8),
      size,
      mtime: numeric(block, 136, 12),
      linkname: '',
      devmajor: numeric(block, 329, 8),
      devminor: numeric(block, 337, 8),
      xattrs: new Map(),
    };
    if (longName !== null) name = longName;
    if (longLink !== null) linkname = longLink;
    const records = new Map([...globalPax, ...(pax ?? [])]);
    for (const [k, v] of records) {
      const s = () => v.toString('utf8');
      if (k === 'path') name = s();
      else if (k === 'linkpath') linkname = s();
      else if (k === 'size') h.size = Number(s());
      else if (k === 'uid') h.uid = Number(s());
      else if (k === 'gid') h.gid = Number(s());
      else if (k === 'mtime') h.mtime = Number(s());
      else if (k === 'SCHILY.devmajor') h.devmajor = Number(s());
      else if (k === 'SCHILY.devminor') h.devminor = Number(s());
      else if (k.startsWith('SCHILY.xattr.')) h.xattrs.set(k.slice('SCHILY.xattr.'.length), v);
      else if (k.startsWith('LIBARCHIVE.xattr.')) {
        h.xattrs.set(decodeURIComponent(k.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(s(), 'base64'));
      }
    }
    pax = null;
    longName = null;
    longLink = null;
    h.path = normaliseTarPath(name);
    h.linkname = type === 'hardlink' ? normaliseTarPath(linkname) : linkname;
    const dataLen = type === 'file' ? h.size : type === 'dir' ? 0 : h.size;
    const dataPad = (512 - (dataLen % 512)) % 512;
    if (type !== 'file') h.size = 0;
    const progress = { left: dataLen };
    yield { header: h, body: () => src.pieces(progress) };
    await src.skip(progress.left + dataPad);
  }
}

// ---------------------------------------------------------------- writing

const TYPEFLAG: Record<TarType, string> = { file: '0', hardlink: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' };
const MAX_OCTAL_8 = 0o7777777;
const MAX_OCTAL_12 = 0o77777777777;

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  // The decimal length prefix counts its own digits.
  let digits = String(body.length).length;
  if (String(body.length + digits).length > digits) digits++;
  return Buffer.concat([Buffer.from(String(body.length + digits)), body]);
}

function octal(buf: Buffer, off: number, len: number, value: number): void {
  buf.write(Math.max(0, Math.floor(value)).toString(8).padStart(len - 1, '0').slice(-(len - 1)) + '\0', off, len, 'latin1');
}

function ustarBlock(name: Buffer, h: TarHeader, flag: string, size: number, linkname: Buffer): Buffer {
  const b = Buffer.alloc(512);
  name.copy(b, 0, 0, Math.min(100, name.length));
  octal(b, 100, 8, h.mode & 0o7777);
  octal(b, 108, 8, Math.min(h.uid, MAX_OCTAL_8));
  octal(b, 116, 8, Math.min(h.gid, MAX_OCTAL_8));
  octal(b, 124, 12, Math.min(size, MAX_OCTAL_12));
  octal(b, 136, 12, Math.min(Math.max(0, h.mtime), MAX_OCTAL_12));
  b.write(flag, 156, 1, 'latin1');
  linkname.copy(b, 157, 0, Math.min(100, linkname.length));
  b.write('ustar\0' + '00', 257, 8, 'latin1');
  octal(b, 329, 8, h.devmajor);
  octal(b, 337, 8, h.devminor);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += b[i]!;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

/** The header block(s) of one entry: a PAX block when needed, then the ustar block. */
export function encodeTarHeader(h: TarHeader): Buffer {
  const tarName = h.path === '' ? './' : h.type === 'dir' ? `${h.path}/` : h.path;
  const name = Buffer.from(tarName, 'utf8');
  const link = Buffer.from(h.linkname, 'utf8');
  const size = h.type === 'file' ? h.size : 0;
  const records: Buffer[] = [];
  if (name.length > 100) records.push(paxRecord('path', name));
  if (link.length > 100) records.push(paxRecord('linkpath', link));
  if (h.uid > MAX_OCTAL_8) records.push(paxRecord('uid', Buffer.from(String(h.uid))));
  if (h.gid > MAX_OCTAL_8) records.push(paxRecord('gid', Buffer.from(String(h.gid))));
  if (size > MAX_OCTAL_12) records.push(paxRecord('size', Buffer.from(String(size))));
  if (!Number.isInteger(h.mtime) || h.mtime < 0 || h.mtime > MAX_OCTAL_12) records.push(paxRecord('mtime', Buffer.from(String(h.mtime))));
  // Sorted so the same input always gives the same bytes (layer digests dedup).
  for (const k of [...h.xattrs.keys()].sort()) records.push(paxRecord(`SCHILY.xattr.${k}`, h.xattrs.get(k)!));
  const main = ustarBlock(name, h, TYPEFLAG[h.type], size, link);
  if (records.length === 0) return main;
  const pax = Buffer.concat(records);
  const paxHead = ustarBlock(Buffer.from('PaxHeader'), { ...h, mode: 0o644 }, 'x', pax.length, Buffer.alloc(0));
  return Buffer.concat([paxHead, pax, Buffer.alloc((512 - (pax.length % 512)) % 512), main]);
}

const padding = (size: number): Buffer => Buffer.alloc((512 - (size % 512)) % 512);

// ---------------------------------------------------------------- sqfs2tar

interface LayerTar {
  stdout: AsyncIterable<Buffer>;
  /** Resolves when sqfs2tar exited 0; rejects with its stderr otherwise. */
  exited: Promise<void>;
  kill(): void;
}

/**
 * sqfs2tar of one image. `-r .` keeps the root inode (its mode, owner and
 * xattrs, an opaque mark included) as a './' entry. No `-s`: the only thing
 * sqfs2tar skips is a socket (tar cannot hold one), and a stale socket in a
 * base image must not make every flatten of that chain fail; GNU tar drops
 * sockets from pushed layers the same way.
 * Private until store/squashfs.ts offers the same.
 */
function openLayerTar(image: string): LayerTar {
  const child = spawn('sqfs2tar', ['-r', '.', image], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    if (stderr.length < 8192) stderr += d;
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (e) => reject(new StrataError('E_INTERNAL', `cannot run sqfs2tar (install squashfs-tools-ng): ${e.message}`, {}, { cause: e })));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new StrataError('E_CORRUPT', `sqfs2tar could not read layer ${image} (${signal ?? `exit ${code}`}): ${stderr.trim()}`, { image }));
    });
  });
  exited.catch(() => undefined); // observed by the caller; avoid an unhandled rejection when it is killed early
  return {
    stdout: child.stdout as AsyncIterable<Buffer>,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

// ---------------------------------------------------------------- flatten

/** Small headers are gathered into larger chunks; big body pieces pass straight through. */
class Batcher {
  private parts: Buffer[] = [];
  private size = 0;
  *push(b: Buffer): Generator<Buffer> {
    if (b.length >= 32 * 1024) {
      yield* this.flush();
      yield b;
      return;
    }
    this.parts.push(b);
    this.size += b.length;
    if (this.size >= 64 * 1024) yield* this.flush();
  }
  *flush(): Generator<Buffer> {
    if (this.size === 0) return;
    const out = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
    this.parts = [];
    this.size = 0;
    yield out;
  }
}

/**
 * overlayfs bookkeeping an upper dir picks up that means nothing once the
 * layers are merged: copy-up origins (file handles of the old lower inodes,
 * which with index=on would even make lookups fail with ESTALE), the impure
 * mark of dirs holding such entries, the upper's uuid and hardlink counts.
 * The opaque mark is re-decided by the plan.
 */
const DROPPED_OVERLAY_XATTRS = new Set(['opaque', 'origin', 'impure', 'uuid', 'nlink', 'upper'].map((k) => `trusted.overlay.${k}`));
/** Features whose meaning depends on the lower layers in a way the merge plan does not model. */
const UNSUPPORTED_OVERLAY_XATTRS = new Set(['redirect', 'metacopy'].map((k) => `trusted.overlay.${k}`));

function outputHeader(h: TarHeader, path: string, plan: MergePlan): TarHeader {
  const xattrs = new Map<string, Buffer>();
  for (const [k, v] of h.xattrs) {
    if (UNSUPPORTED_OVERLAY_XATTRS.has(k)) {
      throw new StrataError('E_BAD_SOURCE', `cannot flatten: '${path}' carries ${k}, written by an overlayfs mounted with redirect_dir or metacopy on; flatten does not merge such layers (mount the clients' overlay with redirect_dir=off,metacopy=off)`, { path, xattr: k });
    }
    if (!DROPPED_OVERLAY_XATTRS.has(k)) xattrs.set(k, v);
  }
  if (h.type === 'dir' && plan.opaque.has(path)) xattrs.set(OPAQUE_XATTR, Buffer.from('y'));
  return { ...h, path, xattrs };
}

interface PendingLink {
  header: TarHeader;
  target: string;
}

async function* flattenLayers(images: string[], plan: MergePlan): AsyncGenerator<Buffer> {
  const out = new Batcher();
  const done = new Set<string>();
  const wanted = new Set<number>(plan.owner.values());
  for (const k of plan.linkCarrier.keys()) wanted.add(k);
  // The root's mode, owner and xattrs come from the topmost layer, even when
  // the listings left the root out (every squashfs has one).
  const rootLayer = plan.owner.get('') ?? images.length - 1;
  wanted.add(rootLayer);

  for (let layer = 0; layer < images.length; layer++) {
    if (!wanted.has(layer)) continue; // fully shadowed: not even read
    const carriers = plan.linkCarrier.get(layer);
    const owned = (p: string) => (p === '' ? rootLayer : plan.owner.get(p)) === layer;
    // Stream path of a file that bore data -> output path that now holds that data.
    const dataAt = new Map<string, string>();
    const pending: PendingLink[] = [];

    const tar = openLayerTar(images[layer]!);
    try {
      for await (const { header: h, body } of readTar(tar.stdout)) {
        const p = h.path;
        if (h.type === 'hardlink') {
          if (!owned(p) || done.has(p)) continue;
          const target = dataAt.get(h.linkname);
          if (target === undefined) pending.push({ header: h, target: h.linkname });
          else if (target !== p) {
            // Only the link target changes: the attributes are the shared inode's.
            yield* out.push(encodeTarHeader(outputHeader({ ...h, linkname: target }, p, plan)));
            dataAt.set(p, target);
            done.add(p);
          }
          continue;
        }
        const carrier = h.type === 'file' ? carriers?.get(p) : undefined;
        const as = carrier !== undefined && !done.has(carrier) ? carrier : owned(p) && !done.has(p) ? p : undefined;
        if (as === undefined) continue; // shadowed: its body is skipped by readTar
        yield* out.push(encodeTarHeader(outputHeader(h, as, plan)));
        done.add(as);
        if (h.type === 'file') {
          for await (const piece of body()) yield* out.push(piece);
          yield* out.push(padding(h.size));
          dataAt.set(p, as);
          if (as !== p && owned(p) && !done.has(p)) {
            yield* out.push(encodeTarHeader(outputHeader({ ...h, type: 'hardlink', linkname: as, size: 0 }, p, plan)));
            done.add(p);
          }
        }
      }
      await tar.exited;
    } finally {
      tar.kill();
    }
    if (pending.length > 0) yield* resolvePendingLinks(images[layer]!, pending, plan, done, out);
  }

  for (const w of plan.whiteouts) {
    if (done.has(w)) continue;
    yield* out.push(encodeTarHeader({
      path: w, type: 'char', mode: 0, uid: 0, gid: 0, size: 0, mtime: 0, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map(),
    }));
    done.add(w);
  }
  yield* out.push(Buffer.alloc(1024)); // end of archive
  yield* out.flush();
}

/**
 * Hardlinks whose data-bearing file was shadowed and that the plan's entry
 * lists did not describe as one group (a lister that reports links
 * differently): read the layer once more and give the data to the first
 * pending link, the others link to it.
 */
async function* resolvePendingLinks(image: string, pending: PendingLink[], plan: MergePlan, done: Set<string>, out: Batcher): AsyncGenerator<Buffer> {
  const byTarget = new Map<string, PendingLink[]>();
  for (const l of pending) {
    const list = byTarget.get(l.target) ?? [];
    list.push(l);
    byTarget.set(l.target, list);
  }
  const tar = openLayerTar(image);
  try {
    for await (const { header: h, body } of readTar(tar.stdout)) {
      const links = h.type === 'file' ? byTarget.get(h.path) : undefined;
      if (!links) continue;
      byTarget.delete(h.path);
      const live = links.filter((l) => !done.has(l.header.path));
      if (live.length === 0) continue;
      const carrier = live[0]!.header.path;
      yield* out.push(encodeTarHeader(outputHeader(h, carrier, plan)));
      for await (const piece of body()) yield* out.push(piece);
      yield* out.push(padding(h.size));
      done.add(carrier);
      for (const l of live.slice(1)) {
        yield* out.push(encodeTarHeader(outputHeader({ ...l.header, linkname: carrier }, l.header.path, plan)));
        done.add(l.header.path);
      }
    }
    await tar.exited;
  } finally {
    tar.kill();
  }
  if (byTarget.size > 0) {
    throw new StrataError('E_CORRUPT', `layer ${image} has hardlinks to missing files: ${[...byTarget.keys()].slice(0, 5).join(', ')}`, { image });
  }
}

/**
 * One tar stream (ustar + PAX) of the merge of `layerImages` (squashfs paths,
 * base first), described by `entries` (their listings, same order).
 * keepBelow=false: the result replaces the whole chain; keepBelow=true: it
 * will sit on top of other lower layers (flatten --from), with whiteouts and
 * opaque marks where the segment hid their content. Errors (a layer sqfs2tar
 * cannot read, a malformed stream) surface as an 'error' event on the stream.
 */
export function flattenToTar(layerImages: string[], entries: LayerEntry[][], opts: { keepBelow: boolean }): NodeJS.ReadableStream {
  if (layerImages.length !== entries.length) {
    throw new StrataError('E_BAD_ARGUMENT', `flatten got ${layerImages.length} layer images but ${entries.length} entry lists`);
  }
  if (layerImages.length === 0) throw new StrataError('E_NOTHING_TO_DO', 'nothing to flatten: the chain has no layers');
  const plan = planMerge(entries, opts);
  return Readable.from(flattenLayers(layerImages, plan), { objectMode: false, highWaterMark: 256 * 1024 });
}
