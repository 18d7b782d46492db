// @ts-check
/**
 * The profile's history: the commit graph (drawn by graph.js), with the
 * commits gc keeps on no branch, and the selected commit's details and diff.
 */
import { addedLayerOf, chainBytes, diffOf, diffSummary } from '../commits.js';
import { $, bytes, code, h, muted, plural, short, time } from '../dom.js';
import { renderGraph } from '../graph.js';
import { heldReasons } from '../held.js';
import { reload } from '../loaders.js';
import { S, allCommits, commitById, currentProfile, online } from '../state.js';
import { renderActions } from './commit-actions.js';

/** Why each held commit is kept, in short words ('reflog', 'pinned by 2 clients', ...). */
function heldInfo() {
  const known = { assignments: S.assignments.filter((a) => a.profile === S.profile), clients: S.clients, pushes: S.pushes };
  const inReflog = new Set(S.reflog.entries.flatMap((e) => [e.old, e.new]).filter((id) => id !== null));
  return new Map([...S.held.why].map(([id, w]) => [id, heldReasons(id, w, known, inReflog)]));
}

function graphInfo() {
  const ids = new Set(allCommits().map((c) => c.id));
  const pins = new Map();
  for (const a of S.assignments) {
    if (!a.pin || a.profile !== S.profile) continue;
    const tag = S.graph.refs.find((r) => r.type === 'tag' && r.name === a.pin);
    const id = tag ? tag.commit : a.pin;
    if (!ids.has(id)) continue;
    pins.set(id, [...(pins.get(id) ?? []), a.match]);
  }
  const clients = new Map();
  for (const c of S.clients) if (c.commit && ids.has(c.commit)) clients.set(c.commit, (clients.get(c.commit) ?? 0) + 1);
  return {
    refs: S.graph.refs,
    pins,
    clients,
    held: heldInfo(),
    head: currentProfile()?.head ?? null,
    selected: S.selected,
    profile: S.profile ?? '',
  };
}

export function drawGraph() {
  if (!(/** @type {any} */ (globalThis).dagre)) return; // only if /vendor/dagre.min.js failed to load: the page still works, without the drawing
  const box = $('#graph');
  const focused = document.activeElement?.closest?.('#graph [data-commit]')?.getAttribute('data-commit');
  const scroll = [box.scrollLeft, box.scrollTop];
  renderGraph(box, allCommits(), graphInfo(), selectCommit);
  [box.scrollLeft, box.scrollTop] = scroll;
  if (focused) box.querySelector(`[data-commit="${focused}"]`)?.focus();
}

/** @param {string} id */
export function selectCommit(id) {
  S.selected = id;
  for (const n of document.querySelectorAll('#graph [data-commit]')) {
    const on = n.getAttribute('data-commit') === id;
    n.classList.toggle('selected', on);
    n.setAttribute('aria-pressed', on ? 'true' : 'false');
  }
  renderCommit();
}

/** Selects a drawn commit and puts the focus on its node (for links to it). */
/** @param {string} id */
export function focusCommit(id) {
  selectCommit(id);
  $(`#graph [data-commit="${id}"]`)?.focus();
}

/** From another view: open the history of `profile` with commit `id` selected. */
/**
 * @param {string | null} profile
 * @param {string} id
 */
export function showCommit(profile, id) {
  location.hash = '#profiles';
  S.selected = id;
  if (profile && profile !== S.profile) {
    S.profile = profile;
    S.graphFor = null;
    void reload(['profiles']).then(() => selectCommit(id));
  } else selectCommit(id);
}

/**
 * @param {string} label
 * @param {string[]} paths
 * @param {string} cls
 */
function pathList(label, paths, cls) {
  const MAX = 200;
  if (!paths.length) return null;
  return h(
    'details',
    { class: `paths ${cls}`, open: paths.length <= 12 ? true : undefined },
    h('summary', {}, `${label} (${paths.length})`),
    h(
      'ul',
      {},
      ...paths.slice(0, MAX).map((p) => h('li', {}, code(p))),
      paths.length > MAX ? h('li', { class: 'muted' }, `… and ${paths.length - MAX} more`) : null,
    ),
  );
}

export function renderCommit() {
  const pane = $('#commit');
  const c = S.selected ? commitById(S.selected) : null;
  if (!c) {
    pane.replaceChildren(h('h2', { id: 'commit-h' }, 'Commit'), h('p', { class: 'hint' }, 'Select a commit in the graph.'));
    return;
  }
  const layer = addedLayerOf(c);
  const refs = S.graph.refs.filter((r) => r.commit === c.id);
  const pins = S.assignments.filter(
    (a) => a.profile === S.profile && a.pin && (a.pin === c.id || refs.some((r) => r.type === 'tag' && r.name === a.pin)),
  );
  const running = S.clients.filter((x) => x.commit === c.id);
  /** @param {string} id */
  const jump = (id) => h('button', { type: 'button', class: 'link', onclick: () => focusCommit(id) }, short(id));
  const heldWhy = S.held.why.get(c.id);

  const facts = h(
    'dl',
    { class: 'facts' },
    h('dt', {}, 'Message'),
    h('dd', { class: 'message' }, c.message || muted('(no message)')),
    h('dt', {}, 'Author'),
    h('dd', {}, c.author),
    h('dt', {}, 'Time'),
    h('dd', {}, time(c.createdAt)),
    h('dt', {}, 'Kind'),
    h('dd', {}, c.kind, c.mergeParent ? ' (merge)' : ''),
    h('dt', {}, 'Id'),
    h('dd', {}, h('code', { class: 'full-id' }, c.id)),
    heldWhy
      ? [
          h('dt', {}, 'Reachable'),
          h('dd', { class: 'held-note' }, 'No: on no branch or tag.'),
          h('dt', {}, 'Kept by'),
          h(
            'dd',
            { class: 'held-note' },
            `${heldInfo().get(c.id)?.join(', ') ?? 'gc'}. Roll back to it to bring it back; once nothing keeps it, gc removes it.`,
          ),
        ]
      : null,
    h('dt', {}, 'Parent'),
    h('dd', {}, c.parent ? (commitById(c.parent) ? jump(c.parent) : code(short(c.parent))) : 'none (a base)'),
    c.mergeParent
      ? [h('dt', {}, 'Merge parent'), h('dd', {}, commitById(c.mergeParent) ? jump(c.mergeParent) : code(short(c.mergeParent)))]
      : null,
    h('dt', {}, 'Layer'),
    h('dd', {}, layer ? [code(short(layer.digest)), ` ${bytes(layer.size)}`] : muted('adds no layer')),
    h('dt', {}, 'Chain'),
    h('dd', {}, `${plural(c.manifest.layers.length, 'layer')}, ${bytes(chainBytes(c))}`),
    refs.length ? [h('dt', {}, 'Refs'), h('dd', {}, refs.map((r) => `${r.type} ${r.name}`).join(', '))] : null,
    pins.length ? [h('dt', {}, 'Pinned by'), h('dd', {}, pins.map((a) => a.match).join(', '))] : null,
    h('dt', {}, 'Running now'),
    h(
      'dd',
      {},
      running.length
        ? running.map((x) => `${x.mac} (${x.ip || 'no IP'}, ${online(x) ? 'online' : 'offline'})`).join('; ')
        : muted('no known client'),
    ),
  );

  const diffBox = h('div', { class: 'diff' }, h('p', { class: 'muted' }, 'Loading changes…'));
  const actions = renderActions(c);
  pane.replaceChildren(
    h('h2', { id: 'commit-h' }, 'Commit ', code(short(c.id))),
    facts,
    h('h3', {}, 'Changes'),
    diffBox,
    h('h3', {}, 'Actions'),
    actions,
  );
  diffOf(c.id).then(
    (d) => {
      if (S.selected !== c.id) return;
      const lists = [
        pathList('Added', d.added, 'added'),
        pathList('Changed', d.changed, 'changed'),
        pathList('Deleted', d.deleted, 'deleted'),
      ].filter((l) => l !== null);
      diffBox.replaceChildren(
        h('p', {}, c.parent ? `Against its parent ${short(c.parent)}: ` : 'Against an empty tree: ', diffSummary(d), '.'),
        ...lists,
      );
    },
    (e) => diffBox.replaceChildren(h('p', { class: 'error' }, `Could not load the changes: ${e.message}`)),
  );
}
