/**
 * Deleting branches, tags and profiles, and undoing it. A deletion is a ref
 * move to nothing, recorded in the reflog (old = the commit, new = null), so
 * gc keeps what it pointed to while that entry is young (reflogKeepMs) and
 * `strata rollback NAME` puts it back until then. A removed profile keeps
 * its row, marked, until gc drops it with the expired reflog.
 */
import { inTransaction, type StoreCore } from './core.ts';
import { StrataError } from './errors.ts';
import { getProfile } from './profiles.ts';
import { profileOfRef } from './refs.ts';
import type { CommitId, Ref } from './types.ts';

const DELETE_BRANCH = 'delete-branch';
const DELETE_TAG = 'delete-tag';
const profileRmMessage = (name: string) => `profile rm ${name}`;

function usedBy(core: StoreCore, pred: (a: { profile: string; pin: string | null }) => boolean): string[] {
  return core.t.assignments
    .all()
    .filter(pred)
    .map((a) => a.match);
}

/** `strata branch -d NAME`: a side branch (P/NAME); a profile's own branch goes with `strata profile rm`. */
export function deleteBranch(core: StoreCore, name: string): Ref {
  const r = core.t.refs.get(name);
  if (r?.type !== 'branch') throw new StrataError('E_REF_NOT_FOUND', `no branch named "${name}"`);
  if (!name.includes('/'))
    throw new StrataError(
      'E_BAD_ARGUMENT',
      `${name} is the branch of profile ${name}; remove the profile with "strata profile rm ${name}"`,
    );
  inTransaction(core, () => core.t.refs.remove(name, DELETE_BRANCH, `delete branch ${name} at ${r.commit.slice(0, 12)}`));
  return r;
}

/** `strata tag -d NAME`; refused while an assignment is pinned to the tag. */
export function deleteTag(core: StoreCore, name: string): Ref {
  const r = core.t.refs.get(name);
  if (r?.type !== 'tag') throw new StrataError('E_REF_NOT_FOUND', `no tag named "${name}"`);
  const pins = usedBy(core, (a) => a.pin === name);
  if (pins.length)
    throw new StrataError(
      'E_IN_USE',
      `tag ${name} pins the assignment(s) ${pins.join(', ')}; assign them elsewhere first (strata assign MATCH PROFILE)`,
      { assignments: pins },
    );
  inTransaction(core, () => core.t.refs.remove(name, DELETE_TAG, `delete tag ${name} at ${r.commit.slice(0, 12)}`));
  return r;
}

/**
 * `strata profile rm NAME`: its branches and tags go (each in the reflog),
 * the profile row is marked removed. Refused while an assignment boots it
 * or is pinned to one of its tags.
 */
export function removeProfile(core: StoreCore, name: string): { profile: string; refs: Ref[] } {
  getProfile(core, name);
  const refs = core.t.refs.all().filter((r) => r.profile === name || profileOfRef(r.name) === name);
  const tagNames = new Set(refs.filter((r) => r.type === 'tag').map((r) => r.name));
  const users = usedBy(core, (a) => a.profile === name || (a.pin !== null && tagNames.has(a.pin)));
  if (users.length)
    throw new StrataError(
      'E_IN_USE',
      `profile ${name} is used by the assignment(s) ${users.join(', ')}; assign them elsewhere or "strata assign --remove" them first`,
      { assignments: users },
    );
  inTransaction(core, () => {
    for (const r of refs) core.t.refs.remove(r.name, r.type === 'tag' ? DELETE_TAG : DELETE_BRANCH, profileRmMessage(name));
    core.t.profiles.setRemoved(name, Date.now());
  });
  return { profile: name, refs };
}

/** Whether NAME is a deleted branch, tag or removed profile that an undo can bring back. */
export function isRestorable(core: StoreCore, name: string): boolean {
  if (core.t.refs.get(name)) return false;
  return !!core.t.profiles.removed(name) || core.t.refs.deletions().some((e) => e.ref === name);
}

/**
 * Undoes the deletion of NAME (a branch, a tag, or a whole profile with its
 * branches and tags), recorded in the reflog as a move back. Fails once gc
 * has removed what it pointed to.
 */
export function restoreDeleted(core: StoreCore, name: string): { restored: Ref[] } {
  return inTransaction(core, () => {
    const deletions = core.t.refs.deletions();
    const removedProfile = core.t.profiles.removed(name);
    const entries = removedProfile
      ? deletions.filter((e) => e.message === profileRmMessage(name))
      : deletions.filter((e) => e.ref === name);
    if (!removedProfile && !entries.length)
      throw new StrataError('E_REF_NOT_FOUND', `nothing named "${name}" was deleted (or its undo expired; see "strata reflog ${name}")`);
    if (removedProfile) {
      if (core.t.profiles.get(name)) throw new StrataError('E_PROFILE_EXISTS', `a profile named ${name} exists again; nothing restored`);
      core.t.profiles.setRemoved(name, null);
    }
    const restored: Ref[] = [];
    for (const e of entries) {
      const id = e.old as CommitId;
      const c = core.commits.get(id);
      if (!c)
        throw new StrataError('E_COMMIT_NOT_FOUND', `${e.ref} pointed to ${id.slice(0, 12)}, which gc has removed; it cannot be restored`);
      if (core.t.refs.get(e.ref)) throw new StrataError('E_REF_EXISTS', `a ref named ${e.ref} exists again; nothing restored`);
      const type = e.action === DELETE_TAG ? 'tag' : 'branch';
      const profile = type === 'tag' ? c.profile : profileOfRef(e.ref);
      if (type === 'branch' && !core.t.profiles.get(profile))
        throw new StrataError('E_PROFILE_NOT_FOUND', `branch ${e.ref} belongs to the removed profile ${profile}; restore that first`);
      core.t.refs.move(e.ref, type, id, profile, 'restore', `restore ${type} ${e.ref} at ${id.slice(0, 12)}`);
      restored.push({ name: e.ref, type, commit: id, profile });
    }
    return { restored };
  });
}

/** Push-conflict and rebase-conflict branches (P/push-*, P/rebase-*) that have not moved for staleBranchMs. */
export function staleBranches(core: StoreCore, now = Date.now()): { name: string; commit: CommitId; lastMove: number | null }[] {
  const moves = core.t.refs.lastMoves();
  return core.t.refs
    .all()
    .filter((r) => r.type === 'branch' && /\/(push|rebase)-[^/]+$/.test(r.name))
    .map((r) => ({ name: r.name, commit: r.commit, lastMove: moves.get(r.name) ?? null }))
    .filter((b) => b.lastMove === null || b.lastMove <= now - core.config.staleBranchMs);
}
