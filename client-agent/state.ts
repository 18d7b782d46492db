/**
 * What the agent remembers: pushes sent (with the server's push id, so one is
 * never sent twice), refusals, the server host key (trust on first use), the
 * last commit each boot chain produced, and every path pushed since boot
 * (commit.ts needs it to delete, in a new layer, files an earlier layer added).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileDurableSync as writeFileDurable } from '../protocol/durable.ts';

export interface PushRecord {
  spoolId: string;
  pushId: string;
  profile: string;
  parent: string;
  bootKey: string;
  /** The idempotency key the push was sent with (absent in records of older agents). */
  pushKey?: string;
  message: string;
  sentAt: string;
  bytes: number;
  /** Last status the server gave: queued | baking | committed | rejected. */
  status?: string;
  commit?: string;
  branch?: string;
  why?: string;
}

export interface FailedRecord {
  spoolId: string;
  profile: string;
  message: string;
  reason: string;
  at: string;
}

export interface AgentState {
  version: 1;
  pushes: PushRecord[];
  failed: FailedRecord[];
  /** "host:port" -> base64 of the server's host key. */
  hostKeys: Record<string, string>;
}

const STATE_FILE = 'state.json';
const PATHS_FILE = 'pushed-paths.json';

export function loadState(stateDir: string): AgentState {
  const path = join(stateDir, STATE_FILE);
  if (!existsSync(path)) return { version: 1, pushes: [], failed: [], hostKeys: {} };
  const s = JSON.parse(readFileSync(path, 'utf8')) as Partial<AgentState>;
  return { version: 1, pushes: s.pushes ?? [], failed: s.failed ?? [], hostKeys: s.hostKeys ?? {} };
}

export function saveState(stateDir: string, state: AgentState): void {
  writeFileDurable(join(stateDir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
}

/** Re-reads, changes and writes the state (callers hold the send lock). */
export function updateState(stateDir: string, change: (s: AgentState) => void): AgentState {
  const s = loadState(stateDir);
  change(s);
  saveState(stateDir, s);
  return s;
}

export interface PushedPaths {
  bootKey: string;
  paths: string[];
  /** Fingerprint of the last snapshot committed, to skip commits that change nothing. */
  fingerprint?: string;
}

export function loadPushedPaths(stateDir: string, bootKey: string): PushedPaths {
  const path = join(stateDir, PATHS_FILE);
  if (existsSync(path)) {
    const p = JSON.parse(readFileSync(path, 'utf8')) as PushedPaths;
    if (p.bootKey === bootKey) return p;
  }
  return { bootKey, paths: [] };
}

export function savePushedPaths(stateDir: string, p: PushedPaths): void {
  writeFileDurable(join(stateDir, PATHS_FILE), `${JSON.stringify(p)}\n`);
}

/** One boot of one commit: the upper dir is relative to this. */
export function bootKeyOf(bootCommit: string, bootIdFile = '/proc/sys/kernel/random/boot_id'): string {
  let bootId = 'unknown-boot';
  try {
    bootId = readFileSync(bootIdFile, 'utf8').trim();
  } catch {
    /* not Linux: one key per commit */
  }
  return `${bootId}:${bootCommit}`;
}

/** The newest commit a boot chain's pushes produced, if any. */
export function tipOf(state: AgentState, bootKey: string): string | undefined {
  for (let i = state.pushes.length - 1; i >= 0; i--) {
    const p = state.pushes[i]!;
    if (p.bootKey === bootKey && p.status === 'committed' && p.commit) return p.commit;
  }
  return undefined;
}
