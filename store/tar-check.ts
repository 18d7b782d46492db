/**
 * A strict, streaming tar reader that checks every entry of an untrusted
 * archive and re-encodes it into a canonical tar for tar2sqfs.
 *
 * Why our own reader instead of tar-stream, and why re-encode:
 * tar2sqfs 1.2 (squashfs-tools-ng lib/tar) parses tar differently from every
 * other reader, and a parser differential lets a crafted tar show one tree to
 * the checker and another to the C code (see docs/design.md, facts):
 *  - it does NOT skip the data of non-regular entries: a directory, link or
 *    device header with size > 0 makes it read that "data" as the next headers,
 *    while tar-stream skips it as data;
 *  - it ignores PAX global headers ('g'), which tar-stream merges into entries;
 *  - it honours GNU.sparse.name (a second path key) and LIBARCHIVE.xattr.*;
 *  - a PAX header after a GNU long name resets it, in tar-stream PAX wins;
 *  - a hardlink to '..' makes it double-free and abort.
 * So the reader below accepts a strict subset (POSIX ustar / GNU format, PAX
 * and GNU long names, no sparse files, no unknown types) and writes a fresh
 * ustar+PAX header for every entry from the values it checked. File data is
 * passed through unchanged. tar2sqfs therefore only ever parses headers we
 * generated, and what we checked is exactly what it packs.
 *
 * The same reader lists the tar that sqfs2tar produces (squashfs.ts).
 * The byte-level format (numbers, checksum, PAX records, paths) is
 * tar-format.ts, shared with flatten; the header encoder is
 * protocol/tar-encode.ts, shared with flatten and the agent.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { StrataError } from './errors.ts';
import { BlockCollector, entryType, isZeroBlock, normalizeTarPath, parsePax, printable, type RawHeader } from './tar-format.ts';
import { BLOCK, encodeEntryHeader, roundUp, type HeaderStyle } from '../protocol/tar-encode.ts';
import type { LayerEntry } from './types.ts';
import { createHash, type Hash } from 'node:crypto';
import { isOpaqueMark, isWhiteoutDevice, OPAQUE_XATTR } from '../protocol/overlay.ts';
import {
  addXattr,
  bad,
  checkNameLengths,
  checkOverlayXattrs,
  checkPolicy,
  EMPTY_SHA256,
  longString,
  MAX_META_BYTES,
  MAX_SYMLINK_BYTES,
  MAX_U32,
  MetadataBudget,
  metadataCost,
  parentOf,
  parseHeader,
  paxDecimal,
  paxTime,
  squashfsStoresXattr,
  type TarCheckOptions,
  unsafe,
  urlDecodeBytes,
  xattrValueToString,
} from './tar-rules.ts';

// ---------------------------------------------------------------- the checker

type State = 'header' | 'meta' | 'data' | 'end';

/**
 * The canonical headers handed to tar2sqfs, byte for byte what this checker
 * has always written (see HeaderStyle): bake output, and so layer digests,
 * must not change for the same input.
 */
const CHECKED_STYLE: HeaderStyle = { dirSlash: false, longNameMarker: true, paxHeaderCopiesEntry: false };

/**
 * Feed it the tar bytes with push(); it throws a StrataError at the first
 * problem and hands canonical tar bytes to `emit`. finish() checks the end.
 */
export class TarChecker {
  readonly entries: LayerEntry[] = [];
  /** Bytes of tar read so far. */
  offset = 0;

  private state: State = 'header';
  private readonly blocks = new BlockCollector();
  private need = BLOCK;
  private remaining = 0;
  /**
   * Content hash of the file being read: diff tells "changed" from "same"
   * by content, not by size and mtime (an upper dir holds every file that was
   * merely copied up, and rewrites often keep the size).
   */
  private hash: Hash | null = null;
  private hashLeft = 0;
  private hashEntry: LayerEntry | null = null;
  private metaType = '';
  private metaSize = 0;
  private zeroRun = 0;
  private sawHeader = false;
  private pendingPax: Map<string, Buffer> | null = null;
  private pendingLongName: Buffer | null = null;
  private pendingLongLink: Buffer | null = null;
  /** Normalised path (latin1) -> is a directory. */
  private readonly nodes = new Map<string, boolean>();
  /** Directories implied by deeper paths (tar2sqfs creates them implicitly). */
  private readonly impliedDirs = new Set<string>();
  private aclEntries = 0;
  private readonly droppedXattrs = new Map<string, number>();
  private nonUtf8Paths = 0;

  /** Charged per entry before anything about it is kept (tar-rules.ts, "the metadata budget"). */
  readonly budget: MetadataBudget;

  constructor(private readonly opts: TarCheckOptions) {
    this.budget = new MetadataBudget(opts.maxMetadataBytes, opts.maxEntryMetadataBytes);
  }

  get warnings(): string[] {
    const w: string[] = [];
    if (this.aclEntries) w.push(`squashfs cannot store POSIX ACLs: ${this.aclEntries} entries lose them`);
    for (const [k, n] of this.droppedXattrs) w.push(`squashfs cannot store the xattr '${k}': ${n} entries lose it`);
    if (this.nonUtf8Paths) w.push(`${this.nonUtf8Paths} paths are not valid UTF-8; they are listed with replacement characters`);
    return w;
  }

  push(chunk: Buffer, emit: (b: Buffer) => void): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.state === 'end') {
        // Past the end-of-archive marker: tar writers pad to a record size.
        this.offset += chunk.length - off;
        return;
      }
      if (this.state === 'data') {
        const n = Math.min(this.remaining, chunk.length - off);
        if (this.hash) {
          const h = Math.min(n, this.hashLeft);
          this.hash.update(chunk.subarray(off, off + h));
          this.hashLeft -= h;
          if (this.hashLeft === 0) {
            this.hashEntry!.sha256 = this.hash.digest('hex');
            this.hash = null;
            this.hashEntry = null;
          }
        }
        emit(chunk.subarray(off, off + n));
        this.remaining -= n;
        this.offset += n;
        off += n;
        if (this.remaining === 0) this.state = 'header';
        continue;
      }
      // header or meta: collect `need` bytes.
      const block = this.blocks.take(chunk, off, this.need);
      off = this.blocks.next;
      if (!block) continue;
      const at = this.offset;
      this.offset += block.length;
      if (this.state === 'header') this.onHeader(block, at, emit);
      else this.onMeta(block);
    }
  }

  finish(emit: (b: Buffer) => void): void {
    if (this.state !== 'end') {
      const atBoundary = this.state === 'header' && this.blocks.partial === 0;
      if (!this.sawHeader && this.offset === 0) throw bad('empty input: not a tar archive');
      // A lone zero block at the very end is accepted (GNU tar does too).
      if (!(atBoundary && this.zeroRun >= 1 && !this.pendingPax && !this.pendingLongName && !this.pendingLongLink)) {
        throw bad(`the tar archive is truncated at byte ${this.offset + this.blocks.partial}; send the complete archive`, {
          offset: this.offset,
        });
      }
    }
    emit(Buffer.alloc(2 * BLOCK));
  }

  private onHeader(block: Buffer, at: number, emit: (b: Buffer) => void): void {
    if (isZeroBlock(block)) {
      this.zeroRun++;
      if (this.zeroRun >= 2) {
        if (this.pendingPax || this.pendingLongName || this.pendingLongLink)
          throw bad("the tar archive ends inside an entry's extended header");
        this.state = 'end';
      }
      return;
    }
    this.zeroRun = 0;
    const first = !this.sawHeader;
    this.sawHeader = true;
    const h = parseHeader(block, at, first);
    switch (h.typeflag) {
      case 'x':
      case 'g':
      case 'L':
      case 'K':
        if (h.size > MAX_META_BYTES) throw bad(`extended tar header of ${h.size} bytes at byte ${at} (limit ${MAX_META_BYTES})`);
        if (h.size === 0) throw bad(`empty extended tar header at byte ${at}`);
        this.metaType = h.typeflag;
        this.metaSize = h.size;
        this.need = roundUp(h.size);
        this.state = 'meta';
        return;
    }
    this.onEntry(h, emit);
  }

  private onMeta(block: Buffer): void {
    const data = Buffer.from(block.subarray(0, this.metaSize));
    this.need = BLOCK;
    this.state = 'header';
    switch (this.metaType) {
      case 'x':
        if (this.pendingPax) throw bad('two PAX headers for one tar entry');
        this.pendingPax = parsePax(data);
        break;
      case 'g': {
        // tar2sqfs ignores global headers, other readers apply them: accept
        // only the harmless comment that git archive writes.
        for (const key of parsePax(data).keys()) {
          if (key !== 'comment') throw bad(`PAX global header sets '${key}'; global headers are not supported`);
        }
        break;
      }
      case 'L':
        if (this.pendingLongName) throw bad('two GNU long-name headers for one tar entry');
        this.pendingLongName = longString(data, 'path');
        break;
      case 'K':
        if (this.pendingLongLink) throw bad('two GNU long-link headers for one tar entry');
        this.pendingLongLink = longString(data, 'link target');
        break;
    }
  }

  private onEntry(h: RawHeader, emit: (b: Buffer) => void): void {
    const pax = this.pendingPax;
    let nameBytes = this.pendingLongName ?? h.name;
    let linkBytes = this.pendingLongLink ?? h.linkname;
    this.pendingPax = this.pendingLongName = this.pendingLongLink = null;

    const type = entryType(h.typeflag);
    if (!type) {
      if (h.typeflag === 'S')
        throw bad(`sparse file in the archive (${printable(nameBytes.toString('latin1'))}); create the tar without --sparse`);
      throw bad(`unsupported tar entry type '${h.typeflag}' for '${printable(nameBytes.toString('latin1'))}'`);
    }
    let { size, uid, gid, mtime } = h;
    const xattrs = new Map<string, Buffer>();
    let hadAcl = false;
    if (pax) {
      for (const [key, v] of pax) {
        if (key === 'path') nameBytes = v;
        else if (key === 'linkpath') linkBytes = v;
        else if (key === 'size') size = paxDecimal(v, key);
        else if (key === 'uid') uid = paxDecimal(v, key);
        else if (key === 'gid') gid = paxDecimal(v, key);
        else if (key === 'mtime') mtime = paxTime(v);
        else if (key.startsWith('GNU.sparse.')) throw bad(`sparse file in the archive; create the tar without --sparse`);
        else if (key.startsWith('SCHILY.xattr.')) addXattr(xattrs, key.slice('SCHILY.xattr.'.length), v);
        else if (key.startsWith('LIBARCHIVE.xattr.')) {
          const b64 = v.toString('latin1');
          if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw bad(`invalid base64 in PAX key '${key}'`);
          addXattr(xattrs, urlDecodeBytes(key.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(b64, 'base64'));
        } else if (key.startsWith('SCHILY.acl.')) hadAcl = true;
        // Other keys (atime, ctime, uname, gname, comment, ...) are dropped.
      }
    }
    const rawName = nameBytes.toString('latin1');
    if (rawName.includes('\0')) throw unsafe(`NUL byte in the path '${printable(rawName)}'`);
    const key = normalizeTarPath(rawName);
    checkNameLengths(key);
    if (type !== 'dir' && rawName.endsWith('/')) throw bad(`'${printable(rawName)}' ends in '/' but is not a directory`);

    // The smuggling guard: only regular files may carry data (see top).
    if (type !== 'file' && size !== 0) {
      throw bad(`'${printable(rawName)}': a ${type} entry with ${size} bytes of data is not accepted`, { path: printable(key) });
    }
    if (uid > MAX_U32 || gid > MAX_U32) throw bad(`'${printable(rawName)}': uid/gid beyond 32 bits`);
    if (h.devmajor > 0xfff || h.devminor > 0xfffff) throw bad(`'${printable(rawName)}': device number out of range`);

    if (this.entries.length >= this.opts.maxEntries) {
      throw new StrataError('E_TOO_LARGE', `the archive has more than ${this.opts.maxEntries} entries (the configured limit)`, {
        limit: this.opts.maxEntries,
      });
    }

    // Tree shape: no duplicates, no entry below a non-directory, no non-directory where a directory was implied.
    if (this.nodes.has(key)) throw bad(`duplicate path '${printable(key) || '.'}' in the archive`, { path: printable(key) });
    if (type !== 'dir' && (key === '' || this.impliedDirs.has(key))) {
      throw bad(
        `'${printable(key) || '.'}' is a ${type} but ${key === '' ? 'the root must be a directory' : 'earlier entries use it as a directory'}`,
      );
    }
    for (let p = parentOf(key); p !== null && !this.impliedDirs.has(p); p = parentOf(p)) {
      if (this.nodes.get(p) === false) throw bad(`'${printable(key)}' is below '${printable(p)}', which is not a directory`);
      this.impliedDirs.add(p);
    }

    let link = '';
    let linkOut = Buffer.alloc(0);
    if (type === 'hardlink') {
      const rawLink = linkBytes.toString('latin1');
      if (rawLink.length === 0) throw bad(`hardlink '${printable(key)}' without a target`);
      let target: string;
      try {
        target = normalizeTarPath(rawLink, 'hardlink target');
      } catch (e) {
        throw unsafe(`hardlink '${printable(key)}' -> '${printable(rawLink)}': ${(e as Error).message}`, { path: printable(key) });
      }
      const isDir = this.nodes.get(target);
      if (isDir === undefined || target === '') {
        throw unsafe(`hardlink '${printable(key)}' -> '${printable(rawLink)}' does not name an earlier entry of the archive`, {
          path: printable(key),
        });
      }
      if (isDir) throw unsafe(`hardlink '${printable(key)}' -> '${printable(rawLink)}' points to a directory`, { path: printable(key) });
      link = target;
      linkOut = Buffer.from(target, 'latin1');
    } else if (type === 'symlink') {
      // Symlink targets are resolved on the client, inside its root: any target is fine.
      if (linkBytes.length === 0) throw bad(`symlink '${printable(key)}' without a target`);
      if (linkBytes.includes(0)) throw unsafe(`NUL byte in the target of symlink '${printable(key)}'`);
      if (linkBytes.length > MAX_SYMLINK_BYTES)
        throw bad(`symlink '${printable(key)}' has a target longer than ${MAX_SYMLINK_BYTES} bytes`);
      link = linkBytes.toString('latin1');
      linkOut = Buffer.from(linkBytes);
    }

    // xattrs squashfs can store; the rest is dropped with a warning (tar2sqfs -s would fail on them).
    const kept: [string, Buffer][] = [];
    for (const [name, v] of [...xattrs].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
      if (name.startsWith('system.posix_acl_')) {
        hadAcl = true;
        continue;
      }
      if (!squashfsStoresXattr(name)) {
        this.droppedXattrs.set(name, (this.droppedXattrs.get(name) ?? 0) + 1);
        continue;
      }
      kept.push([name, v]);
    }
    if (hadAcl) this.aclEntries++;

    const mode = type === 'symlink' ? 0o777 : h.mode & 0o7777;
    const whiteout = isWhiteoutDevice(type, h.devmajor, h.devminor);
    checkPolicy(this.opts.policy, { type, key, mode, devmajor: h.devmajor, devminor: h.devminor, whiteout, kept });
    checkOverlayXattrs(key, kept);

    const pathUtf8 = Buffer.from(key, 'latin1').toString('utf8');
    const linkUtf8 = type === 'symlink' || type === 'hardlink' ? Buffer.from(link, 'latin1').toString('utf8') : undefined;
    const xattrText = kept.map(([n, v]): [string, string] => [n, xattrValueToString(v)]);
    this.budget.charge(metadataCost(pathUtf8, linkUtf8, xattrText), printable(pathUtf8), this.entries.length + 1);

    this.nodes.set(key, type === 'dir');
    if (Buffer.byteLength(pathUtf8) !== key.length || pathUtf8.includes('\uFFFD')) this.nonUtf8Paths++;
    const entry: LayerEntry = {
      path: pathUtf8,
      type,
      mode,
      uid,
      gid,
      size: type === 'file' ? size : 0,
      // squashfs stores unsigned 32-bit times; tar2sqfs clamps the same way.
      mtime: Math.min(Math.max(mtime, 0), MAX_U32),
    };
    if (linkUtf8 !== undefined) entry.linkname = linkUtf8;
    if (type === 'char' || type === 'block') {
      entry.devmajor = h.devmajor;
      entry.devminor = h.devminor;
    }
    if (whiteout) entry.whiteout = true;
    if (kept.length) {
      entry.xattrs = Object.fromEntries(xattrText);
      if (type === 'dir' && isOpaqueMark(OPAQUE_XATTR, entry.xattrs[OPAQUE_XATTR] ?? '')) entry.opaque = true;
    }
    this.entries.push(entry);

    emit(
      encodeEntryHeader(
        {
          path: Buffer.from(key, 'latin1'),
          type,
          mode: entry.mode,
          uid,
          gid,
          size: entry.size,
          mtime: entry.mtime,
          linkname: linkOut,
          devmajor: entry.devmajor ?? 0,
          devminor: entry.devminor ?? 0,
          xattrs: kept,
        },
        CHECKED_STYLE,
      ),
    );
    if (type === 'file' && size > 0) {
      this.remaining = roundUp(size);
      this.state = 'data';
      this.hash = createHash('sha256');
      this.hashLeft = size;
      this.hashEntry = entry;
    } else if (type === 'file') {
      entry.sha256 = EMPTY_SHA256;
    }
  }
}

/** TarChecker as a stream: untrusted tar in, canonical checked tar out. */
export class TarCheckStream extends Transform {
  readonly checker: TarChecker;
  constructor(opts: TarCheckOptions) {
    super({ highWaterMark: 1 << 20 });
    this.checker = new TarChecker(opts);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.checker.push(chunk, (b) => {
        this.push(b);
      });
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }
  override _flush(cb: TransformCallback): void {
    try {
      this.checker.finish((b) => {
        this.push(b);
      });
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }
}
