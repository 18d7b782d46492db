/** Assignments (which client boots which profile) and what clients reported (leases). */
import { normalizeMac, parseMatch } from './assignments.ts';
import type { StoreCore } from './core.ts';
import { checkCmdline } from './cmdline-rules.ts';
import { StrataError } from './errors.ts';
import { getProfile } from './profiles.ts';
import { matchClient } from './boot-plan.ts';
import { inProfileHistory, resolve } from './revisions.ts';
import type { Assignment } from './types.ts';

export function assign(core: StoreCore, match: string, target: string, opts: { cmdline?: string } = {}): Assignment {
  const m = parseMatch(match);
  checkCmdline(opts.cmdline ?? '');
  const [profile, pinRev] = target.split('@') as [string, string | undefined];
  getProfile(core, profile);
  let pin: string | null = null;
  if (pinRev !== undefined) {
    // A tag pin keeps following the tag; anything else is fixed to a commit id now.
    pin = core.t.refs.get(pinRev)?.type === 'tag' ? pinRev : resolve(core, pinRev);
  }
  const a: Assignment = { match: m.match, kind: m.kind, profile, pin, cmdline: (opts.cmdline ?? '').trim() };
  core.t.assignments.upsert(a);
  return a;
}

export function unassign(core: StoreCore, match: string): void {
  const m = parseMatch(match);
  if (!core.t.assignments.remove(m.match)) throw new StrataError('E_NOT_FOUND', `no assignment for ${m.match}`);
}

export function recordClient(
  core: StoreCore,
  c: { mac: string; ip: string; commit: string | null; profile?: string | null; boot: boolean; assignment?: string | null },
): void {
  const mac = normalizeMac(c.mac);
  if (!mac) throw new StrataError('E_BAD_ARGUMENT', `not a MAC address: ${c.mac}`);
  if (c.commit !== null && !/^[0-9a-f]{64}$/.test(c.commit))
    throw new StrataError('E_BAD_ARGUMENT', 'commit must be a full 64-hex commit id');
  core.t.clients.record({
    mac,
    ip: c.ip,
    commit: c.commit,
    profile: c.profile ?? null,
    now: Date.now(),
    boot: c.boot,
    assignment: c.assignment ?? null,
  });
  // Boots and heartbeats are unauthenticated: rows of MACs no assignment names are bounded and expire.
  core.t.clients.forgetUnknown(Date.now() - core.config.leaseMs, core.config.unknownClientsMax);
}

/**
 * Why a heartbeat from MAC (at IP) may not claim to run COMMIT, or null when
 * it may: a heartbeat is unauthenticated and its commit becomes a gc root,
 * so it may name only the commit this client was served (or last reported),
 * or a commit of the history of the profile its assignment boots.
 */
export function heartbeatRefusal(core: StoreCore, mac: string, ip: string | null, commit: string): string | null {
  if (core.t.clients.get(mac)?.commit === commit) return null;
  const m = matchClient(core, mac, ip);
  if (m && (m.commit === commit || inProfileHistory(core, m.profile.name, commit))) return null;
  return `heartbeat from ${mac} names commit ${commit.slice(0, 12)}, which this server neither served to it nor has in the history of a profile assigned to it; refused (it is not kept from gc)`;
}
