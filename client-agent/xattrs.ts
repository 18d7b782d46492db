/**
 * Extended attributes without a native module: one `getfattr -R` run over the
 * upper dir (attr package). It prints only files that have xattrs, so a whole
 * tree costs one process instead of one per directory. Overlay semantics live
 * in xattrs: trusted.overlay.opaque marks a directory that hides the lower
 * layers, trusted.overlay.redirect a renamed directory.
 *
 * busybox has no getfattr: a client without the attr package must install it
 * (or set "xattrs": false and accept that opaque dirs are lost).
 */
import { spawn } from 'node:child_process';
import { StrataError } from '../store/errors.ts';
import { METACOPY_XATTR, MOUNT_BOOKKEEPING_XATTRS } from '../protocol/overlay.ts';

export type Xattrs = Array<[name: string, value: Buffer]>;

/** Decodes getfattr's escaping of names (\ooo octal for control chars, backslash, non-ASCII bytes). */
export function unescapeGetfattr(s: string): string {
  if (!s.includes('\\')) return s;
  const bytes: number[] = [];
  const raw = Buffer.from(s, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString('latin1'))) {
      bytes.push(parseInt(raw.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else {
      bytes.push(raw[i]!);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

function decodeValue(v: string): Buffer {
  if (v.startsWith('0s')) return Buffer.from(v.slice(2), 'base64');
  if (v.startsWith('0x')) return Buffer.from(v.slice(2), 'hex');
  if (v.startsWith('"') && v.endsWith('"')) return Buffer.from(unescapeGetfattr(v.slice(1, -1)), 'utf8');
  return Buffer.from(v, 'utf8');
}

/** Parses `getfattr -d -m - -e base64 --absolute-names` output into absolute path -> xattrs. */
export function parseGetfattr(out: string): Map<string, Xattrs> {
  const map = new Map<string, Xattrs>();
  let current: Xattrs | null = null;
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = [];
      map.set(unescapeGetfattr(line.slice('# file: '.length)), current);
    } else if (line && current) {
      const eq = line.indexOf('=');
      const name = unescapeGetfattr(eq < 0 ? line : line.slice(0, eq));
      current.push([name, eq < 0 ? Buffer.alloc(0) : decodeValue(line.slice(eq + 1))]);
    }
  }
  return map;
}

/** All xattrs under `dir` (inclusive), keyed by path relative to dir ('' for dir itself). */
export async function readTreeXattrs(dir: string): Promise<Map<string, Xattrs>> {
  const root = dir.replace(/\/+$/, '') || '/';
  const child = spawn('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'base64', '--absolute-names', '--', root], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => {
    if (err.length < 4096) err += b.toString();
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') {
        reject(
          new StrataError(
            'E_BAD_SOURCE',
            'getfattr is not installed: install the attr package (busybox has no getfattr), or set "xattrs": false in the agent config to commit without xattrs and opaque dirs',
          ),
        );
      } else reject(e);
    });
    child.on('close', resolve);
  });
  // getfattr exits 1 when a file vanished during its walk; that file simply
  // is not there any more. Anything that printed nothing at all is a failure.
  if (code !== 0 && out.length === 0 && err.trim()) {
    throw new StrataError('E_BAD_SOURCE', `getfattr failed on ${root}: ${err.trim()}`);
  }
  const byAbs = parseGetfattr(Buffer.concat(out).toString('utf8'));
  const rel = new Map<string, Xattrs>();
  const prefix = root === '/' ? '/' : `${root}/`;
  for (const [abs, xs] of byAbs) {
    if (abs === root) rel.set('', xs);
    else if (abs.startsWith(prefix)) rel.set(abs.slice(prefix.length), xs);
  }
  return rel;
}

/** overlayfs bookkeeping that refers to this mount's inodes/file handles and means nothing in a layer. */
const DROPPED_OVERLAY = new Set(MOUNT_BOOKKEEPING_XATTRS);

export interface XattrDecision {
  keep: Xattrs;
  /** Names dropped with a reason worth telling the user. */
  dropped: string[];
  metacopy: boolean;
}

/**
 * Which xattrs go into the tar (pure). squashfs stores only user., trusted. and
 * security. (POSIX ACLs in system.* are dropped by tar2sqfs anyway, so drop
 * them here and say so). A metacopy upper file has no data of its own: refuse.
 */
export function selectXattrs(xs: Xattrs): XattrDecision {
  const keep: Xattrs = [];
  const dropped: string[] = [];
  let metacopy = false;
  for (const [name, value] of xs) {
    if (name === METACOPY_XATTR) metacopy = true;
    else if (DROPPED_OVERLAY.has(name)) continue;
    else if (name.startsWith('user.') || name.startsWith('trusted.') || name.startsWith('security.')) keep.push([name, value]);
    else dropped.push(name);
  }
  return { keep, dropped, metacopy };
}
