/** Branches, tags and the reflog: what names point where, and how they moved. */
import { inTransaction, type StoreCore } from './core.ts';
import { StrataError } from './errors.ts';
import { getProfile } from './profiles.ts';
import { getCommit, resolve } from './revisions.ts';
import type { CommitId, Profile, Ref, ReflogEntry } from './types.ts';

const REF_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(\/[A-Za-z0-9][A-Za-z0-9._-]{0,63})*$/;

/** The profile a branch belongs to: `lab` and `lab/push-x` both belong to `lab`. */
export const profileOfRef = (ref: string): string => ref.split('/')[0]!;

export function listRefs(core: StoreCore): Ref[] {
  return core.t.refs.all();
}

/**
 * A branch and what it belongs to. History operations take a branch name:
 * a profile's own branch (`lab`) or one of its side branches (`lab/feature`).
 */
export function branchInfo(core: StoreCore, ref: string): { profile: Profile; ref: string; head: CommitId } {
  const r = core.t.refs.get(ref);
  if (!r) {
    getProfile(core, ref);
    throw new StrataError('E_PROFILE_NOT_FOUND', `profile ${ref} has no commits`);
  }
  if (r.type !== 'branch') throw new StrataError('E_BAD_ARGUMENT', `${ref} is a tag; tags do not move (use a branch or a profile)`);
  return { profile: getProfile(core, r.profile), ref, head: r.commit };
}

function assertRefName(name: string, what: 'tag' | 'branch'): void {
  if (!REF_RE.test(name) || /^[0-9a-f]{7,64}$/.test(name))
    throw new StrataError('E_BAD_ARGUMENT', `"${name}" is not a usable ${what} name`);
}

export function tag(core: StoreCore, name: string, rev: string): Ref {
  assertRefName(name, 'tag');
  const id = resolve(core, rev);
  const c = getCommit(core, id);
  inTransaction(core, () => {
    if (core.t.refs.get(name)) throw new StrataError('E_REF_EXISTS', `a tag or branch named "${name}" already exists`);
    core.t.refs.move(name, 'tag', id, c.profile, 'tag', `tag ${name}`);
  });
  return { name, type: 'tag', commit: id, profile: c.profile };
}

/** A new branch. `P/NAME` belongs to profile P; a bare NAME becomes a new profile with the source's settings (kernel pin included). */
export function branch(core: StoreCore, name: string, rev: string): Ref {
  assertRefName(name, 'branch');
  const id = resolve(core, rev);
  const src = getCommit(core, id);
  const profile = profileOfRef(name);
  inTransaction(core, () => {
    if (core.t.refs.get(name)) throw new StrataError('E_REF_EXISTS', `a tag or branch named "${name}" already exists`);
    if (!core.t.profiles.get(profile)) {
      if (name.includes('/')) throw new StrataError('E_PROFILE_NOT_FOUND', `no profile "${profile}" for branch ${name}`);
      // The source's profile may have been removed since (strata profile rm): its marked row still has the settings.
      const sp = core.t.profiles.get(src.profile) ?? core.t.profiles.removed(src.profile);
      if (!sp) throw new StrataError('E_PROFILE_NOT_FOUND', `the profile of ${id.slice(0, 12)} (${src.profile}) no longer exists`);
      core.t.profiles.insert({ ...sp, name, createdAt: Date.now() });
      // The kernel pin is a profile setting too: the new profile boots what its source would.
      const pin = core.t.boot.pin(src.profile);
      if (pin !== null) core.t.boot.setPin(name, pin);
    }
    core.t.refs.move(name, 'branch', id, profile, 'branch', `branch ${name} at ${id.slice(0, 12)}`);
  });
  return { name, type: 'branch', commit: id, profile };
}

export function reflog(core: StoreCore, ref: string): ReflogEntry[] {
  const rows = core.t.refs.reflog(ref);
  if (!rows.length && !core.t.refs.get(ref)) throw new StrataError('E_REF_NOT_FOUND', `no branch, tag or profile named "${ref}"`);
  return rows;
}
