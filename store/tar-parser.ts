/**
 * A push parser of tar streams (sqfs2tar's, and any other): headers with PAX
 * records applied, xattr values kept as raw bytes (squashfs stores them so;
 * tar-stream would decode them as UTF-8 and corrupt binary ones), file bodies
 * handed on chunk by chunk. The byte-level format is tar-format.ts.
 */
import { StrataError } from './errors.ts';
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
import { BLOCK, roundUp } from '../protocol/tar-encode.ts';
import type { LayerEntry } from './types.ts';

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
