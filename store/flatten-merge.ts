/**
 * The merge of flatten: what each layer's entries become in the output tar
 * (overlay bookkeeping dropped, opaque marks re-decided by the plan), the
 * output's header encoding and its LayerEntry listing, and the visitors that
 * copy one layer's wanted entries and the hard links held to the end.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { StrataError } from './errors.ts';
import type { MergePlan } from './overlay-merge.ts';
import { squashfsStoresXattr, xattrValueToString } from './tar-rules.ts';
import { encodeEntryHeader, roundUp, type HeaderStyle } from '../protocol/tar-encode.ts';
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
import type { TarHeader, TarVisitor } from './tar-parser.ts';

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

export const ZEROS = Buffer.alloc(1024);
export const padding = (size: number): Buffer => ZEROS.subarray(0, roundUp(size) - size);

// ---------------------------------------------------------------- flatten

/** Gathers small headers into larger chunks; big body pieces pass straight through. Tracks backpressure. */
export class TarOut {
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
export interface MergeState {
  plan: MergePlan;
  out: TarOut;
  /** Output paths already written. */
  done: Set<string>;
  /** The layer that provides the root's attributes. */
  rootLayer: number;
  listing: Listing;
}

export const EMPTY_SHA256 = createHash('sha256').digest('hex');
export const MAX_U32 = 0xffffffff;

/**
 * The LayerEntry list of the output stream, built as headers are written: the
 * list TarChecker would make of the same bytes (store/bake.ts's trusted
 * path skips the re-check for a stream the store made itself). A file's
 * sha256 is its input entry's when the input listing has one for the stream
 * path the body was copied from (the body is copied unchanged), else it is
 * hashed on the way through.
 */
export class Listing {
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
export function emitHeader(m: MergeState, h: TarHeader): LayerEntry {
  m.out.write(encodeTarHeader(h));
  return m.listing.add(h);
}

/** One layer's pass: copies the entries the plan gives to this layer. */
export class LayerMerge implements TarVisitor {
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
export class PendingLinkMerge implements TarVisitor {
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
