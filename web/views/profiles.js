// @ts-check
/**
 * The profiles view's top: the list of profiles, the selected one's facts,
 * its extra kernel command line, and making a new profile from an imported base.
 */
import { api } from '../api.js';
import { ask, showError } from '../dialogs.js';
import { $, bytes, code, enc, h, muted, short } from '../dom.js';
import { change, reload } from '../loaders.js';
import { S, commitById, currentProfile } from '../state.js';

export function renderProfiles() {
  const list = $('#profile-list');
  list.replaceChildren(
    ...S.profiles.map((p) =>
      h(
        'li',
        {},
        h(
          'button',
          {
            type: 'button',
            class: 'chip',
            'aria-pressed': p.name === S.profile ? 'true' : 'false',
            onclick: () => selectProfile(p.name),
          },
          p.name,
        ),
      ),
    ),
  );
  if (!S.profiles.length)
    list.append(h('li', { class: 'muted' }, 'No profiles yet. Import a base on the server: strata import NAME SOURCE'));
  const p = currentProfile();
  $('#profile-detail').hidden = !p;
  if (!p) return;
  $('#profile-title').textContent = `Profile ${p.name}`;
  const head = p.head ? commitById(p.head) : null;
  $('#profile-facts').replaceChildren(
    h('dt', {}, 'Head'),
    h('dd', {}, p.head ? code(short(p.head)) : 'no commits', head ? ` ${head.message}` : ''),
    h('dt', {}, 'Kernel'),
    h('dd', {}, p.kernel ? [code(short(p.kernel.digest)), ` ${bytes(p.kernel.size)}`] : 'none'),
    h('dt', {}, 'Initrd'),
    h('dd', {}, p.initrd ? [code(short(p.initrd.digest)), ` ${bytes(p.initrd.size)}`] : 'none'),
    h('dt', {}, 'Layers'),
    h('dd', {}, `${p.compressor}${p.level ? ` level ${p.level}` : ''}`),
  );
  const cmd = $('#cmdline');
  if (document.activeElement !== cmd && cmd.dataset.profile !== `${p.name}\n${p.cmdline}`) {
    cmd.value = p.cmdline;
    cmd.dataset.profile = `${p.name}\n${p.cmdline}`;
  }
}

/** @param {string} name */
function selectProfile(name) {
  if (name === S.profile) return;
  S.profile = name;
  S.selected = null;
  renderProfiles();
  void reload(['profiles']);
}

/** @param {string} s */
const cmdlineOrEmpty = (s) => (s ? code(s) : muted('(empty)'));

/** @param {SubmitEvent} ev */
export async function saveCmdline(ev) {
  ev.preventDefault();
  const p = currentProfile();
  if (!p) return;
  const next = $('#cmdline').value.trim();
  const ok = await ask({
    title: `Change the command line of ${p.name}?`,
    body: [
      h(
        'p',
        {},
        'Clients of this profile boot with these extra kernel arguments from their next boot on. Running clients are not affected.',
      ),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Now'),
        h('dd', {}, cmdlineOrEmpty(p.cmdline)),
        h('dt', {}, 'New'),
        h('dd', {}, cmdlineOrEmpty(next)),
      ),
    ],
    ok: 'Save command line',
  });
  if (!ok) return;
  await change(
    'Saving the command line',
    async () => {
      await api('PUT', `/v1/profiles/${enc(p.name)}/cmdline`, { cmdline: next });
      $('#cmdline').dataset.profile = '';
    },
    `Saved the command line of ${p.name}`,
    ['profiles'],
  );
}

export async function fillBaseChoices() {
  const sel = $('#np-base');
  sel.replaceChildren(h('option', { value: '' }, 'loading…'));
  const seen = new Map();
  try {
    for (const p of S.profiles) {
      const g = await api('GET', `/v1/profiles/${enc(p.name)}/graph`);
      for (const c of g.commits) if (c.kind === 'import' && !seen.has(c.id)) seen.set(c.id, c);
    }
  } catch (e) {
    await showError(e, 'Listing imported bases');
  }
  sel.replaceChildren(
    ...(seen.size ? [] : [h('option', { value: '' }, 'no imported base yet')]),
    ...[...seen.values()].map((c) =>
      h('option', { value: c.id }, `${c.profile}: ${c.message || 'base'} (${short(c.id)}, ${new Date(c.createdAt).toLocaleDateString()})`),
    ),
  );
}

/** @param {SubmitEvent} ev */
export async function createProfile(ev) {
  ev.preventDefault();
  const name = $('#np-name').value.trim();
  const base = $('#np-base').value;
  if (!name || !base) return;
  if (name.includes('/')) {
    await ask({
      title: 'Not a profile name',
      body: [h('p', {}, 'A profile name has no "/"; names with "/" are branches of a profile.')],
      ok: null,
    });
    return;
  }
  const ok = await ask({
    title: `Create profile ${name}?`,
    body: [
      h(
        'p',
        {},
        'A new profile ',
        code(name),
        ' whose branch starts at the imported base ',
        code(short(base)),
        '. It copies that base’s kernel, initrd, command line and compression settings. No client boots it until an assignment names it.',
      ),
    ],
    ok: 'Create profile',
  });
  if (!ok) return;
  await change(
    'Creating the profile',
    async () => {
      await api('POST', '/v1/branches', { name, commit: base });
      $('#np-name').value = '';
      $('#new-profile').open = false;
      S.profile = name;
    },
    `Created profile ${name}`,
    ['profiles'],
  );
}
