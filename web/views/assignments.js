// @ts-check
/**
 * The assignments view: the rules that give a booting client its profile,
 * a form to add or edit one, and a live preview of the known clients a rule
 * would catch (protocol/match.js, the very matcher the server uses).
 */
import { api } from '../api.js';
import { ask } from '../dialogs.js';
import { $, code, enc, h, muted, plural, short, table } from '../dom.js';
import { change } from '../loaders.js';
import { matchAssignment, parseMatch, previewChange } from '../../protocol/match.js';
import { S } from '../state.js';

/** A pin as shown: a commit id shortened, a tag as it is. */
/** @param {string} pin */
const pinText = (pin) => (pin.length === 64 ? short(pin) : pin);

/**
 * @typedef {Omit<import('../api-types.js').Assignment, 'createdAt'>} Rule
 * @typedef {{ client: { mac: string | null, ip: string | null }, before: Rule | null, after: Rule | null, caught: boolean }} PreviewRow
 */

/**
 * A preview of which known clients a rule would catch, as a list.
 * @param {Rule | null} rule
 * @param {string | null} [remove]
 */
export function previewNodes(rule, remove) {
  const rows = previewChange(S.assignments, S.clients, { add: rule, remove });
  /** @param {Rule | null} a */
  const nameOf = (a) => (a ? `${a.match} → ${a.profile}${a.pin ? `@${pinText(a.pin)}` : ''}` : 'nothing (no boot)');
  /**
   * @param {PreviewRow[]} rs
   * @param {string} when
   * @param {(r: PreviewRow) => Rule | null} pick
   */
  const list = (rs, when, pick) =>
    h(
      'ul',
      { class: 'catch' },
      ...rs.map((r) => h('li', {}, code(r.client.mac ?? 'no MAC'), ` ${r.client.ip || 'no IP'} — ${when}: ${nameOf(pick(r))}`)),
    );
  const caught = rows.filter((r) => r.caught);
  const released = rows.filter((r) => !r.caught);
  /** @type {HTMLElement[]} */
  const out = [];
  if (rule) {
    out.push(h('p', {}, `Would catch ${caught.length} of ${plural(S.clients.length, 'known client')}${caught.length ? ':' : '.'}`));
    if (caught.length) out.push(list(caught, 'today', (r) => r.before));
  }
  if (released.length) {
    out.push(h('p', {}, `${plural(released.length, 'client')} would fall through to another rule:`));
    out.push(list(released, 'then', (r) => r.after));
  }
  return out;
}

export function renderAssignments() {
  const box = $('#assignments-table');
  if (!S.assignments.length) {
    box.replaceChildren(h('p', { class: 'muted' }, 'No assignments: no client gets a profile yet.'));
    return;
  }
  const catches = new Map();
  for (const c of S.clients) {
    const a = matchAssignment(S.assignments, c.mac, c.ip);
    if (a) catches.set(a.match, (catches.get(a.match) ?? 0) + 1);
  }
  box.replaceChildren(
    table(
      'Assignments',
      [
        { label: 'Match', cell: (a) => code(a.match) },
        { label: 'Kind', cell: (a) => a.kind },
        { label: 'Profile', cell: (a) => a.profile },
        { label: 'Pin', cell: (a) => (a.pin ? code(pinText(a.pin)) : muted('follows head')) },
        { label: 'Command line', cell: (a) => (a.cmdline ? code(a.cmdline) : '—') },
        { label: 'Catches now', cell: (a) => String(catches.get(a.match) ?? 0) },
        {
          label: 'Actions',
          cell: (a) =>
            h(
              'span',
              { class: 'buttons' },
              h('button', { type: 'button', onclick: () => editAssignment(a), 'aria-label': `Edit assignment ${a.match}` }, 'Edit'),
              h(
                'button',
                { type: 'button', class: 'danger', onclick: () => removeAssignment(a), 'aria-label': `Remove assignment ${a.match}` },
                'Remove',
              ),
            ),
        },
      ],
      S.assignments,
    ),
  );
}

export function renderAssignForm() {
  const sel = $('#as-profile');
  const keep = sel.value;
  sel.replaceChildren(...S.profiles.map((p) => h('option', { value: p.name }, p.name)));
  if (S.profiles.some((p) => p.name === keep)) sel.value = keep;
}

/** @returns {Rule | null} */
function formRule() {
  const m = parseMatch($('#as-match').value);
  if (!m) return null;
  const pin = $('#as-pin').value.trim();
  return { ...m, profile: $('#as-profile').value, pin: pin || null, cmdline: $('#as-cmdline').value.trim() };
}

export function renderPreview() {
  const box = $('#assign-preview');
  const text = $('#as-match').value.trim();
  const rule = formRule();
  $('#as-match').setCustomValidity(rule || !text ? '' : 'not a MAC, IP, CIDR or default');
  if (!text) return box.replaceChildren(h('p', { class: 'muted' }, 'Type a match to see which known clients it would catch.'));
  if (!rule)
    return box.replaceChildren(
      h('p', { class: 'error' }, 'Not a MAC (aa:bb:cc:dd:ee:ff), an IP (10.0.0.7), a CIDR (10.0.0.0/24) or default.'),
    );
  const remove = S.editing && S.editing !== rule.match ? S.editing : null;
  box.replaceChildren(h('h3', {}, 'Preview'), ...previewNodes(rule, remove));
}

/** @param {import('../api-types.js').Assignment} a */
function editAssignment(a) {
  S.editing = a.match;
  $('#as-match').value = a.match;
  $('#as-profile').value = a.profile;
  $('#as-pin').value = a.pin ?? '';
  $('#as-cmdline').value = a.cmdline ?? '';
  $('#assign-form-h').textContent = `Edit assignment ${a.match}`;
  $('#as-submit').textContent = 'Save assignment…';
  $('#as-cancel').hidden = false;
  renderPreview();
  $('#as-match').focus();
}

export function resetAssignForm() {
  S.editing = null;
  for (const id of ['#as-match', '#as-pin', '#as-cmdline']) $(id).value = '';
  $('#assign-form-h').textContent = 'Add an assignment';
  $('#as-submit').textContent = 'Add assignment…';
  $('#as-cancel').hidden = true;
  renderPreview();
}

/** @param {SubmitEvent} ev */
export async function submitAssignment(ev) {
  ev.preventDefault();
  const rule = formRule();
  if (!rule) return;
  const old = S.editing;
  const target = rule.pin ? `${rule.profile}@${rule.pin}` : rule.profile;
  const replaces = S.assignments.find((a) => a.match === rule.match);
  const ok = await ask({
    title: old ? `Save assignment ${rule.match}?` : `Add assignment ${rule.match}?`,
    body: [
      h(
        'p',
        {},
        'Clients matching ',
        code(rule.match),
        ' boot ',
        code(target),
        rule.pin ? ' (pinned: it does not follow the head)' : ' (following its head)',
        rule.cmdline ? [' with ', code(rule.cmdline)] : '',
        ', from their next boot on.',
      ),
      replaces && replaces.match !== old ? h('p', {}, 'It replaces the rule ', code(`${replaces.match} → ${replaces.profile}`), '.') : null,
      old && old !== rule.match ? h('p', {}, 'The rule ', code(old), ' is removed.') : null,
      ...previewNodes(rule, old && old !== rule.match ? old : null),
    ],
    ok: old ? 'Save assignment' : 'Add assignment',
  });
  if (!ok) return;
  await change(
    'Saving the assignment',
    async () => {
      await api('PUT', '/v1/assignments', { match: rule.match, target, cmdline: rule.cmdline });
      if (old && old !== rule.match) await api('DELETE', `/v1/assignments?match=${enc(old)}`);
      resetAssignForm();
    },
    `Saved assignment ${rule.match} → ${target}`,
    ['assignments'],
  );
}

/** @param {import('../api-types.js').Assignment} a */
async function removeAssignment(a) {
  const ok = await ask({
    title: `Remove assignment ${a.match}?`,
    body: [
      h('p', {}, 'Clients matching ', code(a.match), ` no longer get ${a.profile} from this rule at their next boot.`),
      ...previewNodes(null, a.match),
    ],
    ok: 'Remove',
    danger: true,
  });
  if (!ok) return;
  await change(
    'Removing the assignment',
    async () => {
      await api('DELETE', `/v1/assignments?match=${enc(a.match)}`);
      if (S.editing === a.match) resetAssignForm();
    },
    `Removed assignment ${a.match}`,
    ['assignments'],
  );
}
