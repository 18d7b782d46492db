/**
 * What a booting client gets: the decision is pure (planBoot, over plain
 * data the store gathers in bootFacts); the HTTP route only renders the plan
 * as an iPXE or GRUB script and records the boot.
 */
import { matchAssignment } from './assignments.ts';
import type { StoreCore } from './core.ts';
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
  // A commit carries its own kernel and initrd; older ones fall back to the profile's.
  const kernel = hit.kernel ?? hit.profile.kernel;
  const initrd = hit.initrd ?? hit.profile.initrd;
  if (!kernel)
    return {
      kind: 'retry',
      why: `profile ${hit.profile.name} has no kernel; import one with strata import ${hit.profile.name} SOURCE --kernel F --initrd F`,
    };
  return {
    kind: 'boot',
    commit: hit.commit,
    profile: hit.profile.name,
    kernel: kernel.digest,
    initrd: initrd?.digest ?? null,
    args: bootArgs({
      serverUrl: f.serverUrl,
      commit: hit.commit,
      profile: hit.profile.name,
      profileCmdline: hit.profile.cmdline,
      assignmentCmdline: hit.assignment.cmdline,
    }),
    banner: `booting ${hit.profile.name} at ${hit.commit.slice(0, 12)} (${who})`,
    lease: f.mac
      ? { mac: f.mac, ip: f.ip ?? '', commit: hit.commit, profile: hit.profile.name, boot: true, assignment: hit.assignment.match }
      : null,
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
  return { mac, ip, serverUrl, hit: { ...m, kernel: c.manifest.kernel, initrd: c.manifest.initrd } };
}
