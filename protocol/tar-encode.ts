/**
 * The one tar encoder: header blocks, PAX records and the numbers in them,
 * used by every process that writes a tar strata reads back (the agent's
 * snapshot of an upper dir, the store's re-encoding of checked pushes and
 * flatten's merged stream). One encoder, so that a field one writer gets
 * right (a uid too large for its octal field goes in a PAX record) cannot be
 * missing from another.
 *
 * Pure: bytes in, bytes out, no streams. Values that may be binary (xattrs)
 * stay Buffers: tar-stream encodes PAX values as UTF-8 strings, which would
 * corrupt security.capability and friends.
 */

export const BLOCK = 512;

/** The entry types strata carries (the store's LayerEntry['type']). */
export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

/** Largest values the 8-byte (uid, gid, mode) and 12-byte (size, mtime) octal fields hold. */
export const OCTAL7 = 0o7777777;
export const OCTAL11 = 0o77777777777;

/** Rounds a data size up to whole blocks. */
export function roundUp(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}

const ZEROS = Buffer.alloc(2 * BLOCK);

/** The zero bytes that pad `size` bytes of data to whole blocks. */
export function padding(size: number): Buffer {
  return ZEROS.subarray(0, roundUp(size) - size);
}

/** The end of an archive: two zero blocks. */
export const END_OF_ARCHIVE: Buffer = ZEROS;

/** One PAX record: "<len> <key>=<value>\n", where len counts the whole record, its own digits included. */
export function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let digits = String(body.length).length;
  if (String(body.length + digits).length > digits) digits++;
  return Buffer.concat([Buffer.from(String(body.length + digits), 'latin1'), body]);
}

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

/** The typeflag byte of each entry type. */
export const FLAG_OF_TYPE: Readonly<Record<TarEntryType, number>> = {
  file: 0x30,
  hardlink: 0x31,
  symlink: 0x32,
  char: 0x33,
  block: 0x34,
  dir: 0x35,
  fifo: 0x36,
};

/** One entry as the encoder takes it. */
export interface EntryFields {
  /** Normalised path bytes (no leading './', no trailing '/'): the root is empty. */
  path: Buffer;
  type: TarEntryType;
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
 * The small ways in which the writers' bytes have always differed.
 * tar2sqfs packs the same image either way (test/flatten-stream.test.ts
 * bakes flatten's stream directly and through the checker and gets one
 * digest), but the store's tars are the input of images whose digests dedup
 * layers and name objects, and a tar byte changed is a risk for nothing:
 * each writer keeps exactly its bytes, so the choice is the caller's.
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
  return Buffer.concat([paxHead, pax, padding(pax.length), main]);
}
