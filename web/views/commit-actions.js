// @ts-check
/**
 * The actions on the selected commit, against a branch the admin picks:
 * roll back, revert, cherry-pick, flatten, tag, pin clients, new branch.
 * Each asks first, saying what will change and how to undo it.
 */
import { api, ApiError } from '../api.js';
import { addedLayerOf, chainBytes, chainOf, diffOf, diffSummary, fetchCommit, firstParentDistance } from '../commits.js';
import { ask, showError } from '../dialogs.js';
import { $, bytes, code, enc, h, plural, short } from '../dom.js';
import { parseMatch } from '../../protocol/match.js';
import { S, branches, commitById, headOf } from '../state.js';
import { previewNodes } from './assignments.js';
import { branchOptions } from './branch-options.js';
import { wired } from '../wiring.js';
import { doDeleteBranch, doDeleteTag, doRebase, perform } from './ref-actions.js';

/** @typedef {import('../api-types.js').Commit} Commit */

/** @param {Commit} c */
export function renderActions(c) {
  const bs = branches();
  // A commit is shown only once a profile is chosen, so there is a branch.
  const branch = /** @type {string} */ (S.branch && bs.includes(S.branch) ? S.branch : S.profile);
  const headId = headOf(branch);
  const head = headId ? commitById(headId) : null;
  const headChain = head ? chainOf(head) : [];
  const idx = c.addedLayer ? headChain.indexOf(c.addedLayer) : -1;

  const select = h(
    'select',
    {
      id: 'act-branch',
      onchange: (/** @type {Event & { target: HTMLSelectElement }} */ ev) => {
        S.branch = ev.target.value;
        wired.renderCommit();
        $('#act-branch')?.focus();
      },
    },
    ...branchOptions(bs, branch),
  );
  /**
   * @param {string} label
   * @param {() => unknown} onclick
   * @param {unknown} enabled
   * @param {string} [why]
   */
  const btn = (label, onclick, enabled, why) =>
    h('button', { type: 'button', onclick, disabled: enabled ? undefined : true, title: enabled ? undefined : why }, label);

  const canRollback = head && headId !== c.id;
  const canRevert = head && c.addedLayer && idx > 0;
  const canPick = head && c.addedLayer && c.kind !== 'import' && idx < 0;
  const canFlatten = head && head.manifest.layers.length >= 2;
  return h(
    'div',
    { class: 'actions' },
    h('label', { for: 'act-branch' }, 'Branch to act on'),
    select,
    h('p', { class: 'hint' }, head ? ['Its head: ', code(short(headId)), ` ${head.message}`] : 'That branch has no head here.'),
    h(
      'div',
      { class: 'buttons' },
      btn('Roll back to here…', () => doRollback(branch, c), canRollback, 'this commit is already the head of the branch'),
      btn(
        'Revert…',
        () => doRevert(branch, c),
        canRevert,
        c.addedLayer ? 'the branch head does not carry this commit’s layer above its base' : 'this commit adds no layer',
      ),
      btn(
        'Cherry-pick onto branch…',
        () => doCherryPick(branch, c, false),
        canPick,
        c.addedLayer ? 'the branch already has this layer' : 'this commit adds no layer',
      ),
      btn('Rebase branch onto here…', () => doRebase(branch, c, false), canRollback, 'this commit is already the head of the branch'),
      btn('Flatten branch…', () => doFlatten(branch, c), canFlatten, 'the branch head has fewer than two layers'),
      btn('Tag…', () => doTag(c), true),
      btn('Pin clients…', () => doPin(c), true),
      btn('New branch…', () => doBranch(c), true),
      btn(branch.includes('/') ? 'Delete branch…' : 'Remove profile…', () => doDeleteBranch(branch), true),
      ...S.graph.refs
        .filter((r) => r.type === 'tag' && r.commit === c.id)
        .map((r) => btn(`Delete tag ${r.name}…`, () => doDeleteTag(r.name), true)),
    ),
  );
}

/** @param {Commit} c */
function describe(c) {
  return [code(short(c.id)), ` “${c.message || 'no message'}”`];
}

/**
 * @param {string} branch
 * @param {Commit} c
 */
async function doRollback(branch, c) {
  const from = headOf(branch);
  const head = commitById(from);
  if (!from || !head) return; // the button is disabled without a head
  const back = firstParentDistance(from, c.id);
  const ok = await ask({
    title: `Roll ${branch} back?`,
    body: [
      h('p', {}, 'Move branch ', code(branch), ' from ', ...describe(head), ' to ', ...describe(c), '.'),
      h(
        'ul',
        {},
        h(
          'li',
          {},
          back > 0
            ? `The newest ${plural(back, 'commit')} leave${back === 1 ? 's' : ''} the branch (they stay in the reflog).`
            : 'This commit is not an ancestor of the head: the branch jumps there.',
        ),
        branch === S.profile
          ? h('li', {}, `Clients that follow ${branch} boot ${short(c.id)} at their next boot; running clients keep what they booted.`)
          : null,
        h('li', {}, 'Recorded in the reflog: rolling back to ', code(short(from)), ' undoes it.'),
      ),
    ],
    ok: 'Roll back',
    danger: true,
  });
  if (!ok) return;
  await perform(
    `Rolling back ${branch}`,
    () => api('POST', `/v1/profiles/${enc(branch)}/rollback`, { to: c.id }),
    (r) => `${branch} is now at ${short(r.to)}`,
  );
}

/** Rolls `branch` back to any commit by id (one in the reflog may be drawn nowhere: fetch it). */
/**
 * @param {string} branch
 * @param {string} id
 */
export async function doRollbackTo(branch, id) {
  let c = commitById(id);
  if (!c) {
    try {
      c = await fetchCommit(id);
    } catch (e) {
      await showError(e, `Finding commit ${short(id)}`);
      return;
    }
  }
  await doRollback(branch, c);
}

/** @param {Commit} c */
async function diffLine(c) {
  try {
    return h('li', {}, `This commit’s changes: ${diffSummary(await diffOf(c.id))}.`);
  } catch {
    return null;
  }
}

/**
 * @param {string} branch
 * @param {Commit} c
 */
async function doRevert(branch, c) {
  const layer = addedLayerOf(c);
  const ok = await ask({
    title: `Revert ${short(c.id)} on ${branch}?`,
    body: [
      h(
        'p',
        {},
        'A new commit on ',
        code(branch),
        ' whose chain no longer has the layer ',
        code(short(c.addedLayer)),
        ` (${bytes(layer?.size)}) that `,
        ...describe(c),
        ' added.',
      ),
      h(
        'ul',
        {},
        await diffLine(c),
        h('li', {}, 'Later layers that changed the same paths keep their version.'),
        h('li', {}, 'Nothing is deleted; roll back to undo.'),
      ),
    ],
    ok: 'Revert',
    danger: true,
  });
  if (!ok) return;
  await perform(
    `Reverting ${short(c.id)}`,
    () => api('POST', `/v1/profiles/${enc(branch)}/revert`, { commit: c.id }),
    (r) => `Reverted: new commit ${short(r.commit.id)} on ${branch}`,
  );
}

/**
 * @param {string} branch
 * @param {Commit} c
 * @param {boolean} force
 */
async function doCherryPick(branch, c, force) {
  const layer = addedLayerOf(c);
  if (!force) {
    const ok = await ask({
      title: `Cherry-pick ${short(c.id)} onto ${branch}?`,
      body: [
        h(
          'p',
          {},
          'A new commit on ',
          code(branch),
          ' that stacks the layer of ',
          ...describe(c),
          ` (${bytes(layer?.size)}, reused as is) on top of its head `,
          code(short(headOf(branch))),
          '.',
        ),
        h(
          'ul',
          {},
          await diffLine(c),
          h('li', {}, 'Refused, with the list of paths, if the branch changed the same paths since the two diverged.'),
        ),
      ],
      ok: 'Cherry-pick',
    });
    if (!ok) return;
  }
  try {
    await perform(
      `Cherry-picking ${short(c.id)}`,
      () => api('POST', `/v1/profiles/${enc(branch)}/cherry-pick`, { commit: c.id, force }),
      (r) => `Cherry-picked: new commit ${short(r.commit.id)} on ${branch}`,
    );
  } catch (e) {
    const paths = e instanceof ApiError && Array.isArray(e.details?.paths) ? e.details.paths : [];
    const again = await ask({
      title: 'Cherry-pick refused: conflicts',
      body: [
        h(
          'p',
          {},
          code(branch),
          ` changed ${paths.length} of the same path${paths.length === 1 ? '' : 's'} since it diverged from `,
          code(short(c.id)),
          '. Nothing was changed.',
        ),
        h('ul', { id: 'conflict-list', class: 'conflicts', 'aria-label': 'Conflicting paths' }, ...paths.map((p) => h('li', {}, code(p)))),
        h('p', {}, 'You can stack the layer anyway: for these paths its version wins over the branch’s.'),
      ],
      ok: 'Cherry-pick anyway',
      danger: true,
      cancel: 'Leave it',
    });
    if (again) await doCherryPick(branch, c, true);
  }
}

/**
 * @param {string} branch
 * @param {Commit} c
 */
async function doFlatten(branch, c) {
  const head = commitById(headOf(branch));
  if (!head) return; // the button is disabled without a head
  const hc = chainOf(head);
  const cc = chainOf(c);
  const isPrefix = c.id !== head.id && cc.length <= hc.length - 2 && cc.every((d, i) => hc[i] === d);
  const partial = h('input', { type: 'checkbox', id: 'fl-from' });
  const ok = await ask({
    title: `Flatten ${branch}?`,
    body: [
      h(
        'p',
        {},
        `Bake the ${hc.length} layers of `,
        code(branch),
        `’s head (${bytes(chainBytes(head))}) into one layer and commit it on `,
        code(branch),
        '. The files stay the same; the chain gets shorter, so clients mount fewer layers.',
      ),
      isPrefix
        ? h(
            'p',
            { class: 'check' },
            partial,
            h(
              'label',
              { for: 'fl-from' },
              ` Only the ${hc.length - cc.length} layers above ${short(c.id)} (keep its ${plural(cc.length, 'layer')} as they are)`,
            ),
          )
        : null,
      h('p', { class: 'muted' }, 'This bakes a new squashfs and may take a while for big images.'),
    ],
    ok: 'Flatten',
  });
  if (!ok) return;
  const from = isPrefix && partial.checked ? c.id : undefined;
  await perform(
    `Flattening ${branch}`,
    () => api('POST', `/v1/profiles/${enc(branch)}/flatten`, from ? { from } : {}),
    (r) => `Flattened: new commit ${short(r.commit.id)} on ${branch}`,
  );
}

/** @param {Commit} c */
async function doTag(c) {
  const input = h('input', {
    id: 'tag-name',
    required: true,
    pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]*',
    autocomplete: 'off',
    spellcheck: 'false',
  });
  const ok = await ask({
    title: `Tag ${short(c.id)}`,
    body: [
      h('p', {}, 'Give ', ...describe(c), ' a name. Tags never move; an assignment pinned to a tag follows it.'),
      h('label', { for: 'tag-name' }, 'Tag name'),
      input,
    ],
    ok: 'Create tag',
  });
  if (!ok) return;
  const name = input.value.trim();
  await perform(
    `Tagging ${short(c.id)}`,
    () => api('POST', '/v1/tags', { name, commit: c.id }),
    () => `Tagged ${short(c.id)} as ${name}`,
  );
}

/** @param {Commit} c */
async function doBranch(c) {
  const input = h('input', { id: 'branch-name', required: true, value: `${S.profile}/`, autocomplete: 'off', spellcheck: 'false' });
  const ok = await ask({
    title: `New branch at ${short(c.id)}`,
    body: [
      h(
        'p',
        {},
        'A branch starting at ',
        ...describe(c),
        '. ',
        code(`${S.profile}/NAME`),
        ` belongs to ${S.profile}; a bare NAME makes a new profile.`,
      ),
      h('label', { for: 'branch-name' }, 'Branch name'),
      input,
    ],
    ok: 'Create branch',
  });
  if (!ok) return;
  const name = input.value.trim();
  await perform(
    `Creating branch ${name}`,
    () => api('POST', '/v1/branches', { name, commit: c.id }),
    () => `Created branch ${name}`,
  );
}

/** @param {Commit} c */
async function doPin(c) {
  const input = h('input', { id: 'pin-match', required: true, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'pin-hint' });
  const preview = h('div', { class: 'preview', 'aria-live': 'polite' });
  const update = () => {
    const m = parseMatch(input.value);
    input.setCustomValidity(m || !input.value.trim() ? '' : 'not a MAC, IP, CIDR or default');
    preview.replaceChildren(
      ...(m
        ? previewNodes({ ...m, profile: S.profile ?? '', pin: c.id, cmdline: '' }, null)
        : [
            h(
              'p',
              { class: 'muted' },
              input.value.trim() ? 'Not a MAC, an IP, a CIDR or default.' : 'Type a match to see which clients it catches.',
            ),
          ]),
    );
  };
  input.addEventListener('input', update);
  const body = [
    h(
      'p',
      {},
      'Clients that match boot ',
      code(S.profile ?? ''),
      ' at ',
      ...describe(c),
      ' and stay there until the pin changes, instead of following the head. An existing rule with the same match is replaced.',
    ),
    h('label', { for: 'pin-match' }, 'Match'),
    input,
    h('p', { id: 'pin-hint', class: 'hint' }, 'A MAC, an IP, a CIDR or default.'),
    preview,
  ];
  update();
  const ok = await ask({ title: `Pin clients to ${short(c.id)}`, body, ok: 'Pin' });
  if (!ok) return;
  const m = parseMatch(input.value);
  if (!m) return;
  await perform(
    `Pinning ${m.match}`,
    () => api('PUT', '/v1/assignments', { match: m.match, target: `${S.profile}@${c.id}` }),
    () => `Pinned ${m.match} to ${S.profile}@${short(c.id)}`,
  );
}
