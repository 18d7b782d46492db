/**
 * What a booting client gets: the decision is pure (planBoot, over plain
 * data the store gathers in bootFacts); the HTTP route only renders the plan
 * as an iPXE or GRUB script and records the boot.
 */
import { matchAssignment } from './assignments.ts';
import type { StoreCore } from './core.ts';
import { StrataError } from './errors.ts';
import { getProfile } from './profiles.ts';
import { getCommit, resolve } from './revisions.ts';
import type { Assignment, BlobRef, CommitId, Profile } from './types.ts';

/** What the store knows about a booting client, as plain data. */
export interface BootFacts {
  mac: string | null;
  ip: string | null;
  /** The base URL the client reaches this server at (goes on the kernel command line). */
  serverUrl: string;
  /** The matching assignment and what it resolves to now; null when none matches or its profile has no commit. */
  hit: {
    assignment: Assignment;
    profile: Profile;
    commit: CommitId;
    kernel: BlobRef | null;
    initrd: BlobRef | null;
  } | null;
  /** The client's boot health (only a client with a MAC has one); null: no fallback applies. */
  health?: HealthFacts | null;
}

/** What boot health the decision needs, as plain data (store/boot-health.ts gathers it). */
export interface HealthFacts {
  /** Failed boots in a row of the commit the assignment names now, on this client. */
  failures: number;
  /** Failed boots in a row after which the client is held back. */
  maxFailures: number;
  /** The client's last commit that came up healthy, when the store still has it. */
  lastGood: { commit: CommitId; profile: string; kernel: BlobRef | null; initrd: BlobRef | null } | null;
}

export type BootPlan =
  /** Nothing to boot now: say why, and ask again later. */
  | { kind: 'retry'; why: string }
  | {
      kind: 'boot';
      commit: CommitId;
      profile: string;
      kernel: string;
      initrd: string | null;
      args: string[];
      banner: string;
      /** The lease to record (only a client with a MAC can be told apart). */
      lease: { mac: string; ip: string; commit: CommitId; profile: string; boot: true; assignment: string } | null;
      /** Set when the client is served its last good commit instead of the one its assignment names, and why. */
      heldBack?: { commit: CommitId; failures: number; reason: string } | null;
    };

export function splitArgs(s: string | null | undefined): string[] {
  return (s ?? '').split(/\s+/).filter((w) => w.length > 0);
}

export function bootArgs(p: {
  serverUrl: string;
  commit: string;
  profile: string;
  profileCmdline: string;
  assignmentCmdline: string;
}): string[] {
  return [
    `strata.server=${p.serverUrl}`,
    `strata.commit=${p.commit}`,
    `strata.profile=${p.profile}`,
    ...splitArgs(p.profileCmdline),
    ...splitArgs(p.assignmentCmdline),
  ];
}

/** The decision: boot which commit with which kernel and command line, or retry and why. */
export function planBoot(f: BootFacts): BootPlan {
  const who = `${f.mac ?? 'no MAC'} ${f.ip ?? 'no IP'}`;
  const hit = f.hit;
  if (!hit)
    return {
      kind: 'retry',
      why: `no assignment matches this client (${who}) and there is no default; run: strata assign ${f.mac ?? f.ip ?? 'default'} PROFILE`,
    };
  const held = holdBack(f);
  const target = held ? held.lastGood : hit;
  // A commit carries its own kernel and initrd; older ones fall back to the profile's.
  const kernel = target.kernel ?? hit.profile.kernel;
  const initrd = target.initrd ?? hit.profile.initrd;
  if (!kernel)
    return {
      kind: 'retry',
      why: `profile ${hit.profile.name} has no kernel; import one with strata import ${hit.profile.name} SOURCE --kernel F --initrd F`,
    };
  const heldBack = held ? { commit: hit.commit, failures: held.failures, reason: held.reason } : null;
  return {
    kind: 'boot',
    commit: target.commit,
    profile: hit.profile.name,
    kernel: kernel.digest,
    initrd: initrd?.digest ?? null,
    args: [
      ...bootArgs({
        serverUrl: f.serverUrl,
        commit: target.commit,
        profile: hit.profile.name,
        profileCmdline: hit.profile.cmdline,
        assignmentCmdline: hit.assignment.cmdline,
      }),
      // A client known by MAC reports its boot's health (initrd-hooks/lib/boot-health.sh); strata.health=off anywhere wins.
      ...(f.mac ? ['strata.health'] : []),
    ],
    banner: held
      ? `booting ${hit.profile.name} at its last good ${target.commit.slice(0, 12)}: ${hit.commit.slice(0, 12)} failed ${held.failures} times (${who})`
      : `booting ${hit.profile.name} at ${hit.commit.slice(0, 12)} (${who})`,
    lease: f.mac
      ? { mac: f.mac, ip: f.ip ?? '', commit: target.commit, profile: hit.profile.name, boot: true, assignment: hit.assignment.match }
      : null,
    heldBack,
  };
}

/**
 * Whether the client is held back: the commit it would get has failed to come
 * up healthy maxFailures times in a row on it, and it has a different last
 * good commit of the same profile to fall back to. Without one there is
 * nothing better to boot, so the commit is tried again.
 */
export function holdBack(f: BootFacts): { lastGood: NonNullable<HealthFacts['lastGood']>; failures: number; reason: string } | null {
  const h = f.health;
  const hit = f.hit;
  if (!h || !hit || !f.mac || h.failures < h.maxFailures) return null;
  const lg = h.lastGood;
  if (!lg || lg.commit === hit.commit || lg.profile !== hit.profile.name) return null;
  return {
    lastGood: lg,
    failures: h.failures,
    reason: `commit ${hit.commit.slice(0, 12)} failed to come up healthy ${h.failures} times in a row on ${f.mac}; serving its last good commit ${lg.commit.slice(0, 12)} until the profile moves on or an admin runs: strata clients clear ${f.mac}`,
  };
}

/** The assignment, profile and exact commit a booting client gets (resolved now, so the boot is pinned). */
export function matchClient(
  core: StoreCore,
  mac: string | null,
  ip: string | null,
): { assignment: Assignment; profile: Profile; commit: CommitId } | null {
  const a = matchAssignment(core.t.assignments.all(), mac, ip);
  if (!a) return null;
  const profile = getProfile(core, a.profile);
  const commit = a.pin ? resolve(core, a.pin) : profile.head;
  if (!commit) return null;
  return { assignment: a, profile, commit };
}

/** Gathers the facts planBoot decides on. */
export function bootFacts(core: StoreCore, mac: string | null, ip: string | null, serverUrl: string): BootFacts {
  const m = matchClient(core, mac, ip);
  if (!m) return { mac, ip, serverUrl, hit: null };
  const c = getCommit(core, m.commit);
  const health = mac ? healthFacts(core, mac, m.commit) : null;
  return { mac, ip, serverUrl, hit: { ...m, kernel: c.manifest.kernel, initrd: c.manifest.initrd }, health };
}

/** MAC's boot health as to COMMIT; the last good commit is looked up only when it may be needed. */
function healthFacts(core: StoreCore, mac: string, commit: CommitId): HealthFacts {
  const maxFailures = core.config.healthMaxFailures;
  const failures = core.t.bootHealth.failures(mac).find((f) => f.commit === commit)?.count ?? 0;
  const lg = failures >= maxFailures ? core.t.bootHealth.get(mac)?.lastGood?.commit : undefined;
  let lastGood: HealthFacts['lastGood'] = null;
  if (lg) {
    try {
      const c = getCommit(core, lg);
      lastGood = { commit: c.id, profile: c.profile, kernel: c.manifest.kernel, initrd: c.manifest.initrd };
    } catch (e) {
      // gc removed it: there is nothing to fall back to.
      if (!(e instanceof StrataError)) throw e;
    }
  }
  return { failures, maxFailures, lastGood };
}
