/**
 * Agent configuration: defaults < config file (/etc/strata/agent.json or
 * $STRATA_AGENT_CONFIG or --config) < CLI flags. The kernel command line and
 * /run/strata/commit (written by the initramfs) fill in what the booted system
 * already knows: the server, the profile and the booted commit.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { StrataError } from '../store/errors.ts';
import { hostOfServer, parseCmdline, readCmdline, type StrataCmdline } from './cmdline.ts';

export interface AgentConfig {
  /** The overlay's upper directory (what a commit snapshots). */
  upper: string;
  /** Agent state (push records, pushed paths, host key); outside the upper dir. */
  stateDir: string;
  /** Archives waiting to be sent; on the backup disk when there is one. */
  spoolDir: string;
  backupDir?: string;
  /** strata.server, e.g. http://10.0.0.1:8080; the SSH host defaults to its host. */
  server?: string;
  sshHost?: string;
  sshPort: number;
  sshUser: string;
  /** ed25519 private key, OpenSSH format. */
  key: string;
  /** Pinned server host key ("ssh-ed25519 AAAA..."); without it the first key seen is remembered (TOFU). */
  hostKey?: string;
  profile?: string;
  /** The commit the client booted: --parent, config, /run/strata/commit, strata.commit. */
  bootCommit?: string;
  zstdLevel: number;
  zstdThreads: number;
  excludes?: string[];
  extraExcludes: string[];
  includeHostKeys: boolean;
  /** Watch mode: commit after changes have been quiet for this long. */
  quietMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** How many times a file that changes while being read is re-read before the commit is refused. */
  unstableRetries: number;
  /** Lower directories of the overlay, for `diff` (added vs changed); found in mountinfo when absent. */
  lower?: string[];
  /** Read xattrs with getfattr; turning it off loses opaque dirs: only for systems without the attr package. */
  xattrs: boolean;
}

export interface ConfigFlags {
  config?: string;
  server?: string;
  sshPort?: string | number;
  key?: string;
  upper?: string;
  stateDir?: string;
  spoolDir?: string;
  cmdline?: string;
  parent?: string;
  profile?: string;
  level?: string | number;
  quiet?: string | number;
}

export interface ConfigSources {
  env?: NodeJS.ProcessEnv;
  /** Defaults to /proc/cmdline. */
  cmdlineFile?: string;
  /** Defaults to /run/strata/commit. */
  commitFile?: string;
  /** Where the initramfs leaves the backup disk mounted; defaults to /run/strata/backup. */
  backupMount?: string;
}

export const DEFAULT_CONFIG_FILE = '/etc/strata/agent.json';

const DEFAULTS = {
  upper: '/.rw/upper',
  sshPort: 2222,
  sshUser: 'strata',
  key: '/etc/strata/agent_key',
  zstdLevel: 3,
  zstdThreads: 0,
  extraExcludes: [] as string[],
  includeHostKeys: false,
  quietMs: 30_000,
  retryBaseMs: 1_000,
  retryMaxMs: 300_000,
  unstableRetries: 3,
  xattrs: true,
};

function readConfigFile(path: string, required: boolean): Partial<AgentConfig> {
  if (!existsSync(path)) {
    if (required) throw new StrataError('E_BAD_ARGUMENT', `config file ${path} does not exist; fix --config or STRATA_AGENT_CONFIG`);
    return {};
  }
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
    return parsed as Partial<AgentConfig>;
  } catch (e) {
    throw new StrataError('E_BAD_ARGUMENT', `config file ${path} is not valid JSON (${(e as Error).message}); fix it`, {}, { cause: e });
  }
}

function int(v: string | number | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isFinite(n) || n < 0) throw new StrataError('E_BAD_ARGUMENT', `${what} must be a non-negative number, got ${String(v)}`);
  return n;
}

function readCommitFile(path: string): string | undefined {
  try {
    const id = readFileSync(path, 'utf8').trim();
    return id || undefined;
  } catch {
    return undefined;
  }
}

/** Merges all sources into one configuration (reads files; no other side effects). */
export function loadConfig(flags: ConfigFlags = {}, sources: ConfigSources = {}): AgentConfig {
  const env = sources.env ?? process.env;
  const file = flags.config ?? env.STRATA_AGENT_CONFIG ?? DEFAULT_CONFIG_FILE;
  const fromFile = readConfigFile(file, flags.config !== undefined || env.STRATA_AGENT_CONFIG !== undefined);
  const cmd: StrataCmdline = flags.cmdline !== undefined ? parseCmdline(flags.cmdline) : readCmdline(sources.cmdlineFile);

  const upper = flags.upper ?? fromFile.upper ?? DEFAULTS.upper;
  // The initramfs leaves a strata.backup disk mounted at /run/strata/backup
  // (docs/booting.md): when it is there, pushes wait on it and survive a
  // reboot, not only an agent restart.
  const backupMount = sources.backupMount ?? '/run/strata/backup';
  const detectedBackup = existsSync(backupMount) && statSync(backupMount).isDirectory() ? backupMount : undefined;
  const backupDir = fromFile.backupDir ?? detectedBackup;
  // The default state sits next to the upper dir (under /.rw, which is not
  // part of the snapshot), or on a configured backup disk; the spool goes to
  // any backup disk.
  const base = fromFile.backupDir ?? '/.rw';
  const stateDir = flags.stateDir ?? fromFile.stateDir ?? join(base, 'strata-agent');
  const spoolDir =
    flags.spoolDir ?? fromFile.spoolDir ?? (flags.stateDir ? join(flags.stateDir, 'spool') : join(backupDir ?? '/.rw', 'strata-spool'));
  const server = flags.server ?? fromFile.server ?? cmd.server;
  const sshHost = flags.server ? hostOfServer(flags.server) : (fromFile.sshHost ?? (server ? hostOfServer(server) : undefined));
  const commitFile = sources.commitFile ?? '/run/strata/commit';
  const bootCommit =
    flags.parent ?? fromFile.bootCommit ?? (flags.cmdline !== undefined ? undefined : readCommitFile(commitFile)) ?? cmd.commit;

  const cfg: AgentConfig = {
    ...DEFAULTS,
    ...fromFile,
    upper,
    stateDir,
    spoolDir,
    server,
    sshHost,
    sshPort: int(flags.sshPort, '--ssh-port') ?? fromFile.sshPort ?? DEFAULTS.sshPort,
    key: flags.key ?? fromFile.key ?? DEFAULTS.key,
    profile: flags.profile ?? fromFile.profile ?? cmd.profile,
    bootCommit,
    zstdLevel: int(flags.level, '--level') ?? fromFile.zstdLevel ?? DEFAULTS.zstdLevel,
    quietMs: flags.quiet !== undefined ? Math.round(int(flags.quiet, '--quiet')! * 1000) : (fromFile.quietMs ?? DEFAULTS.quietMs),
  };
  if (backupDir !== undefined) cfg.backupDir = backupDir;
  if (cfg.zstdLevel < 1 || cfg.zstdLevel > 19) throw new StrataError('E_BAD_ARGUMENT', `zstd level must be 1..19, got ${cfg.zstdLevel}`);
  return cfg;
}

/** The agent's own files, which must never be committed. */
export function agentPaths(cfg: AgentConfig): string[] {
  return [cfg.key, cfg.stateDir, cfg.spoolDir];
}

export function requireSsh(cfg: AgentConfig): { host: string; port: number } {
  if (!cfg.sshHost) {
    throw new StrataError(
      'E_BAD_ARGUMENT',
      'no server known: boot with strata.server=http://HOST:PORT, or pass --server HOST, or set "server" in the agent config',
    );
  }
  return { host: cfg.sshHost, port: cfg.sshPort };
}
