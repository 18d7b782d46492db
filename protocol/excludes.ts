/**
 * What never goes into a commit. Layers are served to anyone on the boot
 * network (PXE cannot authenticate), so per-machine secrets must stay out;
 * caches and runtime state would only bloat layers.
 *
 * Patterns are paths relative to the root (no leading '/'); `*` matches within
 * one path segment. A matching path is excluded together with everything below it.
 */
import { isAbsolute, relative } from 'node:path';

export const DEFAULT_EXCLUDES: readonly string[] = [
  'tmp',
  'var/tmp',
  'var/cache/apt/archives',
  'var/log/journal',
  'run',
  'etc/machine-id',
  'var/lib/dbus/machine-id',
  'etc/strata/agent_key',
];

/** SSH host keys identify one machine: excluded unless the config says `includeHostKeys`. */
export const HOST_KEY_EXCLUDES: readonly string[] = ['etc/ssh/ssh_host_*'];

export interface ExcludeInput {
  /** The configured list (replaces DEFAULT_EXCLUDES when given). */
  excludes?: readonly string[];
  /** Added to the list, whatever it is. */
  extraExcludes?: readonly string[];
  includeHostKeys?: boolean;
  /** Absolute paths of the agent's own files (key, spool, state). */
  agentPaths: readonly string[];
  /** The upper directory: agent paths inside it are excluded by their path relative to it too. */
  upper: string;
}

/** The full pattern list for a configuration (pure). */
export function excludePatterns(input: ExcludeInput): string[] {
  const list = [...(input.excludes ?? DEFAULT_EXCLUDES), ...(input.extraExcludes ?? [])];
  if (!input.includeHostKeys) list.push(...HOST_KEY_EXCLUDES);
  for (const p of input.agentPaths) {
    if (!isAbsolute(p)) continue;
    // The path as the running system sees it: /x/y lives at upper/x/y.
    list.push(p.replace(/^\/+/, ''));
    const rel = relative(input.upper, p);
    if (rel && !rel.startsWith('..') && !isAbsolute(rel)) list.push(rel);
  }
  return [...new Set(list.map(normalisePattern).filter((p) => p.length > 0))];
}

function normalisePattern(p: string): string {
  return p.replace(/^\.?\/+/, '').replace(/\/+$/, '');
}

function segmentRegex(seg: string): RegExp {
  const body = seg.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*');
  return new RegExp(`^${body}$`);
}

export type Excluder = (relPath: string) => boolean;

/** Builds a matcher: true when relPath (e.g. 'var/tmp/x') or one of its ancestors matches a pattern. */
export function makeExcluder(patterns: readonly string[]): Excluder {
  const compiled = patterns.map((p) => p.split('/').map(segmentRegex));
  return (relPath: string) => {
    if (relPath === '' || relPath === '.') return false;
    const segs = relPath.split('/');
    for (const pat of compiled) {
      if (pat.length > segs.length) continue;
      let ok = true;
      for (let i = 0; i < pat.length; i++) {
        if (!pat[i]!.test(segs[i]!)) {
          ok = false;
          break;
        }
      }
      if (ok) return true;
    }
    return false;
  };
}
