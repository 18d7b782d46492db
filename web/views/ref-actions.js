// @ts-check
/**
 * Actions beside cherry-pick that move or remove whole refs: rebase a branch
 * onto the selected commit, delete a side branch, a tag or a whole profile.
 * Each asks first, saying what changes and how to undo it (rollback; a
 * deletion stays undoable until gc expires its reflog entry).
 */
import { api, ApiError } from '../api.js';
import { ask, hideToast, showError, toast } from '../dialogs.js';
import { code, enc, h, short } from '../dom.js';
import { reload } from '../loaders.js';
import { S } from '../state.js';

/** @typedef {import('../api-types.js').Commit} Commit */

/**
 * Runs an action after its confirmation; reloads and reports. E_CONFLICT is thrown on for the caller to explain.
 * @param {string} what
 * @param {() => Promise<any>} run
 * @param {(r: any) => string} done
 */
export async function perform(what, run, done) {
  toast(`${what}…`);
  try {
    const r = await run();
    toast(done(r));
    S.diffs.clear();
    await reload(['profiles', 'assignments']);
    return r;
  } catch (e) {
    hideToast();
    if (e instanceof ApiError && e.code === 'E_CONFLICT') throw e;
    await showError(e, what);
    return null;
  }
}

/**
 * Rebase BRANCH onto commit C: its own layers (above its base) replayed on C.
 * @param {string} branch
 * @param {Commit} c
 * @param {boolean} force
 */
export async function doRebase(branch, c, force) {
  if (!force) {
    const ok = await ask({
      title: `Rebase ${branch} onto ${short(c.id)}?`,
      body: [
        h(
          'p',
          {},
          'The layers ',
          code(branch),
          ' added above its base are stacked on ',
          code(short(c.id)),
          ` “${c.message}”, reused as they are.`,
        ),
        h(
          'ul',
          {},
          h('li', {}, 'Refused, with the list of paths, when the new base changed paths those layers also change.'),
          h('li', {}, 'One move in the reflog: roll back to undo.'),
        ),
      ],
      ok: 'Rebase',
    });
    if (!ok) return;
  }
  try {
    await perform(
      `Rebasing ${branch}`,
      () => api('POST', `/v1/profiles/${enc(branch)}/rebase`, { onto: c.id, force }),
      (r) => `Rebased: ${branch} is now ${short(r.commit.id)} (${r.reused.length} layer(s) reused)`,
    );
  } catch (e) {
    /** @type {{ path: string, oldBase: string, newBase: string, layer: string }[]} */
    const conflicts = e instanceof ApiError && Array.isArray(e.details?.conflicts) ? e.details.conflicts : [];
    const again = await ask({
      title: 'Rebase refused: conflicts',
      body: [
        h('p', {}, 'The new base changes paths that the layers of ', code(branch), ' also change. Nothing was changed.'),
        h(
          'ul',
          { id: 'conflict-list', class: 'conflicts', 'aria-label': 'Conflicting paths' },
          ...conflicts.map((x) =>
            h('li', {}, code(x.path), ` old base: ${x.oldBase}; new base: ${x.newBase}; layer `, code(short(x.layer))),
          ),
        ),
        h('p', {}, 'You can rebase anyway: for these paths the layers’ version wins over the new base’s.'),
      ],
      ok: 'Rebase anyway',
      danger: true,
      cancel: 'Leave it',
    });
    if (again) await doRebase(branch, c, true);
  }
}

/**
 * Delete a side branch, or remove the whole profile when BRANCH is the profile's own.
 * @param {string} branch
 */
export async function doDeleteBranch(branch) {
  const isProfile = !branch.includes('/');
  const ok = await ask({
    title: isProfile ? `Remove profile ${branch}?` : `Delete branch ${branch}?`,
    body: [
      h(
        'p',
        {},
        isProfile
          ? ['Profile ', code(branch), ' goes with all its branches and tags. Refused while an assignment boots it.']
          : ['Branch ', code(branch), ' goes; its commits stay while the reflog or other refs keep them.'],
      ),
      h('p', {}, 'Undo with ', code(`strata rollback ${branch}`), ' until gc expires the reflog entry.'),
    ],
    ok: isProfile ? 'Remove profile' : 'Delete branch',
    danger: true,
  });
  if (!ok) return;
  await perform(
    isProfile ? `Removing profile ${branch}` : `Deleting branch ${branch}`,
    () => (isProfile ? api('DELETE', `/v1/profiles/${enc(branch)}`) : api('DELETE', `/v1/branches?name=${enc(branch)}`)),
    () => (isProfile ? `Removed profile ${branch}` : `Deleted branch ${branch}`),
  );
}

/** @param {string} tag */
export async function doDeleteTag(tag) {
  const ok = await ask({
    title: `Delete tag ${tag}?`,
    body: [
      h('p', {}, 'Tag ', code(tag), ' goes. Refused while an assignment is pinned to it.'),
      h('p', {}, 'Undo with ', code(`strata rollback ${tag}`), ' until gc expires the reflog entry.'),
    ],
    ok: 'Delete tag',
    danger: true,
  });
  if (!ok) return;
  await perform(
    `Deleting tag ${tag}`,
    () => api('DELETE', `/v1/tags?name=${enc(tag)}`),
    () => `Deleted tag ${tag}`,
  );
}
