/**
 * Helpers for the bake tests: hand-crafted tars (including malicious ones
 * tar-stream would not write), tar-stream packs, loop mounts and a tree
 * snapshot to compare a mounted image with its source directory.
 */
import { createHash } from 'node:crypto';
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { pack } from 'tar-stream';

export async function sh(script: string, cwd?: string): Promise<string> {
  const r = await execa('sh', ['-ec', script], { cwd });
  return r.stdout;
}

export async function tempDir(prefix = 'strata-bake-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

// ------------------------------------------------------------ raw tar crafting

export interface RawEntry {
  name: string | Buffer;
  /** tar typeflag character, '0' file by default. */
  type?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  /** Header size field; defaults to data length. */
  size?: number;
  data?: Buffer;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Magic: POSIX ustar by default. */
  format?: 'posix' | 'gnu' | 'v7';
}

function octal(h: Buffer, off: number, len: number, v: number) {
  h.write(`${v.toString(8).padStart(len - 1, '0')}\0`, off, len, 'latin1');
}

export function rawHeader(e: RawEntry): Buffer {
  const h = Buffer.alloc(512);
  const name = typeof e.name === 'string' ? Buffer.from(e.name) : e.name;
  name.copy(h, 0, 0, Math.min(100, name.length));
  octal(h, 100, 8, e.mode ?? 0o644);
  octal(h, 108, 8, e.uid ?? 0);
  octal(h, 116, 8, e.gid ?? 0);
  octal(h, 124, 12, e.size ?? e.data?.length ?? 0);
  octal(h, 136, 12, e.mtime ?? 1_600_000_000);
  h.write(e.type ?? '0', 156, 1, 'latin1');
  if (e.linkname) h.write(e.linkname, 157, 100, 'utf8');
  const format = e.format ?? 'posix';
  if (format === 'posix') h.write('ustar\0' + '00', 257, 8, 'latin1');
  if (format === 'gnu') h.write('ustar  \0', 257, 8, 'latin1');
  octal(h, 329, 8, e.devmajor ?? 0);
  octal(h, 337, 8, e.devminor ?? 0);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return h;
}

const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);

/** One entry: header + data + padding. */
export function rawEntry(e: RawEntry): Buffer {
  const data = e.data ?? Buffer.alloc(0);
  return Buffer.concat([rawHeader(e), data, pad(data.length)]);
}

export function paxRecords(rec: Record<string, string | Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(rec)) {
    const body = Buffer.concat([Buffer.from(` ${k}=`), Buffer.isBuffer(v) ? v : Buffer.from(v), Buffer.from('\n')]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    parts.push(Buffer.from(String(len)), body);
  }
  return Buffer.concat(parts);
}

/** A PAX extended ('x') or global ('g') header entry. */
export function paxEntry(rec: Record<string, string | Buffer>, type: 'x' | 'g' = 'x'): Buffer {
  return rawEntry({ name: 'PaxHeader', type, data: paxRecords(rec) });
}

export function rawTar(...parts: Buffer[]): Buffer {
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}

// ------------------------------------------------------------ tar-stream packs

export interface PackEntry {
  name: string;
  type?: 'file' | 'link' | 'symlink' | 'directory' | 'character-device' | 'block-device' | 'fifo';
  data?: string | Buffer;
  linkname?: string;
  mode?: number;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string>;
}

export async function packTar(entries: PackEntry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = new Promise<void>((resolve, reject) => {
    p.on('end', () => resolve());
    p.on('error', reject);
  });
  for (const e of entries) {
    const { data, ...header } = e;
    await new Promise<void>((resolve, reject) => {
      p.entry(
        { mtime: new Date(1_600_000_000_000), ...header, ...(e.pax ? { pax: e.pax } : {}) } as never,
        data ?? '',
        (err?: Error | null) => (err ? reject(err) : resolve()),
      );
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

// ------------------------------------------------------------ mounts

export async function withSquashfsMount<T>(image: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const mnt = await tempDir('strata-bake-mnt-');
  // 'loop' mounts are set to autoclear: umount frees the loop device.
  await execa('mount', ['-t', 'squashfs', '-o', 'loop,ro', image, mnt]);
  try {
    return await fn(mnt);
  } finally {
    await execa('umount', [mnt]).catch(() => execa('umount', ['-l', mnt]));
    await rm(mnt, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------ tree snapshots

export interface NodeInfo {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  mtime: number;
  sha256?: string;
  target?: string;
  rdev?: string;
  /** Paths sharing this inode (hardlink group), sorted. */
  links?: string[];
  xattrs: Record<string, string>;
}

/** Every path below `root` ('' is root) with what a user would notice. */
export async function snapshotTree(root: string): Promise<Record<string, NodeInfo>> {
  const out: Record<string, NodeInfo> = {};
  const inodes = new Map<number, string[]>();
  const xattrs = await readXattrs(root);
  async function walk(rel: string): Promise<void> {
    const abs = rel ? join(root, rel) : root;
    const st = await lstat(abs);
    const type = st.isFile()
      ? 'file'
      : st.isDirectory()
        ? 'dir'
        : st.isSymbolicLink()
          ? 'symlink'
          : st.isCharacterDevice()
            ? 'char'
            : st.isBlockDevice()
              ? 'block'
              : st.isFIFO()
                ? 'fifo'
                : 'other';
    const n: NodeInfo = {
      type,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtime: Math.floor(st.mtimeMs / 1000),
      xattrs: xattrs[rel] ?? {},
    };
    if (type === 'file') {
      n.size = st.size;
      n.sha256 = createHash('sha256')
        .update(await readFile(abs))
        .digest('hex');
      if (st.nlink > 1) {
        const g = inodes.get(st.ino) ?? [];
        g.push(rel);
        inodes.set(st.ino, g);
        n.links = g;
      }
    }
    if (type === 'symlink') n.target = await readlink(abs);
    if (type === 'char' || type === 'block') n.rdev = `${Math.floor(st.rdev / 256)}:${st.rdev % 256}`;
    out[rel] = n;
    if (type === 'dir') {
      for (const name of (await readdir(abs)).sort()) await walk(rel ? `${rel}/${name}` : name);
    }
  }
  await walk('');
  for (const g of inodes.values()) g.sort();
  return out;
}

/** xattrs of every path (hex values), read with getfattr without following symlinks. */
async function readXattrs(root: string): Promise<Record<string, Record<string, string>>> {
  const r = await execa('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'], { cwd: root, reject: false });
  const out: Record<string, Record<string, string>> = {};
  let cur: Record<string, string> | null = null;
  for (const line of r.stdout.split('\n')) {
    const f = /^# file: (.*)$/.exec(line);
    if (f) {
      const p = f[1]!.replace(/^\.\/?/, '');
      cur = out[p] = {};
      continue;
    }
    const kv = /^([^=]+)=(.*)$/.exec(line);
    if (kv && cur) cur[kv[1]!] = kv[2]!;
  }
  return out;
}
