/**
 * Flatten in user space: one tar stream that holds what a stack of squashfs
 * layers shows through overlayfs, ready for tar2sqfs. No mount, no extraction:
 * each layer is read once, in order, as sqfs2tar's tar stream, and only the
 * entries the merge plan (overlay-merge.ts) gives to that layer are copied,
 * file bodies streamed chunk by chunk.
 *
 * Why our own tar reader/writer instead of tar-stream: squashfs keeps xattr
 * values as raw bytes (security.capability is binary) and sqfs2tar and
 * tar2sqfs carry them raw in PAX `SCHILY.xattr.*` records. tar-stream 3
 * decodes and encodes PAX values as UTF-8 strings, which corrupts any value
 * that is not valid UTF-8 (its pack() also cannot emit a raw PAX block). The
 * byte-level format is tar-format.ts and protocol/tar-encode.ts (shared
 * with the checker of pushed tars); here is the push parser of sqfs2tar's stream and the merge.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { StrataError } from './errors.ts';
import { planMerge, type MergePlan } from './overlay-merge.ts';
import { squashfsStoresXattr, xattrValueToString } from './tar-check.ts';
import {
  BlockCollector,
  cField,
  checksumMatches,
  decodeHeader,
  entryType,
  isMetaFlag,
  isZeroBlock,
  normalizeTarPath,
  parsePax,
  type RawHeader,
} from './tar-format.ts';
import { BLOCK, encodeEntryHeader, roundUp, type HeaderStyle } from '../protocol/tar-encode.ts';
import type { LayerEntry } from './types.ts';
import {
  isOpaqueMark,
  isWhiteoutDevice,
  METACOPY_XATTR,
  MOUNT_BOOKKEEPING_XATTRS,
  OPAQUE_VALUE,
  OPAQUE_XATTR,
  REDIRECT_XATTR,
} from '../protocol/overlay.ts';

export interface TarHeader {
  /** Normalised like LayerEntry.path: no leading './' or '/', no trailing '/', root = ''. */
  path: string;
  type: LayerEntry['type'];
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

/** Extended-header state carried from 'x'/'g'/'L'/'K' records to the entry they describe. */
interface Pending {
  pax: Map<string, Buffer> | null;
  globalPax: Map<string, Buffer>;
  longName: string | null;
  longLink: string | null;
}

function checkMetaSize(size: number): void {
  if (size > 64 * 1024 * 1024) throw new StrataError('E_BAD_TAR', 'oversized extended header in a layer tar stream');
}

function applyMeta(flag: string, body: Buffer, st: Pending): void {
  if (flag === 'x' || flag === 'g') {
    const into = flag === 'x' ? (st.pax ??= new Map()) : st.globalPax;
    for (const [k, v] of parsePax(body)) into.set(k, v);
  } else if (flag === 'L') st.longName = cField(body, 0, body.length).toString('utf8');
  else st.longLink = cField(body, 0, body.length).toString('utf8');
}

/**
 * The entry a (checksummed, non-meta) header describes, with the pending
 * extended records applied and then cleared. `dataLen` is how many bytes of
 * data follow the block in the stream (before padding).
 */
function decodeEntry(raw: RawHeader, st: Pending): { header: TarHeader; dataLen: number } {
  const type = entryType(raw.typeflag);
  if (!type) throw new StrataError('E_BAD_TAR', `unsupported tar entry type '${raw.typeflag}' in a layer tar stream`);
  let name = raw.name.toString('utf8');
  let linkname = raw.linkname.toString('utf8');
  const h: TarHeader = {
    path: '',
    type,
    mode: raw.mode & 0o7777,
    uid: raw.uid,
    gid: raw.gid,
    size: raw.size,
    mtime: raw.mtime,
    linkname: '',
    devmajor: raw.devmajor,
    devminor: raw.devminor,
    xattrs: new Map(),
  };
  if (st.longName !== null) name = st.longName;
  if (st.longLink !== null) linkname = st.longLink;
  const records = st.globalPax.size === 0 ? st.pax : new Map([...st.globalPax, ...(st.pax ?? [])]);
  if (records) {
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
  }
  st.pax = null;
  st.longName = null;
  st.longLink = null;
  h.path = normalizeTarPath(name);
  h.linkname = type === 'hardlink' ? normalizeTarPath(linkname, 'hardlink target') : linkname;
  const dataLen = type === 'file' ? h.size : type === 'dir' ? 0 : h.size;
  if (type !== 'file') h.size = 0;
  return { header: h, dataLen };
}

/** What a TarParser hands each entry to. */
export interface TarVisitor {
  /** A new entry; return true to receive its data (files) and a bodyEnd() call. */
  entry(h: TarHeader): boolean;
  /** Pieces of the wanted entry's data, in order (the producer's buffers, not copies). */
  data(piece: Buffer): void;
  /** After the last data piece of a wanted entry (at once for entries without data). */
  bodyEnd(): void;
}

/**
 * Reads a tar stream (sqfs2tar's: ustar, GNU, PAX), push-driven and
 * synchronous: chunks go in with push(), the visitor is called from inside
 * it. Not async: an async generator step per chunk and per entry cost more
 * CPU than the merge itself (see docs/decisions.md, "Flatten speed").
 * Bodies are never buffered; unwanted ones are skipped.
 */
export class TarParser {
  private state: 'header' | 'meta' | 'data' | 'end' = 'header';
  private need = BLOCK;
  private readonly blocks = new BlockCollector();
  private metaFlag = '';
  private metaSize = 0;
  private dataLeft = 0;
  private padLeft = 0;
  private want = false;
  private readonly st: Pending = { pax: null, globalPax: new Map(), longName: null, longLink: null };

  constructor(private readonly visitor: TarVisitor) {}

  push(chunk: Buffer): void {
    let off = 0;
    const len = chunk.length;
    while (off < len) {
      if (this.state === 'end') return; // sqfs2tar may pad after the end-of-archive blocks
      if (this.state === 'data') {
        if (this.dataLeft > 0) {
          const n = Math.min(this.dataLeft, len - off);
          if (this.want) this.visitor.data(n === len && off === 0 ? chunk : chunk.subarray(off, off + n));
          this.dataLeft -= n;
          off += n;
          if (this.dataLeft > 0) return;
        }
        const p = Math.min(this.padLeft, len - off);
        this.padLeft -= p;
        off += p;
        if (this.padLeft > 0) return;
        this.state = 'header';
        this.need = BLOCK;
        if (this.want) {
          this.want = false;
          this.visitor.bodyEnd();
        }
        continue;
      }
      // 'header' or 'meta': gather `need` bytes.
      const block = this.blocks.take(chunk, off, this.need);
      off = this.blocks.next;
      if (!block) return;
      if (this.state === 'meta') {
        applyMeta(this.metaFlag, Buffer.from(block.subarray(0, this.metaSize)), this.st);
        this.state = 'header';
        this.need = BLOCK;
      } else {
        this.onHeader(block);
      }
    }
  }

  /** At the end of the stream: throws when it stopped in the middle of an entry. */
  finish(): void {
    if (this.state === 'end' || (this.state === 'header' && this.blocks.partial === 0)) return;
    throw new StrataError('E_BAD_TAR', 'the layer tar stream ended in the middle of an entry');
  }

  private onHeader(block: Buffer): void {
    if (isZeroBlock(block)) {
      this.state = 'end';
      return;
    }
    if (!checksumMatches(block)) throw new StrataError('E_BAD_TAR', 'bad tar header checksum in a layer tar stream');
    const raw = decodeHeader(block);
    const flag = raw.typeflag;
    const size = raw.size;
    if (isMetaFlag(flag)) {
      checkMetaSize(size);
      this.metaFlag = flag;
      this.metaSize = size;
      this.state = 'meta';
      this.need = roundUp(size);
      if (this.need === 0) {
        applyMeta(flag, Buffer.alloc(0), this.st);
        this.state = 'header';
        this.need = BLOCK;
      }
      return;
    }
    const { header, dataLen } = decodeEntry(raw, this.st);
    const want = this.visitor.entry(header);
    if (dataLen === 0) {
      if (want) this.visitor.bodyEnd();
      return;
    }
    this.want = want;
    this.dataLeft = dataLen;
    this.padLeft = roundUp(dataLen) - dataLen;
    this.state = 'data';
  }
}

// ---------------------------------------------------------------- writing

/**
 * Flatten's headers, byte for byte what it has always written (see
 * HeaderStyle in protocol/tar-encode.ts): the merged tar becomes the flat layer, and
 * its digest must stay the same for the same chain.
 */
const FLATTEN_STYLE: HeaderStyle = { dirSlash: true, longNameMarker: false, paxHeaderCopiesEntry: true };

/** The header block(s) of one entry: a PAX block when needed, then the ustar block. */
function encodeTarHeader(h: TarHeader): Buffer {
  return encodeEntryHeader(
    {
      path: Buffer.from(h.path, 'utf8'),
      type: h.type,
      mode: h.mode,
      uid: h.uid,
      gid: h.gid,
      size: h.type === 'file' ? h.size : 0,
      mtime: h.mtime,
      linkname: Buffer.from(h.linkname, 'utf8'),
      devmajor: h.devmajor,
      devminor: h.devminor,
      xattrs: h.xattrs,
    },
    FLATTEN_STYLE,
  );
}

const ZEROS = Buffer.alloc(1024);
const padding = (size: number): Buffer => ZEROS.subarray(0, roundUp(size) - size);

// ---------------------------------------------------------------- sqfs2tar

/** Bytes of one layer's tar held in memory while it waits its turn (read-ahead) or the output is full. */
const SOURCE_BUFFER = 4 << 20;
/** Wanted layers whose sqfs2tar already runs while an earlier one is merged. */
const READ_AHEAD = 2;

/**
 * sqfs2tar of one image, its output held in a bounded queue until a parser
 * consumes it. `-r .` keeps the root inode (its mode, owner and xattrs, an
 * opaque mark included) as a './' entry. No `-s`: the only thing sqfs2tar
 * skips is a socket (tar cannot hold one), and a stale socket in a base image
 * must not make every flatten of that chain fail; GNU tar drops sockets from
 * pushed layers the same way.
 *
 * Why a queue: the next layers' sqfs2tar (single-threaded zstd decompression,
 * the largest CPU cost of reading) starts while the current layer is merged,
 * instead of after it; the queue caps what it may read ahead, then its pipe
 * blocks it. 'data' events instead of async iteration: one promise round per
 * pipe read (sqfs2tar's writes arrive ~10 KB at a time) was a large share of
 * flatten's CPU.
 */
class LayerSource {
  /** Resolves when sqfs2tar exited 0; rejects with its stderr otherwise. */
  readonly exited: Promise<void>;
  private readonly child: ChildProcessByStdio<null, Readable, Readable>;
  private queue: Buffer[] = [];
  private head = 0;
  private queued = 0;
  private ended = false;
  private paused = false;
  private pumping = false;
  private again = false;
  private readError: Error | null = null;
  private sink: { parser: TarParser; blocked: () => boolean; resolve: () => void; reject: (e: unknown) => void } | null = null;

  constructor(readonly image: string) {
    const child = spawn('sqfs2tar', ['-r', '.', image], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 8192) stderr += d;
    });
    this.exited = new Promise<void>((resolve, reject) => {
      child.on('error', (e) =>
        reject(new StrataError('E_INTERNAL', `cannot run sqfs2tar (install squashfs-tools-ng): ${e.message}`, {}, { cause: e })),
      );
      child.on('close', (code, signal) => {
        if (code === 0) resolve();
        else
          reject(
            new StrataError('E_CORRUPT', `sqfs2tar could not read layer ${image} (${signal ?? `exit ${code}`}): ${stderr.trim()}`, {
              image,
            }),
          );
      });
    });
    this.exited.catch(() => undefined); // observed by the caller; avoid an unhandled rejection when it is killed early
    child.stdout.on('data', (b: Buffer) => {
      this.queue.push(b);
      this.queued += b.length;
      if (this.queued >= SOURCE_BUFFER && !this.paused) {
        this.paused = true;
        child.stdout.pause();
      }
      this.pump();
    });
    child.stdout.on('end', () => {
      this.ended = true;
      this.pump();
    });
    child.stdout.on('error', (e) => {
      this.readError = e;
      this.ended = true;
      this.pump();
    });
  }

  /** Feeds all of sqfs2tar's output to parser, holding back while blocked(); resolves at its end. */
  consume(parser: TarParser, blocked: () => boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.sink = { parser, blocked, resolve, reject };
      this.pump();
    });
  }

  /** Moves queued output into the parser while the consumer has room; call again when it has. */
  pump(): void {
    if (this.pumping) {
      this.again = true; // called from inside a push (the output asked for more): loop once more
      return;
    }
    const s = this.sink;
    if (!s) return;
    this.pumping = true;
    try {
      do {
        this.again = false;
        while (this.head < this.queue.length && !s.blocked()) {
          const b = this.queue[this.head]!;
          this.queue[this.head++] = EMPTY;
          this.queued -= b.length;
          s.parser.push(b);
        }
        if (this.head === this.queue.length) {
          this.queue = [];
          this.head = 0;
        }
      } while (this.again);
      if (this.paused && this.queued < SOURCE_BUFFER / 2) {
        this.paused = false;
        this.child.stdout.resume();
      }
      if (this.ended && this.queued === 0 && this.head === this.queue.length) {
        this.sink = null;
        if (this.readError) throw this.readError;
        s.parser.finish();
        s.resolve();
      }
    } catch (e) {
      this.sink = null;
      this.kill();
      s.reject(e);
    } finally {
      this.pumping = false;
    }
  }

  kill(): void {
    const c = this.child;
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    // A paused pipe would never see its end: drop it so 'close' can fire.
    c.stdout.destroy();
    const s = this.sink;
    if (s) {
      this.sink = null;
      s.reject(new StrataError('E_INTERNAL', `reading layer ${this.image} was stopped`, { image: this.image }));
    }
  }
}

const EMPTY = Buffer.alloc(0);

// ---------------------------------------------------------------- flatten

/** Gathers small headers into larger chunks; big body pieces pass straight through. Tracks backpressure. */
class TarOut {
  private parts: Buffer[] = [];
  private size = 0;
  /** Bytes handed to the consumer so far (for progress reports). */
  sent = 0;
  /** The consumer's buffer is full: stop feeding parsers until it reads. */
  full = false;
  constructor(private readonly rs: Readable) {}

  write(b: Buffer): void {
    if (b.length >= 32 * 1024) {
      this.flush();
      this.send(b);
      return;
    }
    if (b.length === 0) return;
    this.parts.push(b);
    this.size += b.length;
    if (this.size >= 64 * 1024) this.flush();
  }

  flush(): void {
    if (this.size === 0) return;
    const out = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    this.send(out);
  }

  private send(b: Buffer): void {
    this.sent += b.length;
    if (!this.rs.push(b)) this.full = true;
  }
}

/**
 * overlayfs bookkeeping an upper dir picks up that means nothing once the
 * layers are merged: copy-up origins (file handles of the old lower inodes,
 * which with index=on would even make lookups fail with ESTALE), the impure
 * mark of dirs holding such entries, the upper's uuid and hardlink counts.
 * The opaque mark is re-decided by the plan.
 */
const DROPPED_OVERLAY_XATTRS = new Set([OPAQUE_XATTR, ...MOUNT_BOOKKEEPING_XATTRS]);
/** Features whose meaning depends on the lower layers in a way the merge plan does not model. */
const UNSUPPORTED_OVERLAY_XATTRS = new Set([REDIRECT_XATTR, METACOPY_XATTR]);

function outputHeader(h: TarHeader, path: string, plan: MergePlan): TarHeader {
  const xattrs = new Map<string, Buffer>();
  for (const [k, v] of h.xattrs) {
    if (UNSUPPORTED_OVERLAY_XATTRS.has(k)) {
      throw new StrataError(
        'E_BAD_SOURCE',
        `cannot flatten: '${path}' carries ${k}, written by an overlayfs mounted with redirect_dir or metacopy on; flatten does not merge such layers (mount the clients' overlay with redirect_dir=off,metacopy=off)`,
        { path, xattr: k },
      );
    }
    if (!DROPPED_OVERLAY_XATTRS.has(k)) xattrs.set(k, v);
  }
  if (h.type === 'dir' && plan.opaque.has(path)) xattrs.set(OPAQUE_XATTR, Buffer.from(OPAQUE_VALUE));
  return { ...h, path, xattrs };
}

interface PendingLink {
  header: TarHeader;
  target: string;
}

/** State shared by the layers of one flatten. */
interface MergeState {
  plan: MergePlan;
  out: TarOut;
  /** Output paths already written. */
  done: Set<string>;
  /** The layer that provides the root's attributes. */
  rootLayer: number;
  listing: Listing;
}

const EMPTY_SHA256 = createHash('sha256').digest('hex');
const MAX_U32 = 0xffffffff;

/**
 * The LayerEntry list of the output stream, built as headers are written: the
 * list TarChecker would make of the same bytes (store/bake.ts's trusted
 * path skips the re-check for a stream the store made itself). A file's
 * sha256 is its input entry's when the input listing has one for the stream
 * path the body was copied from (the body is copied unchanged), else it is
 * hashed on the way through.
 */
class Listing {
  readonly entries: LayerEntry[] = [];
  private nonUtf8 = 0;
  private hashing: { entry: LayerEntry; hash: Hash } | null = null;

  get warnings(): string[] {
    return this.nonUtf8 ? [`${this.nonUtf8} paths are not valid UTF-8; they are listed with replacement characters`] : [];
  }

  /** Records the entry encodeTarHeader(h) describes; returns it. */
  add(h: TarHeader): LayerEntry {
    const e: LayerEntry = {
      path: h.path,
      type: h.type,
      mode: h.type === 'symlink' ? 0o777 : h.mode & 0o7777,
      uid: h.uid,
      gid: h.gid,
      size: h.type === 'file' ? h.size : 0,
      // What TarChecker reads back from encodeTarHeader: whole seconds, clamped like squashfs.
      mtime: Math.min(Math.max(Math.trunc(h.mtime), 0), MAX_U32),
    };
    if (h.type === 'symlink' || h.type === 'hardlink') e.linkname = h.linkname;
    if (h.type === 'char' || h.type === 'block') {
      e.devmajor = h.devmajor;
      e.devminor = h.devminor;
    }
    if (isWhiteoutDevice(h.type, h.devmajor, h.devminor)) e.whiteout = true;
    const kept = [...h.xattrs.keys()].filter(squashfsStoresXattr).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    if (kept.length) {
      e.xattrs = Object.fromEntries(kept.map((n) => [n, xattrValueToString(h.xattrs.get(n)!)]));
      if (h.type === 'dir' && isOpaqueMark(OPAQUE_XATTR, e.xattrs[OPAQUE_XATTR] ?? '')) e.opaque = true;
    }
    if (h.path.includes('\uFFFD')) this.nonUtf8++;
    this.entries.push(e);
    return e;
  }

  /** A file entry whose body follows: its content hash, known or computed from the data. */
  body(e: LayerEntry, source: LayerEntry | undefined): void {
    if (e.size === 0) e.sha256 = EMPTY_SHA256;
    else if (source?.type === 'file' && source.size === e.size && source.sha256) e.sha256 = source.sha256;
    else this.hashing = { entry: e, hash: createHash('sha256') };
  }

  data(piece: Buffer): void {
    this.hashing?.hash.update(piece);
  }

  bodyEnd(): void {
    if (!this.hashing) return;
    this.hashing.entry.sha256 = this.hashing.hash.digest('hex');
    this.hashing = null;
  }
}

/** Writes one header and lists its entry. */
function emitHeader(m: MergeState, h: TarHeader): LayerEntry {
  m.out.write(encodeTarHeader(h));
  return m.listing.add(h);
}

/** One layer's pass: copies the entries the plan gives to this layer. */
class LayerMerge implements TarVisitor {
  readonly pending: PendingLink[] = [];
  /** Stream path of a file that bore data -> output path that now holds that data. */
  private readonly dataAt = new Map<string, string>();
  private readonly carriers: Map<string, string> | undefined;
  private copying: { h: TarHeader; p: string; as: string } | null = null;

  /** This layer's listing by path (for content hashes). */
  private readonly inputs: Map<string, LayerEntry>;

  constructor(
    private readonly layer: number,
    private readonly m: MergeState,
    inputs: LayerEntry[],
  ) {
    this.carriers = m.plan.linkCarrier.get(layer);
    this.inputs = new Map(inputs.map((e) => [e.path, e]));
  }

  private owned(p: string): boolean {
    return (p === '' ? this.m.rootLayer : this.m.plan.owner.get(p)) === this.layer;
  }

  entry(h: TarHeader): boolean {
    const { plan, done } = this.m;
    const p = h.path;
    if (h.type === 'hardlink') {
      if (!this.owned(p) || done.has(p)) return false;
      const target = this.dataAt.get(h.linkname);
      if (target === undefined) this.pending.push({ header: h, target: h.linkname });
      else if (target !== p) {
        // Only the link target changes: the attributes are the shared inode's.
        emitHeader(this.m, outputHeader({ ...h, linkname: target }, p, plan));
        this.dataAt.set(p, target);
        done.add(p);
      }
      return false;
    }
    const carrier = h.type === 'file' ? this.carriers?.get(p) : undefined;
    const as = carrier !== undefined && !done.has(carrier) ? carrier : this.owned(p) && !done.has(p) ? p : undefined;
    if (as === undefined) return false; // shadowed: its body is skipped by the parser
    const e = emitHeader(this.m, outputHeader(h, as, plan));
    done.add(as);
    if (h.type !== 'file') return false;
    this.m.listing.body(e, this.inputs.get(p));
    this.copying = { h, p, as };
    return true;
  }

  data(piece: Buffer): void {
    this.m.out.write(piece);
    this.m.listing.data(piece);
  }

  bodyEnd(): void {
    const { h, p, as } = this.copying!;
    this.copying = null;
    const { plan, out, done, listing } = this.m;
    listing.bodyEnd();
    out.write(padding(h.size));
    this.dataAt.set(p, as);
    if (as !== p && this.owned(p) && !done.has(p)) {
      emitHeader(this.m, outputHeader({ ...h, type: 'hardlink', linkname: as, size: 0 }, p, plan));
      done.add(p);
    }
  }
}

/**
 * Hardlinks whose data-bearing file was shadowed and that the plan's entry
 * lists did not describe as one group (a lister that reports links
 * differently): on a second read of the layer, the first pending link gets
 * the data, the others link to it.
 */
class PendingLinkMerge implements TarVisitor {
  readonly byTarget = new Map<string, PendingLink[]>();
  private copying: { h: TarHeader; live: PendingLink[] } | null = null;

  constructor(
    pending: PendingLink[],
    private readonly m: MergeState,
    private readonly inputs: LayerEntry[],
  ) {
    for (const l of pending) {
      const list = this.byTarget.get(l.target) ?? [];
      list.push(l);
      this.byTarget.set(l.target, list);
    }
  }

  entry(h: TarHeader): boolean {
    const links = h.type === 'file' ? this.byTarget.get(h.path) : undefined;
    if (!links) return false;
    this.byTarget.delete(h.path);
    const live = links.filter((l) => !this.m.done.has(l.header.path));
    if (live.length === 0) return false;
    const carrier = live[0]!.header.path;
    const e = emitHeader(this.m, outputHeader(h, carrier, this.m.plan));
    this.m.done.add(carrier);
    // Rare path (a lister that hides hardlinks): a linear search is fine.
    this.m.listing.body(
      e,
      this.inputs.find((x) => x.path === h.path),
    );
    this.copying = { h, live };
    return true;
  }

  data(piece: Buffer): void {
    this.m.out.write(piece);
    this.m.listing.data(piece);
  }

  bodyEnd(): void {
    const { h, live } = this.copying!;
    this.copying = null;
    const { plan, out, done, listing } = this.m;
    listing.bodyEnd();
    out.write(padding(h.size));
    const carrier = live[0]!.header.path;
    for (const l of live.slice(1)) {
      emitHeader(this.m, outputHeader({ ...l.header, linkname: carrier }, l.header.path, plan));
      done.add(l.header.path);
    }
  }
}

/**
 * The merged tar as a Readable. Each wanted layer is read once, in order;
 * up to READ_AHEAD later wanted layers are already being read into bounded
 * queues. Backpressure: when the consumer's buffer is full, parsing stops
 * (the current queue then fills, and its sqfs2tar blocks on its pipe) until
 * the consumer reads again.
 */
function flattenStream(images: string[], entries: LayerEntry[][], plan: MergePlan): FlattenTar {
  const live = new Set<LayerSource>();
  let current: LayerSource | null = null;
  let started = false;
  let stopped = false;
  const open = (image: string): LayerSource => {
    const s = new LayerSource(image);
    live.add(s);
    return s;
  };
  const close = (s: LayerSource): void => {
    s.kill();
    live.delete(s);
  };

  const listing = new Listing();
  const rs = new Readable({
    highWaterMark: 256 * 1024,
    read() {
      out.full = false;
      if (!started) {
        started = true;
        run().then(
          () => rs.push(null),
          (e: unknown) => rs.destroy(e as Error),
        );
      } else current?.pump();
    },
    destroy(err, cb) {
      stopped = true;
      for (const s of live) s.kill();
      live.clear();
      cb(err);
    },
  });
  const out = new TarOut(rs);
  const m: MergeState = { plan, out, done: new Set(), rootLayer: plan.owner.get('') ?? images.length - 1, listing };

  /** Reads one layer through visitor; the source is closed whatever happens. */
  const readLayer = async (src: LayerSource, visitor: TarVisitor): Promise<void> => {
    current = src;
    try {
      await src.consume(new TarParser(visitor), () => out.full);
      await src.exited;
    } finally {
      current = null;
      close(src);
    }
  };

  async function run(): Promise<void> {
    const wantedSet = new Set<number>(plan.owner.values());
    for (const k of plan.linkCarrier.keys()) wantedSet.add(k);
    // The root's mode, owner and xattrs come from the topmost layer, even when
    // the listings left the root out (every squashfs has one).
    wantedSet.add(m.rootLayer);
    // Fully shadowed layers are not even read.
    const wanted = [...wantedSet].filter((l) => l >= 0 && l < images.length).sort((a, b) => a - b);
    const ahead = new Map<number, LayerSource>();
    for (let k = 0; k < wanted.length; k++) {
      if (stopped) return;
      for (let j = k; j < wanted.length && j <= k + READ_AHEAD; j++) if (!ahead.has(j)) ahead.set(j, open(images[wanted[j]!]!));
      const src = ahead.get(k)!;
      ahead.delete(k);
      const layer = wanted[k]!;
      const merge = new LayerMerge(layer, m, entries[layer]!);
      await readLayer(src, merge);
      if (merge.pending.length > 0 && !stopped) {
        const again = new PendingLinkMerge(merge.pending, m, entries[layer]!);
        await readLayer(open(images[layer]!), again);
        if (again.byTarget.size > 0) {
          throw new StrataError(
            'E_CORRUPT',
            `layer ${images[layer]} has hardlinks to missing files: ${[...again.byTarget.keys()].slice(0, 5).join(', ')}`,
            { image: images[layer] },
          );
        }
      }
    }
    if (stopped) return;
    for (const w of plan.whiteouts) {
      if (m.done.has(w)) continue;
      emitHeader(m, {
        path: w,
        type: 'char',
        mode: 0,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        linkname: '',
        devmajor: 0,
        devminor: 0,
        xattrs: new Map(),
      });
      m.done.add(w);
    }
    out.write(ZEROS); // end of archive
    out.flush();
  }

  let finished = false;
  rs.once('end', () => {
    finished = true;
  });
  const total = expectedTarBytes(entries, plan);
  return Object.assign(rs, {
    progress: () => ({ done: out.sent, total: Math.max(total, out.sent) }),
    listing: () => {
      if (!finished) throw new StrataError('E_INTERNAL', 'the flatten listing is only complete once the stream has ended');
      return { entries: listing.entries, warnings: listing.warnings };
    },
  });
}

/** The merged tar stream, and after its end the listing of what it holds. */
export interface FlattenTar extends Readable {
  /**
   * The entries of the stream, equal to what TarChecker lists for the same
   * bytes (sha256 included); only once the stream has ended.
   */
  listing(): { entries: LayerEntry[]; warnings: string[] };
  /**
   * Bytes of tar written so far, and about how many the whole stream will
   * have (from the listings: a header block per surviving entry plus file
   * bodies; PAX blocks make the real end a little later, never earlier than
   * `done`). For progress reports of long flattens.
   */
  progress(): { done: number; total: number };
}

/** Header blocks and padded bodies of every entry the plan keeps, plus the end-of-archive blocks. */
function expectedTarBytes(entries: LayerEntry[][], plan: MergePlan): number {
  let n = 1024;
  entries.forEach((list, layer) => {
    for (const e of list) {
      if (plan.owner.get(e.path) !== layer) continue;
      n += 512 + (e.type === 'file' ? Math.ceil(e.size / 512) * 512 : 0);
    }
  });
  return n;
}

/**
 * One tar stream (ustar + PAX) of the merge of `layerImages` (squashfs paths,
 * base first), described by `entries` (their listings, same order).
 * keepBelow=false: the result replaces the whole chain; keepBelow=true: it
 * will sit on top of other lower layers (flatten --from), with whiteouts and
 * opaque marks where the segment hid their content. Errors (a layer sqfs2tar
 * cannot read, a malformed stream) surface as an 'error' event on the stream.
 */
export function flattenToTar(layerImages: string[], entries: LayerEntry[][], opts: { keepBelow: boolean }): FlattenTar {
  if (layerImages.length !== entries.length) {
    throw new StrataError('E_BAD_ARGUMENT', `flatten got ${layerImages.length} layer images but ${entries.length} entry lists`);
  }
  if (layerImages.length === 0) throw new StrataError('E_NOTHING_TO_DO', 'nothing to flatten: the chain has no layers');
  const plan = planMerge(entries, opts);
  return flattenStream(layerImages, entries, plan);
}
