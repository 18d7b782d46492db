/** Assignments (which client boots which profile) and what clients reported (leases). */
import { normalizeMac, parseMatch } from './assignments.ts';
import type { StoreCore } from './core.ts';
import { StrataError } from './errors.ts';
import { getProfile } from './profiles.ts';
import { resolve } from './revisions.ts';
import type { Assignment } from './types.ts';

export function assign(core: StoreCore, match: string, target: string, opts: { cmdline?: string } = {}): Assignment {
  const m = parseMatch(match);
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
}
