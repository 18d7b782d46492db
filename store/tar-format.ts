/**
 * Reading the tar format at the byte level (POSIX ustar, GNU extensions,
 * PAX records), shared by the two tar readers of the store: the strict
 * checker of pushed tars (tar-check.ts) and flatten's reader of sqfs2tar
 * streams (flatten-stream.ts). One implementation, so that what the checker
 * accepts and what flatten reads cannot drift apart. Writing is
 * protocol/tar-encode.ts, the encoder the agent uses too.
 *
 * Everything here is pure: no streams, no policy. What an entry may be is
 * tar-check.ts's business; this file only says what the bytes mean.
 * Parsing is strict (a field readers could disagree on is refused, see
 * docs/design.md on parser differentials with tar2sqfs), and values that
 * may be binary (xattrs) stay Buffers: tar-stream decodes PAX values as
 * UTF-8, which corrupts security.capability and friends.
 */
import { BLOCK } from '../protocol/tar-encode.ts';
import { StrataError } from './errors.ts';
import type { LayerEntry } from './types.ts';

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

/** The entry type of a (non-meta) typeflag; undefined for the ones strata does not take (sparse 'S', ...). */
export function entryType(typeflag: string): LayerEntry['type'] | undefined {
  return TYPE_OF_FLAG[typeflag];
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
