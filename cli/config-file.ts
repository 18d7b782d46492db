/**
 * The service config file (/etc/strata/strata.toml): what `strata serve`
 * listens on, where the data lives, limits and gc times. TOML because admins
 * edit it by hand and comment it; parsed by smol-toml, then checked against
 * SCHEMA below so every mistake is reported as FILE:LINE: KEY: what is wrong.
 * Secrets never go here: tokens live in the data directory's database.
 *
 * Pure over the file's text (reading the file is config-load.ts's job).
 */
import { isIP } from 'node:net';
import { parse, TomlError } from 'smol-toml';
import { StrataError } from '../store/errors.ts';
import type { StoreConfig } from '../store/types.ts';
import { parseHostPort } from '../server/listen-address.ts';
import type { ServerLimits } from '../server/limits.ts';

/** What the config file sets, in the server's terms; absent keys stay absent (flags and defaults fill them). */
export interface ServiceSettings {
  dataDir?: string;
  publicUrl?: string;
  http?: string;
  httpWorkers?: number;
  ssh?: string;
  pxeInterface?: string;
  pxeSecureBoot?: boolean;
  storeConfig: Partial<StoreConfig>;
  /** Connection limits and timeouts ([ssh] and [http] keys); absent keys keep their defaults. */
  serverLimits?: Partial<ServerLimits>;
}

export interface ConfigProblem {
  line: number;
  key: string;
  message: string;
}

type Check = (v: unknown) => { value?: unknown; error?: string };

interface KeySpec {
  check: Check;
  /** Shown by `strata config check --keys` and in docs/install.md. */
  help: string;
  apply: (s: ServiceSettings, v: unknown) => void;
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};
const DURATIONS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

const wholeNumber =
  (min: number, max: number): Check =>
  (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
      ? { value: v }
      : { error: `must be a whole number from ${min} to ${max}, not ${show(v)}` };

const size: Check = (v) => {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return { value: v };
  const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v) : null;
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (m && unit !== undefined && Number(m[1]) > 0) return { value: Math.floor(Number(m[1]) * unit) };
  return { error: `must be a size in bytes (a number, or a string like "4GiB" or "512MiB"), not ${show(v)}` };
};

const duration: Check = (v) => {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return { value: v * 1000 };
  const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$/.exec(v) : null;
  if (m) return { value: Math.round(Number(m[1]) * DURATIONS[m[2]]) };
  return { error: `must be a duration (seconds as a number, or a string like "90s", "30m", "24h", "30d"), not ${show(v)}` };
};

const address: Check = (v) => {
  if (typeof v !== 'string') return { error: `must be a "HOST:PORT" string, not ${show(v)}` };
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(v.trim());
  if (!m) return { error: `"${v}" is not a HOST:PORT address (e.g. 0.0.0.0:8080 or [::]:8080)` };
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  const hostOk = isIP(host) !== 0 || /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i.test(host);
  if (!hostOk || (m[1] !== undefined && isIP(host) !== 6)) return { error: `"${v}": "${host}" is neither an IP address nor a host name` };
  if (port < 1 || port > 65535) return { error: `"${v}": port ${port} is out of range (1 to 65535)` };
  // The server's own parser must read it the same way.
  parseHostPort(v, 'address');
  return { value: v.trim() };
};

const absolutePath: Check = (v) =>
  typeof v === 'string' && v.startsWith('/') && !v.includes('\0') ? { value: v } : { error: `must be an absolute path, not ${show(v)}` };

const url: Check = (v) => {
  if (typeof v !== 'string') return { error: `must be an http:// or https:// URL string, not ${show(v)}` };
  try {
    const u = new URL(v);
    if (u.protocol === 'http:' || u.protocol === 'https:') return { value: v };
  } catch {}
  return { error: `must be an http:// or https:// URL, not ${show(v)}` };
};

const iface: Check = (v) =>
  typeof v === 'string' && /^[A-Za-z0-9_.:@-]{1,15}$/.test(v)
    ? { value: v }
    : { error: `must be a network interface name (up to 15 letters, digits, "-", "_", "."), not ${show(v)}` };

const bool: Check = (v) => (typeof v === 'boolean' ? { value: v } : { error: `must be true or false, not ${show(v)}` });

const store =
  (k: keyof StoreConfig) =>
  (s: ServiceSettings, v: unknown): void => {
    s.storeConfig[k] = v as number;
  };

/** A size where 0 means "none" (quotas, the reserve). */
const sizeOrZero: Check = (v) => (v === 0 || v === '0' ? { value: 0 } : size(v));

const limit =
  (k: keyof ServerLimits) =>
  (s: ServiceSettings, v: unknown): void => {
    s.serverLimits = { ...s.serverLimits, [k]: v as number };
  };

/** Every key the file may hold, by its dotted path. */
export const SCHEMA: Record<string, KeySpec> = {
  data_dir: {
    check: absolutePath,
    help: 'data directory (objects, database, host key); the unit uses /var/lib/strata',
    apply: (s, v) => void (s.dataDir = v as string),
  },
  public_url: {
    check: url,
    help: 'URL clients use to reach this server (default: from each request)',
    apply: (s, v) => void (s.publicUrl = v as string),
  },
  'http.listen': {
    check: address,
    help: 'HTTP listen address HOST:PORT (default 0.0.0.0:8080)',
    apply: (s, v) => void (s.http = v as string),
  },
  'http.workers': {
    check: wholeNumber(1, 256),
    help: 'HTTP processes sharing the port (default 1)',
    apply: (s, v) => void (s.httpWorkers = v as number),
  },
  'ssh.listen': {
    check: address,
    help: 'SSH (push) listen address HOST:PORT (default 0.0.0.0:2222)',
    apply: (s, v) => void (s.ssh = v as string),
  },
  'limits.max_push_size': { check: size, help: 'largest compressed push over SSH (default "4GiB")', apply: store('maxPushBytes') },
  'limits.max_uncompressed_size': {
    check: size,
    help: 'largest archive once decompressed (default "16GiB")',
    apply: store('maxUncompressedBytes'),
  },
  'limits.max_entries': { check: wholeNumber(1, 1e9), help: 'most files in one archive (default 2000000)', apply: store('maxEntries') },
  'limits.max_metadata': {
    check: size,
    help: 'most metadata (paths, link targets, xattrs) in one archive; bounds a bake\'s memory (default "128MiB")',
    apply: store('maxMetadataBytes'),
  },
  'limits.max_bake_attempts': {
    check: wholeNumber(1, 1000),
    help: 'a push whose bake failed (or crashed the server) this many times is rejected (default 5)',
    apply: store('maxBakeAttempts'),
  },
  'limits.max_chain_length': {
    check: wholeNumber(1, 500),
    help: 'refuse commits whose chain is longer (default 128)',
    apply: store('maxChainLength'),
  },
  'limits.warn_chain_length': {
    check: wholeNumber(1, 500),
    help: 'warn from this chain length on (default 64)',
    apply: store('warnChainLength'),
  },
  'gc.lease': {
    check: duration,
    help: 'how long a client\'s booted commit is kept after its last heartbeat (default "24h")',
    apply: store('leaseMs'),
  },
  'gc.reflog_keep': { check: duration, help: 'how long reflog entries keep their commits (default "30d")', apply: store('reflogKeepMs') },
  'gc.grace': { check: duration, help: 'blobs younger than this are never collected (default "1h")', apply: store('gcGraceMs') },
  'pxe.interface': {
    check: iface,
    help: 'interface for proxyDHCP + TFTP (strata serve --pxe)',
    apply: (s, v) => void (s.pxeInterface = v as string),
  },
  'ssh.auth_timeout': {
    check: duration,
    help: 'an SSH connection must authenticate within this, else it is closed (default "30s"; 0: never)',
    apply: limit('sshAuthTimeoutMs'),
  },
  'ssh.idle_timeout': {
    check: duration,
    help: 'an authenticated SSH connection with no channel open is closed after this (default "10m"; 0: never)',
    apply: limit('sshIdleTimeoutMs'),
  },
  'ssh.max_unauthenticated': {
    check: wholeNumber(0, 1_000_000),
    help: 'SSH connections still authenticating at once; new ones over it are dropped (default 100; 0: no cap)',
    apply: limit('sshMaxUnauthenticated'),
  },
  'ssh.max_unauthenticated_per_ip': {
    check: wholeNumber(0, 1_000_000),
    help: 'of those, from one address (default 20; 0: no cap)',
    apply: limit('sshMaxUnauthenticatedPerIp'),
  },
  'ssh.max_channels': {
    check: wholeNumber(0, 10_000),
    help: 'channels open at once on one SSH connection (default 10; 0: no cap)',
    apply: limit('sshMaxChannels'),
  },
  'ssh.max_pushes_per_key': {
    check: wholeNumber(0, 10_000),
    help: 'pushes uploading at once per key (default 16; 0: no cap)',
    apply: limit('sshMaxPushesPerKey'),
  },
  'http.request_timeout': {
    check: duration,
    help: 'time to receive a whole HTTP request, body included (default "60s"; 0: none)',
    apply: limit('httpRequestTimeoutMs'),
  },
  'http.headers_timeout': {
    check: duration,
    help: 'time to receive an HTTP request\'s headers (default "20s")',
    apply: limit('httpHeadersTimeoutMs'),
  },
  'http.keep_alive_timeout': {
    check: duration,
    help: 'an idle keep-alive HTTP connection is closed after this (default "10s")',
    apply: limit('httpKeepAliveTimeoutMs'),
  },
  'http.idle_timeout': {
    check: duration,
    help: 'an HTTP connection with no traffic (one that never sends a request) is closed after this (default "60s"; 0: never)',
    apply: limit('httpIdleTimeoutMs'),
  },
  'limits.store_quota': {
    check: sizeOrZero,
    help: 'most bytes of layers plus queued pushes; pushes over it are refused (default 0: none)',
    apply: store('storeQuotaBytes'),
  },
  'limits.key_quota': {
    check: sizeOrZero,
    help: "most bytes of one key's queued pushes plus its pushes still stored (default 0: none)",
    apply: store('keyQuotaBytes'),
  },
  'limits.reserve_space': {
    check: sizeOrZero,
    help: 'free space pushes never take, kept for the database, leases and gc (default: 2% of the disk, at most "1GiB")',
    apply: store('reserveBytes'),
  },
  'pxe.secure_boot': {
    check: bool,
    help: 'UEFI machines get shim -> Debian-signed GRUB instead of iPXE (strata serve --pxe-secure-boot; docs/pxe.md)',
    apply: (s, v) => void (s.pxeSecureBoot = v as boolean),
  },
};

const TABLES = new Set(
  Object.keys(SCHEMA)
    .filter((k) => k.includes('.'))
    .map((k) => k.split('.')[0]),
);

function show(v: unknown): string {
  if (v instanceof Date) return `a date (${v.toISOString()})`;
  if (Array.isArray(v)) return 'an array';
  if (v !== null && typeof v === 'object') return 'a table';
  return typeof v === 'string' ? `"${v}"` : String(v);
}

/**
 * The line each key is written on. TOML is line-oriented: track the current
 * [table] header and note `key =` lines (dotted and quoted keys included).
 */
export function keyLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  const unquote = (k: string) => k.trim().replace(/^"(.*)"$|^'(.*)'$/, '$1$2');
  const dotted = (k: string) => k.split('.').map(unquote).join('.');
  let table = '';
  text.split(/\r?\n/).forEach((raw, i) => {
    const header = /^\s*\[\s*([^[\]]+?)\s*\]\s*(?:#.*)?$/.exec(raw);
    if (header) {
      table = dotted(header[1]);
      if (!lines.has(table)) lines.set(table, i + 1);
      return;
    }
    const kv = /^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=/.exec(raw);
    if (!kv) return;
    const key = (table ? `${table}.` : '') + dotted(kv[1]);
    if (!lines.has(key)) lines.set(key, i + 1);
  });
  return lines;
}

function lineOf(lines: Map<string, number>, key: string): number {
  for (let k = key; k; k = k.includes('.') ? k.slice(0, k.lastIndexOf('.')) : '') {
    const n = lines.get(k);
    if (n) return n;
  }
  return 1;
}

/** Checks a config file's text: the settings, or every problem found (each with its line and key). */
export function checkConfigText(text: string): { settings: ServiceSettings; problems: ConfigProblem[] } {
  const settings: ServiceSettings = { storeConfig: {} };
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof TomlError) {
      const near = keyLines(text.split(/\r?\n/).slice(0, e.line).join('\n'));
      const key = [...near.entries()].filter(([, l]) => l === e.line).map(([k]) => k)[0] ?? '';
      return { settings, problems: [{ line: e.line, key, message: `not valid TOML: ${e.message.split('\n')[0]}` }] };
    }
    throw e;
  }
  const lines = keyLines(text);
  const problems: ConfigProblem[] = [];
  const problem = (key: string, message: string) => problems.push({ line: lineOf(lines, key), key, message });
  const known = Object.keys(SCHEMA).join(', ');
  const visit = (obj: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix + k;
      const spec = SCHEMA[key];
      if (spec) {
        const r = spec.check(v);
        if (r.error !== undefined) problem(key, r.error);
        else spec.apply(settings, r.value);
      } else if (!prefix && TABLES.has(k)) {
        if (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)) visit(v as Record<string, unknown>, `${k}.`);
        else problem(key, `must be a table ([${k}]), not ${show(v)}`);
      } else if (/token|secret|password/i.test(k)) {
        problem(
          key,
          'secrets do not go in the config file: create tokens with "strata token create" (they are kept in the data directory)',
        );
      } else {
        problem(key, `unknown key (known keys: ${known})`);
      }
    }
  };
  visit(doc, '');
  problems.sort((a, b) => a.line - b.line);
  return { settings, problems };
}

/** One line per problem, the way compilers print them: FILE:LINE: KEY: message. */
export function formatProblems(file: string, problems: ConfigProblem[]): string {
  return problems.map((p) => `${file}:${p.line}: ${p.key ? `${p.key}: ` : ''}${p.message}`).join('\n');
}

/** The settings, or an E_BAD_ARGUMENT error naming every problem (exit code 2). */
export function parseConfigText(file: string, text: string): ServiceSettings {
  const { settings, problems } = checkConfigText(text);
  if (problems.length)
    throw new StrataError('E_BAD_ARGUMENT', `${file} has ${problems.length} problem(s):\n${formatProblems(file, problems)}`);
  return settings;
}
