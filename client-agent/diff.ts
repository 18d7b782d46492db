/**
 * `diff`: what a commit would contain, without reading file contents: added,
 * changed (the path exists in a lower layer), deleted (whiteouts, including
 * the ones commit.ts synthesizes), opaque (replaced) directories, and size.
 */
import { lstatSync, readdirSync, readFileSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import type { AgentConfig } from './config.ts';
import { excluderFor } from './commit.ts';
import { isWhiteout } from './snapshot.ts';
import { readTreeXattrs, type Xattrs } from './xattrs.ts';
import { bootKeyOf, loadPushedPaths } from './state.ts';
import { isOpaqueMark } from '../protocol/overlay.ts';

export interface DiffResult {
  added: string[];
  changed: string[];
  deleted: string[];
  /** Directories that replace (hide) the lower ones. */
  opaque: string[];
  /** Bytes of regular file data (each hardlinked inode once). */
  bytes: number;
  /** False when the lower layers were not found: then "added" also holds changed paths. */
  lowerKnown: boolean;
}

/** Decodes mountinfo's octal escapes (\040 for space ...). */
const unescapeMount = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The overlay's lower dirs, from a mountinfo text, for the overlay whose upperdir is `upper` (pure). */
export function lowerDirsFromMountinfo(mountinfo: string, upper: string): string[] | null {
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const [fstype, , opts] = line.slice(sep + 3).split(' ');
    if (fstype !== 'overlay' || !opts) continue;
    const options = unescapeMount(opts).split(/,(?=[a-z_]+(?:=|,|$))/);
    const get = (k: string) => options.find((o) => o.startsWith(`${k}=`))?.slice(k.length + 1);
    if (get('upperdir') !== upper.replace(/\/+$/, '')) continue;
    const lower = get('lowerdir');
    if (!lower) return null;
    return lower.split(/(?<!\\):/).map((d) => d.replace(/\\:/g, ':'));
  }
  return null;
}

function findLower(cfg: AgentConfig): string[] | null {
  if (cfg.lower) return cfg.lower;
  try {
    return lowerDirsFromMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'), cfg.upper);
  } catch {
    return null;
  }
}

const hasOpaque = (xs: Xattrs | undefined) => !!xs?.some(([n, v]) => isOpaqueMark(n, v));

export async function computeDiff(cfg: AgentConfig): Promise<DiffResult> {
  const exclude = excluderFor(cfg);
  const lower = findLower(cfg);
  const xattrs = cfg.xattrs ? await readTreeXattrs(cfg.upper) : new Map<string, Xattrs>();
  const inLower = (rel: string) =>
    !!lower?.some((d) => {
      try {
        lstatSync(join(d, rel));
        return true;
      } catch {
        return false;
      }
    });
  const r: DiffResult = { added: [], changed: [], deleted: [], opaque: [], bytes: 0, lowerKnown: lower !== null };
  const seenInodes = new Set<string>();
  const present = new Set<string>();
  const presentDirs = new Set<string>(['']);

  const walk = (rel: string) => {
    const abs = rel ? join(cfg.upper, rel) : cfg.upper;
    let st: BigIntStats;
    try {
      st = lstatSync(abs, { bigint: true });
    } catch {
      return;
    }
    if (rel) present.add(rel);
    if (st.isDirectory()) {
      presentDirs.add(rel);
      if (rel) {
        if (hasOpaque(xattrs.get(rel))) r.opaque.push(rel);
        else if (!inLower(rel)) r.added.push(`${rel}/`);
      }
      for (const name of readdirSync(abs).sort()) {
        const child = rel ? `${rel}/${name}` : name;
        if (!exclude(child)) walk(child);
      }
      return;
    }
    if (isWhiteout(st)) {
      r.deleted.push(rel);
      return;
    }
    if (st.isFile()) {
      const key = `${st.dev}:${st.ino}`;
      if (!seenInodes.has(key)) r.bytes += Number(st.size);
      seenInodes.add(key);
    }
    (inLower(rel) ? r.changed : r.added).push(rel);
  };
  walk('');

  if (cfg.bootCommit) {
    for (const p of loadPushedPaths(cfg.stateDir, bootKeyOf(cfg.bootCommit)).paths) {
      const slash = p.lastIndexOf('/');
      if (!present.has(p) && !exclude(p) && presentDirs.has(slash < 0 ? '' : p.slice(0, slash))) r.deleted.push(p);
    }
  }
  r.deleted.sort();
  return r;
}
