/**
 * The kernel command line is how the initramfs tells the running system where
 * it came from: strata.server, strata.commit, strata.profile, strata.backup.
 * Parsing is pure so tests can hand in a string instead of /proc/cmdline.
 */
import { readFileSync } from 'node:fs';

export interface StrataCmdline {
  server?: string;
  commit?: string;
  profile?: string;
  backup?: string;
  upper?: string;
}

/** Splits a kernel command line (double quotes group words, like the kernel does) and keeps strata.* keys. */
export function parseCmdline(text: string): StrataCmdline {
  const out: StrataCmdline = {};
  const words = text.match(/(?:[^\s"]+|"[^"]*")+/g) ?? [];
  for (const raw of words) {
    const word = raw.replace(/"/g, '');
    const eq = word.indexOf('=');
    if (eq < 0 || !word.startsWith('strata.')) continue;
    const key = word.slice('strata.'.length, eq);
    const value = word.slice(eq + 1);
    if (key === 'server' || key === 'commit' || key === 'profile' || key === 'backup' || key === 'upper') {
      out[key] = value;
    }
  }
  return out;
}

/** Reads /proc/cmdline (or another file); a missing file is an empty command line, not an error. */
export function readCmdline(path = '/proc/cmdline'): StrataCmdline {
  try {
    return parseCmdline(readFileSync(path, 'utf8'));
  } catch {
    return {};
  }
}

/** `http://HOST:PORT/...` or `HOST[:PORT]` -> HOST (IPv6 brackets removed). */
export function hostOfServer(server: string): string {
  const withScheme = /^[a-z]+:\/\//i.test(server) ? server : `ssh://${server}`;
  try {
    return new URL(withScheme).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return server;
  }
}
