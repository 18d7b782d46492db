/**
 * The rules the tar checker (tar-check.ts) applies to each entry, apart from
 * its streaming: the push policy and limits, the typed errors, decoding of
 * header and PAX values, xattr handling and the policy check itself.
 */
import { StrataError } from './errors.ts';
import { checksumMatches, decodeHeader, headerFormat, printable, type RawHeader } from './tar-format.ts';
import { createHash } from 'node:crypto';
import { OPAQUE_XATTR, OVERLAY_XATTR_PREFIX } from '../protocol/overlay.ts';

export const EMPTY_SHA256 = createHash('sha256').digest('hex');

export interface TarPolicy {
  /** Device nodes other than char 0:0 (overlay whiteouts, always allowed). */
  allowDevices: boolean;
  /** Regular files with the setuid or setgid bit. */
  allowSetuid: boolean;
  /** The security.capability xattr (file capabilities). */
  allowCapabilities: boolean;
}

/** Admin imports: everything a root filesystem may contain. */
export const ALLOW_ALL: TarPolicy = { allowDevices: true, allowSetuid: true, allowCapabilities: true };
/** Pushes from users who are not admins. */

export interface TarCheckOptions {
  maxEntries: number;
  policy: TarPolicy;
  /** The metadata budget of the whole archive (metadataCost); default DEFAULT_MAX_METADATA_BYTES. */
  maxMetadataBytes?: number;
  /** The metadata budget of one entry; default DEFAULT_MAX_ENTRY_METADATA_BYTES. */
  maxEntryMetadataBytes?: number;
}

/** Symlink targets: Linux refuses targets of PATH_MAX (4096) bytes or more. */
export const MAX_SYMLINK_BYTES = 4095;
/** PAX and GNU long-name records; tar2sqfs caps them at 64 KiB as well. */
export const MAX_META_BYTES = 65536;
export const MAX_U32 = 0xffffffff;

/** squashfs stores xattrs only in these namespaces; tar2sqfs -s fails on any other. */
export const SQUASHFS_XATTR_PREFIXES = ['user.', 'trusted.', 'security.'];

/** An xattr squashfs can hold (POSIX ACLs live in 'system.', which it cannot); the rest is dropped with a warning. */
export function squashfsStoresXattr(name: string): boolean {
  return SQUASHFS_XATTR_PREFIXES.some((p) => name.startsWith(p) && name.length > p.length);
}

export const bad = (msg: string, details: Record<string, unknown> = {}) => new StrataError('E_BAD_TAR', msg, details);
export const unsafe = (msg: string, details: Record<string, unknown> = {}) => new StrataError('E_UNSAFE_PATH', msg, details);
export const forbidden = (msg: string, details: Record<string, unknown> = {}) => new StrataError('E_FORBIDDEN', msg, details);

// ---------------------------------------------------------------- header and PAX values

/** The checker's demands on a header block before it is decoded: a ustar or GNU magic and a correct checksum. */
export function parseHeader(block: Buffer, offset: number, first: boolean): RawHeader {
  const format = headerFormat(block);
  if (!format || !checksumMatches(block)) {
    if (first) throw bad('not a tar archive (no ustar header at the start); send an uncompressed, zstd, gzip or xz tar');
    throw bad(`corrupt tar header at byte ${offset}: ${format ? 'bad checksum' : 'no ustar magic'}`, { offset });
  }
  return decodeHeader(block);
}

export function paxDecimal(v: Buffer, key: string): number {
  const s = v.toString('latin1');
  if (!/^[0-9]{1,16}$/.test(s)) throw bad(`invalid PAX ${key} value '${s.slice(0, 40)}'`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw bad(`PAX ${key} value too large`);
  return n;
}

export function paxTime(v: Buffer): number {
  const s = v.toString('latin1');
  const m = /^(-?)([0-9]{1,16})(\.[0-9]*)?$/.exec(s);
  if (!m) throw bad(`invalid PAX mtime value '${s.slice(0, 40)}'`);
  return m[1] ? -Number(m[2]) : Number(m[2]);
}

/** libarchive's xattr names are URL-encoded (%XX), values base64. */
export function urlDecodeBytes(s: string): string {
  return Buffer.from(
    s.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))),
    'latin1',
  ).toString('utf8');
}

// ---------------------------------------------------------------- xattr values

/**
 * xattr values in LayerEntry: text when the bytes are UTF-8 without NUL,
 * otherwise getfattr's base64 notation "0s<base64>" (capabilities, ACLs).
 */
export function xattrValueToString(v: Buffer): string {
  if (!v.includes(0)) {
    const s = v.toString('utf8');
    if (Buffer.byteLength(s) === v.length && !s.includes('\uFFFD')) return s;
  }
  return `0s${v.toString('base64')}`;
}

export function addXattr(m: Map<string, Buffer>, name: string, v: Buffer): void {
  if (name.length === 0 || name.includes('\0')) throw bad('invalid xattr name in the archive');
  const prev = m.get(name);
  // bsdtar writes each xattr twice (SCHILY and LIBARCHIVE): same value is fine.
  if (prev && !prev.equals(v)) throw bad(`xattr '${name}' given twice with different values`);
  m.set(name, v);
}

export function longString(data: Buffer, what: string): Buffer {
  let end = data.length;
  while (end > 0 && data[end - 1] === 0) end--;
  const s = data.subarray(0, end);
  if (s.includes(0)) throw unsafe(`NUL byte inside a GNU long ${what}`);
  return s;
}

export function parentOf(key: string): string | null {
  if (key === '') return null;
  const i = key.lastIndexOf('/');
  return i < 0 ? '' : key.slice(0, i);
}

/**
 * What the push's policy refuses: device nodes other than whiteouts, setuid
 * and setgid files, file capabilities. KEPT is the entry's stored xattrs.
 */
export function checkPolicy(
  policy: TarPolicy,
  e: { type: string; key: string; mode: number; devmajor: number; devminor: number; whiteout: boolean; kept: [string, Buffer][] },
): void {
  const { type, key, mode, whiteout, kept } = e;
  const h = { devmajor: e.devmajor, devminor: e.devminor };
  if ((type === 'char' || type === 'block') && !whiteout && !policy.allowDevices) {
    throw forbidden(
      `device node '${printable(key)}' (${type} ${h.devmajor}:${h.devminor}) is not allowed in this push; only whiteouts (char 0:0) are`,
      { path: printable(key) },
    );
  }
  if (type === 'file' && mode & 0o6000 && !policy.allowSetuid) {
    throw forbidden(`setuid/setgid file '${printable(key)}' (mode ${mode.toString(8)}) is not allowed in this push`, {
      path: printable(key),
    });
  }
  if (!policy.allowCapabilities && kept.some(([n]) => n === 'security.capability')) {
    throw forbidden(`file capabilities (security.capability) on '${printable(key)}' are not allowed in this push`, {
      path: printable(key),
    });
  }
}

// ---------------------------------------------------------------- the metadata budget

/**
 * The metadata bomb guard (docs/decisions.md, "Limits"): every entry's
 * listing (path, link target, xattrs) is kept in memory until the commit
 * stores it, so what an archive may carry is capped per entry and in total,
 * counted while it streams. The unit is the entry's size in the stored
 * listing (JSON characters, an upper bound): the cap on the total bounds the
 * bake's memory and the listing's size alike, whatever the archive.
 */
export const DEFAULT_MAX_METADATA_BYTES = 128 * 1024 ** 2;
export const DEFAULT_MAX_ENTRY_METADATA_BYTES = 256 * 1024;
/** The keys and numbers of a listing entry (type, mode, ids, size, mtime, sha256). */
const ENTRY_FIXED_COST = 160;

const jsonLength = (s: string): number => JSON.stringify(s).length;

/** What one entry costs against the budget. */
export function metadataCost(path: string, link: string | undefined, xattrs: [string, string][]): number {
  let n = ENTRY_FIXED_COST + jsonLength(path) + (link === undefined ? 0 : jsonLength(link) + 12);
  for (const [name, value] of xattrs) n += jsonLength(name) + jsonLength(value) + 2;
  return n;
}

/**
 * The budget of one archive. charge() comes before anything about the entry
 * is kept: an archive over the budget is refused while it streams, so memory
 * stays bounded whatever the archive holds.
 */
export class MetadataBudget {
  spent = 0;
  constructor(
    readonly total = DEFAULT_MAX_METADATA_BYTES,
    readonly perEntry = DEFAULT_MAX_ENTRY_METADATA_BYTES,
  ) {}

  /** PATH is printable already; ENTRY counts from 1. */
  charge(cost: number, path: string, entry: number): void {
    const shown = path.length > 200 ? `${path.slice(0, 200)}...` : path;
    if (cost > this.perEntry) {
      throw new StrataError(
        'E_METADATA_LIMIT',
        `'${shown}' carries ${cost} bytes of metadata (path, link target, xattrs); the limit per entry is ${this.perEntry} bytes`,
        { path: shown, limit: this.perEntry, bytes: cost },
      );
    }
    this.spent += cost;
    if (this.spent > this.total) {
      throw new StrataError(
        'E_METADATA_LIMIT',
        `the archive carries more than ${this.total} bytes of metadata (paths, link targets, xattrs), passed at entry ${entry} ('${shown}'); push fewer files or smaller xattrs, or ask the admin to raise limits.max_metadata`,
        { limit: this.total, entry },
      );
    }
  }
}

/** NAME_MAX: squashfs packs a longer name, but the kernel then cannot read the directory that holds it. */
export const MAX_NAME_BYTES = 255;

/** Refuses a path with a component longer than NAME_MAX bytes (KEY is the normalized path, one char per byte). */
export function checkNameLengths(key: string): void {
  for (const part of key.split('/')) {
    if (part.length > MAX_NAME_BYTES)
      throw bad(
        `'${printable(key).slice(0, 200)}...': the name '${printable(part).slice(0, 40)}...' is ${part.length} bytes; Linux allows at most ${MAX_NAME_BYTES} bytes per name (the kernel could not read the directory)`,
        { path: printable(key).slice(0, 1000) },
      );
  }
}

/**
 * The overlayfs xattrs a layer must not carry: redirect and metacopy
 * describe a rename or a metadata-only copy-up relative to one mount's lower
 * layers; as a layer under another stack they would make overlayfs follow
 * them, and flatten refuses them, so a profile holding one could never be
 * flattened again. The agent never makes them (it mounts with
 * redirect_dir=off,metacopy=off), so an archive carrying one is refused.
 * origin, upper and the impure/nlink/uuid hints stay accepted: GNU tar of a
 * real overlay upper dir carries origin on every copied-up file (the
 * documented one-line client does), and overlayfs reads origin only on an
 * upper dir, never on the lower layers a commit becomes (docs/decisions.md,
 * "Overlay xattrs in pushes").
 */
const REFUSED_OVERLAY_XATTRS = new Set(['redirect', 'metacopy'].map((n) => `${OVERLAY_XATTR_PREFIX}${n}`));

export function checkOverlayXattrs(key: string, kept: [string, Buffer][]): void {
  for (const [name] of kept) {
    if (!REFUSED_OVERLAY_XATTRS.has(name)) continue;
    throw bad(
      `'${printable(key) || '.'}' carries the overlayfs xattr ${name}: layers hold only whiteouts and opaque directories (${OPAQUE_XATTR}); mount the client's overlay with redirect_dir=off,metacopy=off (a rename or metadata-only copy-up cannot become a layer)`,
      { path: printable(key), xattr: name },
    );
  }
}
