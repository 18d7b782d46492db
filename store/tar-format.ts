/**
 * The tar format at the byte level (POSIX ustar, GNU extensions, PAX
 * records), shared by the two tar readers/writers of the store: the strict
 * checker of pushed tars (tar-check.ts) and flatten's reader and writer of
 * sqfs2tar streams (flatten-stream.ts). One implementation, so that what
 * the checker accepts and what flatten reads and writes cannot drift apart.
 *
 * Everything here is pure: no streams, no policy. What an entry may be is
 * tar-check.ts's business; this file only says what the bytes mean.
 * Parsing is strict (a field readers could disagree on is refused, see
 * docs/design.md on parser differentials with tar2sqfs), and values that
 * may be binary (xattrs) stay Buffers: tar-stream decodes PAX values as
 * UTF-8, which corrupts security.capability and friends.
 */
import { StrataError } from './errors.ts';
import type { LayerEntry } from './types.ts';

export const BLOCK = 512;
/** Linux's PATH_MAX: longer paths cannot be created on the client anyway. */
export const MAX_PATH_BYTES = 4096;

const bad = (msg: string, details: Record<string, unknown> = {}) => new StrataError('E_BAD_TAR', msg, details);
const unsafe = (msg: string, details: Record<string, unknown> = {}) => new StrataError('E_UNSAFE_PATH', msg, details);

// ---------------------------------------------------------------- numbers

/** What readNumber returns instead of a value (values are never negative). */
const NUM_INVALID = -1;
const NUM_NEGATIVE = -2;
const NUM_TOO_LARGE = -3;

/**
 * A numeric header field: leading spaces, octal digits, then only NUL or
 * space; or GNU base-256 (high bit set). Returns a NUM_* code for anything
 * else rather than guessing, since readers disagree on the leftovers.
 * A byte loop without subarrays: flatten calls it ~8 times per entry on its
 * hot path (docs/decisions.md, "Flatten speed").
 */
function readNumber(b: Buffer, off: number, len: number): number {
  const end = off + len;
  const first = b[off]!;
  if (first & 0x80) {
    // GNU base-256: big-endian, the first byte's high bit is the marker; 0xff starts a negative number.
    if (first === 0xff) return NUM_NEGATIVE;
    let v = first & 0x7f;
    for (let i = off + 1; i < end; i++) {
      v = v * 256 + b[i]!;
      if (v > Number.MAX_SAFE_INTEGER) return NUM_TOO_LARGE;
    }
    return v;
  }
  let i = off;
  while (i < end && b[i] === 0x20) i++;
  let v = 0;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c < 0x30 || c > 0x37) break;
    v = v * 8 + (c - 0x30);
  }
  for (; i < end; i++) {
    const c = b[i]!;
    if (c !== 0 && c !== 0x20) return NUM_INVALID;
  }
  return v > Number.MAX_SAFE_INTEGER ? NUM_TOO_LARGE : v;
}

/** readNumber, with an E_BAD_TAR error naming `field` for a value it refuses. */
export function parseNumberField(buf: Buffer, off: number, len: number, field: string): number {
  const v = readNumber(buf, off, len);
  if (v >= 0) return v;
  if (v === NUM_NEGATIVE) throw bad(`negative number in the tar header's ${field} field`);
  if (v === NUM_TOO_LARGE) throw bad(`number too large in the tar header's ${field} field`);
  throw bad(`invalid number in the tar header's ${field} field`);
}

/**
 * The header checksum: the sum of the block's bytes with the checksum field
 * counted as spaces. Old writers summed signed bytes; both sums are accepted
 * (as GNU tar does). The signed sum is only computed when the usual one fails.
 */
export function checksumMatches(block: Buffer): boolean {
  const stored = readNumber(block, 148, 8);
  if (stored < 0) return false;
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += block[i]!;
  for (let i = 156; i < BLOCK; i++) sum += block[i]!;
  if (stored === sum) return true;
  let high = 0;
  for (let i = 0; i < BLOCK; i++) if (block[i]! > 127 && (i < 148 || i >= 156)) high++;
  return stored === sum - 256 * high;
}

// ---------------------------------------------------------------- header blocks

const ZERO_BLOCK = Buffer.alloc(BLOCK);

/** An all-zero block (end of archive). The first byte (a name's) rules out nearly every header at once. */
export function isZeroBlock(block: Buffer): boolean {
  return block[0] === 0 && block.equals(ZERO_BLOCK);
}

export type TarFormat = 'posix' | 'gnu';

/** POSIX ustar ('ustar\0' '00') or GNU ('ustar ' ' \0'); null for anything else (v7, garbage). */
export function headerFormat(block: Buffer): TarFormat | null {
  const magic = block.toString('latin1', 257, 263);
  const version = block.toString('latin1', 263, 265);
  if (magic === 'ustar\0' && version === '00') return 'posix';
  if (magic === 'ustar ' && version === ' \0') return 'gnu';
  return null;
}

/** Bytes of a NUL-terminated header string field. */
export function cField(buf: Buffer, off: number, len: number): Buffer {
  const f = buf.subarray(off, off + len);
  const nul = f.indexOf(0);
  return nul < 0 ? f : f.subarray(0, nul);
}

/** The fields of one header block, as stored (no PAX or GNU long names applied). */
export interface RawHeader {
  name: Buffer;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  /** One character; a NUL typeflag (old tars' regular file) reads as '0'. */
  typeflag: string;
  linkname: Buffer;
  devmajor: number;
  devminor: number;
}

const USTAR_MAGIC = Buffer.from('ustar\0', 'latin1');

/**
 * Decodes a header block whose magic and checksum the caller has accepted.
 * The prefix field (bytes 345..499) extends the name only in POSIX ustar:
 * GNU tar keeps access and change times there.
 */
export function decodeHeader(block: Buffer): RawHeader {
  let name = cField(block, 0, 100);
  if (block[345] !== 0 && block.compare(USTAR_MAGIC, 0, 6, 257, 263) === 0) {
    name = Buffer.concat([cField(block, 345, 155), Buffer.from('/'), name]);
  }
  return {
    name,
    mode: parseNumberField(block, 100, 8, 'mode'),
    uid: parseNumberField(block, 108, 8, 'uid'),
    gid: parseNumberField(block, 116, 8, 'gid'),
    size: parseNumberField(block, 124, 12, 'size'),
    mtime: parseNumberField(block, 136, 12, 'mtime'),
    typeflag: block[156] === 0 ? '0' : String.fromCharCode(block[156]!),
    linkname: cField(block, 157, 100),
    devmajor: parseNumberField(block, 329, 8, 'devmajor'),
    devminor: parseNumberField(block, 337, 8, 'devminor'),
  };
}

/** Extended-header typeflags: PAX per-entry ('x') and global ('g'), GNU long name ('L') and link ('K'). */
export const isMetaFlag = (flag: string): boolean => flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K';

const TYPE_OF_FLAG: Record<string, LayerEntry['type'] | undefined> = {
  '0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
};
const FLAG_OF_TYPE: Record<LayerEntry['type'], number> = {
  file: 0x30,
  hardlink: 0x31,
  symlink: 0x32,
  char: 0x33,
  block: 0x34,
  dir: 0x35,
  fifo: 0x36,
};

/** The entry type of a (non-meta) typeflag; undefined for the ones strata does not take (sparse 'S', ...). */
export function entryType(typeflag: string): LayerEntry['type'] | undefined {
  return TYPE_OF_FLAG[typeflag];
}

/** Rounds a data size up to whole blocks. */
export function roundUp(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}

// ---------------------------------------------------------------- PAX records

/**
 * PAX extended header records "<len> <key>=<value>\n", strictly: the length
 * must match, the record must end in a newline, keys must not repeat.
 * Values stay bytes (xattr values are binary).
 */
export function parsePax(buf: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < buf.length) {
    const sp = buf.indexOf(0x20, pos);
    if (sp <= pos || sp - pos > 12) throw bad('malformed PAX header record');
    const lenStr = buf.toString('latin1', pos, sp);
    if (!/^[0-9]+$/.test(lenStr)) throw bad('malformed PAX header record length');
    const len = Number(lenStr);
    const end = pos + len;
    if (end > buf.length || end < sp + 4) throw bad('PAX header record length out of range');
    if (buf[end - 1] !== 0x0a) throw bad('PAX header record does not end in a newline');
    const eq = buf.indexOf(0x3d, sp + 1);
    if (eq <= sp + 1 || eq >= end) throw bad('PAX header record without a key');
    const keyBytes = buf.subarray(sp + 1, eq);
    if (keyBytes.includes(0)) throw bad('NUL byte in a PAX header key');
    const key = keyBytes.toString('utf8');
    if (out.has(key)) throw bad(`PAX header repeats the key '${key}'`);
    out.set(key, Buffer.from(buf.subarray(eq + 1, end - 1)));
    pos = end;
  }
  return out;
}

/** One PAX record: "<len> <key>=<value>\n", where len counts the whole record, its own digits included. */
export function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let digits = String(body.length).length;
  if (String(body.length + digits).length > digits) digits++;
  return Buffer.concat([Buffer.from(String(body.length + digits), 'latin1'), body]);
}

// ---------------------------------------------------------------- paths

/**
 * Normalises a tar path (a latin1 string holds raw bytes; a UTF-8 decoded
 * one works the same) to the form LayerEntry uses: no leading './', no
 * trailing '/', no empty or '.' components; the root is ''. Refuses absolute
 * paths, '..' components, NUL bytes and overlong paths.
 * One scan over the characters; the already-clean common case (sqfs2tar's
 * './etc/passwd') is a single slice.
 */
export function normalizeTarPath(raw: string, what = 'path'): string {
  if (raw.length === 0) throw bad(`tar entry with an empty ${what}`);
  if (raw.includes('\0')) throw unsafe(`NUL byte in the ${what} '${printable(raw)}'`, { path: printable(raw) });
  if (raw.length > MAX_PATH_BYTES) throw unsafe(`${what} longer than ${MAX_PATH_BYTES} bytes: '${printable(raw).slice(0, 80)}...'`);
  if (raw.charCodeAt(0) === 0x2f)
    throw unsafe(`absolute ${what} '${printable(raw)}' in the archive; tar the upper directory with relative paths (tar -C DIR .)`, {
      path: printable(raw),
    });
  // Kept components are [from, to) when they are contiguous in raw (only leading/trailing ones dropped).
  let from = -1;
  let to = -1;
  let contiguous = true;
  let start = 0;
  const n = raw.length;
  for (let i = 0; i <= n; i++) {
    if (i < n && raw.charCodeAt(i) !== 0x2f) continue;
    const len = i - start;
    const dot = len > 0 && raw.charCodeAt(start) === 0x2e;
    if (len === 0 || (len === 1 && dot)) {
      // an empty or '.' component: dropped
    } else if (len === 2 && dot && raw.charCodeAt(start + 1) === 0x2e) {
      throw unsafe(`'..' in the ${what} '${printable(raw)}'; paths must stay inside the layer`, { path: printable(raw) });
    } else {
      if (from < 0) from = start;
      else if (start !== to + 1) contiguous = false;
      to = i;
    }
    start = i + 1;
  }
  if (from < 0) return '';
  if (contiguous) return raw.slice(from, to);
  return raw
    .split('/')
    .filter((c) => c !== '' && c !== '.')
    .join('/');
}

/** latin1-held bytes -> display string (UTF-8 where valid). */
export function printable(latin1: string): string {
  return Buffer.from(latin1, 'latin1').toString('utf8').replace(/\0/g, '\\0');
}

// ---------------------------------------------------------------- writing

const OCTAL7 = 0o7777777;
const OCTAL11 = 0o77777777777;
const USTAR_MAGIC_VERSION = Buffer.from('ustar\x0000', 'latin1');

/** `len - 1` zero-padded octal digits and a NUL (a value too large keeps its low digits; callers clamp). */
function octal(buf: Buffer, off: number, len: number, value: number): void {
  let v = Math.max(0, Math.floor(value));
  for (let i = off + len - 2; i >= off; i--) {
    buf[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
  buf[off + len - 1] = 0;
}

/** The fields of one ustar header block, numbers already clamped to what the fields hold. */
export interface UstarFields {
  name: Buffer;
  typeflag: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: Buffer;
  devmajor: number;
  devminor: number;
}

/** One POSIX ustar header block; names longer than 100 bytes are cut (their full form goes in PAX). */
export function ustarBlock(f: UstarFields): Buffer {
  const b = Buffer.alloc(BLOCK);
  f.name.copy(b, 0, 0, Math.min(100, f.name.length));
  octal(b, 100, 8, f.mode);
  octal(b, 108, 8, f.uid);
  octal(b, 116, 8, f.gid);
  octal(b, 124, 12, f.size);
  octal(b, 136, 12, f.mtime);
  b[156] = f.typeflag;
  f.linkname.copy(b, 157, 0, Math.min(100, f.linkname.length));
  USTAR_MAGIC_VERSION.copy(b, 257);
  octal(b, 329, 8, f.devmajor);
  octal(b, 337, 8, f.devminor);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  // Six digits, NUL, space: what GNU tar writes.
  octal(b, 148, 7, sum);
  b[155] = 0x20;
  return b;
}

/** One entry as the canonical encoder takes it. */
export interface EntryFields {
  /** Normalised path bytes (LayerEntry form): the root is empty. */
  path: Buffer;
  type: LayerEntry['type'];
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of data that follow; 0 for everything but files. */
  size: number;
  /** Seconds; a fractional or out-of-range value goes in a PAX mtime record. */
  mtime: number;
  /** Symlink target or hardlink target; empty otherwise. */
  linkname: Buffer;
  devmajor: number;
  devminor: number;
  /** Raw values; written as SCHILY.xattr records sorted by name, whatever the order given. */
  xattrs: Iterable<readonly [string, Buffer]>;
}

/**
 * The small ways in which the two writers' bytes have always differed.
 * tar2sqfs should pack the same image either way (test/flatten-stream.test.ts
 * bakes flatten's stream directly and through the checker and gets one
 * digest), but the tars are the input of images whose digests dedup layers
 * and name objects, and a tar byte changed is a risk for nothing: each
 * writer keeps exactly its bytes, so the choice is the caller's.
 */
export interface HeaderStyle {
  /** Directories are named 'dir/' (GNU tar's habit) rather than 'dir'. */
  dirSlash: boolean;
  /**
   * When a path or link target goes in a PAX record, the ustar field holds
   * the marker 'PaxPath' / 'PaxLink' (true) or the value's first 100 bytes.
   */
  longNameMarker: boolean;
  /** The PAX block's own header copies the entry's uid, gid, mtime and device numbers (true) or holds zeros. */
  paxHeaderCopiesEntry: boolean;
}

const ROOT_NAME = Buffer.from('./');
const SLASH = Buffer.from('/');
const PAX_HEADER_NAME = Buffer.from('PaxHeader');
const PAX_PATH_MARKER = Buffer.from('PaxPath');
const PAX_LINK_MARKER = Buffer.from('PaxLink');
const EMPTY = Buffer.alloc(0);

const byName = (a: readonly [string, Buffer], b: readonly [string, Buffer]): number => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

/**
 * The header bytes of one entry: a PAX block when something does not fit
 * ustar (long path or link, large ids or size, fractional or out-of-range
 * mtime, xattrs), then the ustar block. Data and its padding follow
 * separately. The same entry always gives the same bytes (xattrs sorted):
 * layer digests dedup on it.
 */
export function encodeEntryHeader(e: EntryFields, style: HeaderStyle): Buffer {
  // The root is written as './' (tar2sqfs makes it the image's root inode).
  const name = e.path.length === 0 ? ROOT_NAME : style.dirSlash && e.type === 'dir' ? Buffer.concat([e.path, SLASH]) : e.path;
  const link = e.linkname;
  const records: Buffer[] = [];
  if (name.length > 100) records.push(paxRecord('path', name));
  if (link.length > 100) records.push(paxRecord('linkpath', link));
  if (e.uid > OCTAL7) records.push(paxRecord('uid', Buffer.from(String(e.uid))));
  if (e.gid > OCTAL7) records.push(paxRecord('gid', Buffer.from(String(e.gid))));
  if (e.size > OCTAL11) records.push(paxRecord('size', Buffer.from(String(e.size))));
  if (!Number.isInteger(e.mtime) || e.mtime < 0 || e.mtime > OCTAL11) records.push(paxRecord('mtime', Buffer.from(String(e.mtime))));
  for (const [k, v] of [...e.xattrs].sort(byName)) records.push(paxRecord(`SCHILY.xattr.${k}`, v));
  const uid = Math.min(e.uid, OCTAL7);
  const gid = Math.min(e.gid, OCTAL7);
  const mtime = Math.min(Math.max(0, e.mtime), OCTAL11);
  const main = ustarBlock({
    name: name.length > 100 && style.longNameMarker ? PAX_PATH_MARKER : name,
    typeflag: FLAG_OF_TYPE[e.type],
    mode: e.mode & 0o7777,
    uid,
    gid,
    size: Math.min(e.size, OCTAL11),
    mtime,
    linkname: link.length > 100 && style.longNameMarker ? PAX_LINK_MARKER : link,
    devmajor: e.devmajor,
    devminor: e.devminor,
  });
  if (records.length === 0) return main;
  const pax = Buffer.concat(records);
  const copy = style.paxHeaderCopiesEntry;
  const paxHead = ustarBlock({
    name: PAX_HEADER_NAME,
    typeflag: 0x78, // 'x'
    mode: 0o644,
    uid: copy ? uid : 0,
    gid: copy ? gid : 0,
    size: pax.length,
    mtime: copy ? mtime : 0,
    linkname: EMPTY,
    devmajor: copy ? e.devmajor : 0,
    devminor: copy ? e.devminor : 0,
  });
  return Buffer.concat([paxHead, pax, Buffer.alloc((BLOCK - (pax.length % BLOCK)) % BLOCK), main]);
}

/**
 * Collects a block of a given size (a header, an extended header) from a
 * stream of chunks of any size, for the push parsers (TarChecker, flatten's
 * TarParser). A block that lies whole inside one chunk is a view of it, not a
 * copy; one that straddles chunks is assembled in a buffer of its own.
 */
export class BlockCollector {
  private carry: Buffer | null = null;
  private carryLen = 0;
  /** Offset in the chunk just after what the last take() used. */
  next = 0;

  /** Bytes of a block begun and not finished (0 between blocks). */
  get partial(): number {
    return this.carryLen;
  }

  /**
   * The `need`-byte block that starts with what is carried and continues at
   * chunk[off], or null when the chunk ends first (its bytes are kept).
   * Either way `next` says where the caller goes on in the chunk.
   */
  take(chunk: Buffer, off: number, need: number): Buffer | null {
    if (this.carryLen === 0 && chunk.length - off >= need) {
      this.next = off + need;
      return chunk.subarray(off, off + need);
    }
    this.carry ??= Buffer.allocUnsafe(need);
    const n = Math.min(need - this.carryLen, chunk.length - off);
    chunk.copy(this.carry, this.carryLen, off, off + n);
    this.carryLen += n;
    this.next = off + n;
    if (this.carryLen < need) return null;
    const block = this.carry;
    this.carry = null;
    this.carryLen = 0;
    return block;
  }
}
