/**
 * What a user sees in a tree, as plain data: type, mode, owner, size, file
 * mtime, content hash, symlink target and user xattrs of every path. Two
 * trees are equal for the oracle tests when their snapshots are deep-equal.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

export interface NodeSnap {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  mtime?: number;
  sha?: string;
  link?: string;
  rdev?: number;
  xattrs?: Record<string, string>;
}

function userXattrs(path: string): Record<string, string> | undefined {
  let outp = '';
  try {
    outp = execFileSync('getfattr', ['-h', '-d', '-m', '^user\\.', '-e', 'hex', '--absolute-names', path], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    return undefined;
  }
  const x: Record<string, string> = {};
  for (const line of outp.split('\n')) {
    const m = /^(user\.[^=]+)=(.*)$/.exec(line);
    if (m) x[m[1]!] = m[2]!;
  }
  return Object.keys(x).length ? x : undefined;
}

export function snapshotTree(root: string, opts: { xattrs?: boolean; skip?: (rel: string) => boolean } = {}): Record<string, NodeSnap> {
  const out: Record<string, NodeSnap> = {};
  const walk = (rel: string) => {
    const abs = rel ? join(root, rel) : root;
    const st = lstatSync(abs);
    const type = st.isDirectory()
      ? 'dir'
      : st.isFile()
        ? 'file'
        : st.isSymbolicLink()
          ? 'symlink'
          : st.isCharacterDevice()
            ? 'char'
            : st.isBlockDevice()
              ? 'block'
              : st.isFIFO()
                ? 'fifo'
                : 'other';
    const n: NodeSnap = { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    if (type === 'file') {
      n.size = st.size;
      n.mtime = Math.floor(st.mtimeMs / 1000);
      n.sha = createHash('sha256').update(readFileSync(abs)).digest('hex');
    }
    if (type === 'symlink') n.link = readlinkSync(abs);
    if (type === 'char' || type === 'block') n.rdev = st.rdev;
    if (opts.xattrs !== false && type !== 'symlink') {
      const x = userXattrs(abs);
      if (x) n.xattrs = x;
    }
    out[rel || '.'] = n;
    if (type === 'dir')
      for (const name of readdirSync(abs).sort()) {
        const r = rel ? `${rel}/${name}` : name;
        if (opts.skip?.(r)) continue;
        walk(r);
      }
  };
  walk('');
  return out;
}

/** Hardlink groups: sets of paths sharing an inode (only files with nlink > 1). */
export function hardlinkGroups(root: string): string[][] {
  const byIno = new Map<string, string[]>();
  const walk = (rel: string) => {
    const abs = rel ? join(root, rel) : root;
    const st = lstatSync(abs);
    if (st.isFile() && st.nlink > 1) byIno.set(`${st.ino}`, [...(byIno.get(`${st.ino}`) ?? []), rel]);
    if (st.isDirectory()) for (const name of readdirSync(abs).sort()) walk(rel ? `${rel}/${name}` : name);
  };
  walk('');
  return [...byIno.values()].map((g) => g.sort()).sort((a, b) => (a[0]! < b[0]! ? -1 : 1));
}
