/**
 * strata's admin page. Plain DOM, no framework: state in one object, each
 * part of the page re-rendered from it when its data is reloaded. Data comes
 * only from the admin API (/v1/...); live updates from /v1/events.
 * Everything user-supplied (commit messages, names) goes in via textContent.
 */
import { api, ApiError, session, streamEvents } from './api.js';
import { renderGraph } from './graph.js';
import { collectHeld, describeGcObjects, heldReasons } from './held.js';
import { matchAssignment, parseMatch, previewChange } from './match.js';

const ONLINE_MS = 5 * 60 * 1000;
const VIEWS = ['profiles', 'clients', 'assignments', 'pushes', 'gc'];
const REFLOG_ROWS = 50;

const S = {
  view: 'profiles',
  profiles: [],
  profile: null,
  graph: { commits: [], refs: [] },
  graphFor: null,
  /** Commits gc keeps that no branch or tag reaches: { commits, why: Map(id -> {kinds, reasons, via}) }. */
  held: { commits: [], why: new Map() },
  /** The reflog shown under the graph: { branch, entries } (newest first). */
  reflog: { branch: null, entries: [] },
  reflogBranch: null,
  reflogAll: false,
  /** Commits fetched one by one (immutable, so cached): id -> Promise<Commit>. */
  commitCache: new Map(),
  /** The storage view: the last dry run (and its commits), or what a real gc freed. */
  gc: { preview: null, commits: [], freed: null, stale: false, busy: false },
  selected: null,
  branch: null,
  assignments: [],
  clients: [],
  pushes: [],
  diffs: new Map(),
  editing: null,
  stopEvents: null,
  loggedIn: false,
};

// ------------------------------------------------------------------ small DOM helpers

const $ = (sel) => document.querySelector(sel);

/** h('p', { class: 'x', onclick: fn }, 'text', node, ...) */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

const short = (id) => (id ? id.slice(0, 12) : '—');
const enc = encodeURIComponent;

function bytes(n) {
  if (n === null || n === undefined) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i ? v.toFixed(v < 10 ? 1 : 0) : v} ${u[i]}`;
}

function ago(ms) {
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function time(ms) {
  if (!ms) return h('span', { class: 'muted' }, 'never');
  const d = new Date(ms);
  return h('time', { datetime: d.toISOString(), title: d.toLocaleString() }, `${d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' })} (${ago(ms)})`);
}

const code = (s) => h('code', {}, s);

let toastTimer = null;
function toast(msg) {
  const t = $('#toast');
  t.textContent = msg;
  t.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(hideToast, 5000);
}

function hideToast() {
  clearTimeout(toastTimer);
  $('#toast').classList.remove('show');
}

// ------------------------------------------------------------------ dialog

/**
 * Modal dialog; resolves true when the OK button was used. `body` is a list
 * of nodes (may hold inputs; the caller reads them after). ok: null = info only.
 */
function ask({ title, body, ok = 'OK', danger = false, cancel = 'Cancel' }) {
  const dlg = $('#dialog');
  $('#dialog-h').textContent = title;
  $('#dialog-body').replaceChildren(...body.filter((n) => n !== null && n !== undefined && n !== false));
  const okBtn = $('#dialog-ok');
  const cancelBtn = $('#dialog-cancel');
  okBtn.hidden = !ok;
  okBtn.textContent = ok ?? '';
  okBtn.className = danger ? 'danger' : 'primary';
  cancelBtn.textContent = ok ? cancel : 'Close';
  cancelBtn.setAttribute('formnovalidate', '');
  dlg.returnValue = '';
  dlg.showModal();
  const firstInput = $('#dialog-body').querySelector('input, select, textarea');
  (firstInput ?? (ok && !danger ? okBtn : cancelBtn)).focus();
  return new Promise((resolve) => dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true }));
}

function showError(e, what) {
  if (e instanceof ApiError && e.status === 401) return logout('The server refused the token; log in again.');
  const body = [h('p', { class: 'error' }, e.message)];
  if (e instanceof ApiError && e.code) body.push(h('p', { class: 'muted' }, `Error code ${e.code}${e.status ? `, HTTP ${e.status}` : ''}. Nothing was changed.`));
  return ask({ title: `${what} did not work`, body, ok: null });
}

// ------------------------------------------------------------------ loading

/**
 * Data seen last, per kind: a reload that brings nothing new re-renders
 * nothing, so the periodic refresh never steals focus or collapses details.
 */
const seen = new Map();
function unchanged(key, data) {
  const text = JSON.stringify(data);
  if (seen.get(key) === text) return true;
  seen.set(key, text);
  return false;
}

async function loadProfiles() {
  const { profiles } = await api('GET', '/v1/profiles');
  if (unchanged('profiles', profiles) && profiles.some((p) => p.name === S.profile)) return;
  S.profiles = profiles;
  if (!S.profile || !profiles.some((p) => p.name === S.profile)) S.profile = profiles[0]?.name ?? null;
  renderProfiles();
  renderAssignForm();
}

async function fetchCommit(id) {
  if (!S.commitCache.has(id)) S.commitCache.set(id, api('GET', `/v1/commits/${enc(id)}`).then((r) => r.commit));
  try {
    return await S.commitCache.get(id);
  } catch (e) {
    S.commitCache.delete(id);
    throw e;
  }
}

async function loadGraph() {
  if (!S.profile) {
    S.graph = { commits: [], refs: [] };
    S.held = { commits: [], why: new Map() };
    S.reflog = { branch: null, entries: [] };
    S.graphFor = null;
  } else {
    const name = S.profile;
    const [g, { roots }] = await Promise.all([api('GET', `/v1/profiles/${enc(name)}/graph`), api('GET', '/v1/gc/roots')]);
    if (name !== S.profile) return; // the user switched profile meanwhile
    const drawn = new Set(g.commits.map((c) => c.id));
    const branchNames = g.refs.filter((r) => r.type === 'branch').map((r) => r.name);
    const rb = S.graphFor === name && branchNames.includes(S.reflogBranch) ? S.reflogBranch : name;
    const known = { assignments: S.assignments, clients: S.clients, pushes: S.pushes };
    const [held, { reflog }] = await Promise.all([
      collectHeld(roots, drawn, name, known, fetchCommit),
      api('GET', `/v1/profiles/${enc(rb)}/reflog`),
    ]);
    if (name !== S.profile) return;
    const data = { g, held: held.commits.map((c) => c.id), why: [...held.why], rb, reflog };
    if (unchanged(`graph:${name}`, data) && S.graphFor === name) return;
    S.graph = g;
    S.held = held;
    S.reflog = { branch: rb, entries: reflog };
    S.reflogBranch = rb;
    if (S.graphFor !== name) {
      S.selected = null;
      S.branch = name;
      S.reflogAll = false;
    }
    S.graphFor = name;
  }
  const ids = new Set(allCommits().map((c) => c.id));
  if (!S.selected || !ids.has(S.selected)) S.selected = currentProfile()?.head ?? S.graph.commits[0]?.id ?? null;
  if (!branches().includes(S.branch)) S.branch = S.profile;
  renderProfiles(); // the head's message comes from the graph
  drawGraph();
  renderCommit();
  renderReflog();
}

async function loadClients() {
  const { clients } = await api('GET', '/v1/clients');
  if (unchanged('clients', clients)) return;
  S.clients = clients;
  renderClients();
  renderAssignments();
  renderPreview();
  drawGraph();
  renderCommit();
}

async function loadAssignments() {
  const { assignments } = await api('GET', '/v1/assignments');
  if (unchanged('assignments', assignments)) return;
  S.assignments = assignments;
  renderAssignments();
  renderPreview();
  drawGraph();
  renderCommit();
}

async function loadPushes() {
  const { pushes } = await api('GET', '/v1/pushes?limit=200');
  if (unchanged('pushes', pushes)) return;
  S.pushes = pushes;
  renderPushes();
}

const LOADERS = {
  profiles: async () => {
    await loadProfiles();
    await loadGraph();
  },
  clients: loadClients,
  assignments: loadAssignments,
  pushes: loadPushes,
};

let pending = new Set();
let pendingTimer = null;
/** Coalesces reloads: a burst of events becomes one request per kind of data. */
function schedule(...kinds) {
  for (const k of kinds) pending.add(k);
  clearTimeout(pendingTimer);
  pendingTimer = setTimeout(() => {
    const todo = pending;
    pending = new Set();
    void reload([...todo]);
  }, 120);
}

async function reload(kinds = Object.keys(LOADERS)) {
  try {
    await Promise.all(kinds.map((k) => LOADERS[k]()));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) logout('The server refused the token; log in again.');
    else toast(`Could not load: ${e.message}`);
  }
}

// ------------------------------------------------------------------ session

async function login(ev) {
  ev.preventDefault();
  const input = $('#token');
  const token = input.value.trim();
  const err = $('#login-error');
  err.textContent = '';
  try {
    await api('GET', '/v1/profiles', undefined, token);
  } catch (e) {
    err.textContent = e instanceof ApiError && e.status === 401 ? 'That token was refused. Check it, or make a new one with strata token create NAME.' : e.message;
    input.focus();
    return;
  }
  session.set(token);
  input.value = '';
  enter();
}

function logout(message = '') {
  session.clear();
  seen.clear();
  S.gc = { preview: null, commits: [], freed: null, stale: false, busy: false };
  S.commitCache.clear();
  if ($('#gc-result')) renderGc();
  S.loggedIn = false;
  if (S.stopEvents) S.stopEvents();
  S.stopEvents = null;
  for (const v of VIEWS) $(`#view-${v}`).hidden = true;
  $('#nav').hidden = true;
  $('#session').hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = message;
  $('#token').focus();
}

function enter() {
  S.loggedIn = true;
  $('#login').hidden = true;
  $('#nav').hidden = false;
  $('#session').hidden = false;
  route();
  void reload();
  setLive('connecting…', 'wait');
  S.stopEvents = streamEvents(onEvent, (state) => {
    if (state === 'live') {
      setLive('live', 'ok');
      // Events may have been missed while disconnected: catch up.
      schedule(...Object.keys(LOADERS));
    } else if (state === 'unauthorized') logout('The server refused the token; log in again.');
    else setLive('reconnecting…', 'wait');
  });
}

function setLive(text, cls) {
  const l = $('#live');
  l.textContent = text === 'live' ? 'Live updates on' : `Live updates ${text}`;
  l.className = `live ${cls}`;
}

function onEvent(e) {
  const d = e.data ?? {};
  if (e.type === 'push') {
    schedule('pushes');
    if (d.state === 'committed') schedule('profiles');
    if (d.state === 'committed' || d.state === 'rejected') toast(`Push ${d.id} ${d.state}${d.reason ? `: ${d.reason}` : ''}`);
  } else if (e.type === 'client') {
    schedule('clients');
  } else if (e.type === 'ref') {
    schedule('profiles', 'assignments');
    // What gc would remove may have changed: the last check is no longer the truth.
    if (S.gc.preview && !S.gc.busy) {
      S.gc.stale = true;
      renderGc();
    }
  }
}

// ------------------------------------------------------------------ routing

function route() {
  if (!S.loggedIn) return;
  const v = location.hash.replace(/^#/, '');
  S.view = VIEWS.includes(v) ? v : 'profiles';
  for (const name of VIEWS) $(`#view-${name}`).hidden = name !== S.view;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === S.view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// ------------------------------------------------------------------ profiles

const currentProfile = () => S.profiles.find((p) => p.name === S.profile) ?? null;
const allCommits = () => [...S.graph.commits, ...S.held.commits];
const commitById = (id) => S.graph.commits.find((c) => c.id === id) ?? S.held.commits.find((c) => c.id === id) ?? null;
const branches = () => S.graph.refs.filter((r) => r.type === 'branch').map((r) => r.name).sort((a, b) => (a === S.profile ? -1 : b === S.profile ? 1 : a.localeCompare(b)));
const headOf = (branch) => S.graph.refs.find((r) => r.type === 'branch' && r.name === branch)?.commit ?? null;

function renderProfiles() {
  const list = $('#profile-list');
  list.replaceChildren(
    ...S.profiles.map((p) =>
      h('li', {}, h('button', {
        type: 'button', class: 'chip', 'aria-pressed': p.name === S.profile ? 'true' : 'false',
        onclick: () => selectProfile(p.name),
      }, p.name)),
    ),
  );
  if (!S.profiles.length) list.append(h('li', { class: 'muted' }, 'No profiles yet. Import a base on the server: strata import NAME SOURCE'));
  const p = currentProfile();
  $('#profile-detail').hidden = !p;
  if (!p) return;
  $('#profile-title').textContent = `Profile ${p.name}`;
  const head = p.head ? commitById(p.head) : null;
  $('#profile-facts').replaceChildren(
    h('dt', {}, 'Head'), h('dd', {}, p.head ? code(short(p.head)) : 'no commits', head ? ` ${head.message}` : ''),
    h('dt', {}, 'Kernel'), h('dd', {}, p.kernel ? [code(short(p.kernel.digest)), ` ${bytes(p.kernel.size)}`] : 'none'),
    h('dt', {}, 'Initrd'), h('dd', {}, p.initrd ? [code(short(p.initrd.digest)), ` ${bytes(p.initrd.size)}`] : 'none'),
    h('dt', {}, 'Layers'), h('dd', {}, `${p.compressor}${p.level ? ` level ${p.level}` : ''}`),
  );
  const cmd = $('#cmdline');
  if (document.activeElement !== cmd && cmd.dataset.profile !== `${p.name}\n${p.cmdline}`) {
    cmd.value = p.cmdline;
    cmd.dataset.profile = `${p.name}\n${p.cmdline}`;
  }
}

function selectProfile(name) {
  if (name === S.profile) return;
  S.profile = name;
  S.selected = null;
  renderProfiles();
  void reload(['profiles']);
}

async function saveCmdline(ev) {
  ev.preventDefault();
  const p = currentProfile();
  if (!p) return;
  const next = $('#cmdline').value.trim();
  const ok = await ask({
    title: `Change the command line of ${p.name}?`,
    body: [
      h('p', {}, 'Clients of this profile boot with these extra kernel arguments from their next boot on. Running clients are not affected.'),
      h('dl', { class: 'facts' }, h('dt', {}, 'Now'), h('dd', {}, p.cmdline ? code(p.cmdline) : h('span', { class: 'muted' }, '(empty)')), h('dt', {}, 'New'), h('dd', {}, next ? code(next) : h('span', { class: 'muted' }, '(empty)'))),
    ],
    ok: 'Save command line',
  });
  if (!ok) return;
  try {
    await api('PUT', `/v1/profiles/${enc(p.name)}/cmdline`, { cmdline: next });
    $('#cmdline').dataset.profile = '';
    toast(`Saved the command line of ${p.name}`);
    await reload(['profiles']);
  } catch (e) {
    await showError(e, 'Saving the command line');
  }
}

async function fillBaseChoices() {
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
    ...[...seen.values()].map((c) => h('option', { value: c.id }, `${c.profile}: ${c.message || 'base'} (${short(c.id)}, ${new Date(c.createdAt).toLocaleDateString()})`)),
  );
}

async function createProfile(ev) {
  ev.preventDefault();
  const name = $('#np-name').value.trim();
  const base = $('#np-base').value;
  if (!name || !base) return;
  if (name.includes('/')) {
    await ask({ title: 'Not a profile name', body: [h('p', {}, 'A profile name has no "/"; names with "/" are branches of a profile.')], ok: null });
    return;
  }
  const ok = await ask({
    title: `Create profile ${name}?`,
    body: [h('p', {}, 'A new profile ', code(name), ' whose branch starts at the imported base ', code(short(base)), '. It copies that base’s kernel, initrd, command line and compression settings. No client boots it until an assignment names it.')],
    ok: 'Create profile',
  });
  if (!ok) return;
  try {
    await api('POST', '/v1/branches', { name, commit: base });
    $('#np-name').value = '';
    $('#new-profile').open = false;
    S.profile = name;
    toast(`Created profile ${name}`);
    await reload(['profiles']);
  } catch (e) {
    await showError(e, 'Creating the profile');
  }
}

// ------------------------------------------------------------------ graph and commit

/** Why each held commit is kept, in short words ('reflog', 'pinned by 2 clients', ...). */
function heldInfo() {
  const known = { assignments: S.assignments.filter((a) => a.profile === S.profile), clients: S.clients, pushes: S.pushes };
  const inReflog = new Set(S.reflog.entries.flatMap((e) => [e.old, e.new]).filter(Boolean));
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
  return { refs: S.graph.refs, pins, clients, held: heldInfo(), head: currentProfile()?.head ?? null, selected: S.selected, profile: S.profile ?? '' };
}

function drawGraph() {
  if (!globalThis.dagre) return; // only if /vendor/dagre.min.js failed to load: the page still works, without the drawing
  const box = $('#graph');
  const focused = document.activeElement?.closest?.('#graph [data-commit]')?.getAttribute('data-commit');
  const scroll = [box.scrollLeft, box.scrollTop];
  renderGraph(box, allCommits(), graphInfo(), selectCommit);
  [box.scrollLeft, box.scrollTop] = scroll;
  if (focused) box.querySelector(`[data-commit="${focused}"]`)?.focus();
}

function selectCommit(id) {
  S.selected = id;
  for (const n of document.querySelectorAll('#graph [data-commit]')) {
    const on = n.getAttribute('data-commit') === id;
    n.classList.toggle('selected', on);
    n.setAttribute('aria-pressed', on ? 'true' : 'false');
  }
  renderCommit();
}

/** Commits from `from` back along first parents to `to`: how many `to` is behind, or -1. */
function firstParentDistance(from, to) {
  let n = 0;
  for (let c = commitById(from); c; c = c.parent ? commitById(c.parent) : null) {
    if (c.id === to) return n;
    n += 1;
  }
  return -1;
}

const chainOf = (c) => c.manifest.layers.map((l) => l.digest);
const addedLayerOf = (c) => (c.addedLayer ? c.manifest.layers.find((l) => l.digest === c.addedLayer) ?? null : null);
const chainBytes = (c) => c.manifest.layers.reduce((s, l) => s + l.size, 0);

async function diffOf(id) {
  if (!S.diffs.has(id)) S.diffs.set(id, api('GET', `/v1/commits/${id}/diff`).then((r) => r.diff));
  try {
    return await S.diffs.get(id);
  } catch (e) {
    S.diffs.delete(id);
    throw e;
  }
}

function diffSummary(d) {
  return `${d.added.length} added, ${d.changed.length} changed, ${d.deleted.length} deleted`;
}

function pathList(label, paths, cls) {
  const MAX = 200;
  if (!paths.length) return null;
  return h('details', { class: `paths ${cls}`, open: paths.length <= 12 ? true : undefined },
    h('summary', {}, `${label} (${paths.length})`),
    h('ul', {}, ...paths.slice(0, MAX).map((p) => h('li', {}, code(p))), paths.length > MAX ? h('li', { class: 'muted' }, `… and ${paths.length - MAX} more`) : null));
}

function renderCommit() {
  const pane = $('#commit');
  const c = S.selected ? commitById(S.selected) : null;
  if (!c) {
    pane.replaceChildren(h('h2', { id: 'commit-h' }, 'Commit'), h('p', { class: 'hint' }, 'Select a commit in the graph.'));
    return;
  }
  const layer = addedLayerOf(c);
  const refs = S.graph.refs.filter((r) => r.commit === c.id);
  const pins = S.assignments.filter((a) => a.profile === S.profile && a.pin && (a.pin === c.id || refs.some((r) => r.type === 'tag' && r.name === a.pin)));
  const running = S.clients.filter((x) => x.commit === c.id);
  const jump = (id) => h('button', { type: 'button', class: 'link', onclick: () => { selectCommit(id); $(`#graph [data-commit="${id}"]`)?.focus(); } }, short(id));
  const heldWhy = S.held.why.get(c.id);

  const facts = h('dl', { class: 'facts' },
    h('dt', {}, 'Message'), h('dd', { class: 'message' }, c.message || h('span', { class: 'muted' }, '(no message)')),
    h('dt', {}, 'Author'), h('dd', {}, c.author),
    h('dt', {}, 'Time'), h('dd', {}, time(c.createdAt)),
    h('dt', {}, 'Kind'), h('dd', {}, c.kind, c.mergeParent ? ' (merge)' : ''),
    h('dt', {}, 'Id'), h('dd', {}, h('code', { class: 'full-id' }, c.id)),
    heldWhy ? [
      h('dt', {}, 'Reachable'), h('dd', { class: 'held-note' }, 'No: on no branch or tag.'),
      h('dt', {}, 'Kept by'), h('dd', { class: 'held-note' }, `${heldInfo().get(c.id)?.join(', ') ?? 'gc'}. Roll back to it to bring it back; once nothing keeps it, gc removes it.`),
    ] : null,
    h('dt', {}, 'Parent'), h('dd', {}, c.parent ? (commitById(c.parent) ? jump(c.parent) : code(short(c.parent))) : 'none (a base)'),
    c.mergeParent ? [h('dt', {}, 'Merge parent'), h('dd', {}, commitById(c.mergeParent) ? jump(c.mergeParent) : code(short(c.mergeParent)))] : null,
    h('dt', {}, 'Layer'), h('dd', {}, layer ? [code(short(layer.digest)), ` ${bytes(layer.size)}`] : h('span', { class: 'muted' }, 'adds no layer')),
    h('dt', {}, 'Chain'), h('dd', {}, `${c.manifest.layers.length} layer${c.manifest.layers.length === 1 ? '' : 's'}, ${bytes(chainBytes(c))}`),
    refs.length ? [h('dt', {}, 'Refs'), h('dd', {}, refs.map((r) => `${r.type} ${r.name}`).join(', '))] : null,
    pins.length ? [h('dt', {}, 'Pinned by'), h('dd', {}, pins.map((a) => a.match).join(', '))] : null,
    h('dt', {}, 'Running now'), h('dd', {}, running.length ? running.map((x) => `${x.mac} (${x.ip || 'no IP'}, ${online(x) ? 'online' : 'offline'})`).join('; ') : h('span', { class: 'muted' }, 'no known client')),
  );

  const diffBox = h('div', { class: 'diff' }, h('p', { class: 'muted' }, 'Loading changes…'));
  const actions = renderActions(c);
  pane.replaceChildren(h('h2', { id: 'commit-h' }, 'Commit ', code(short(c.id))), facts, h('h3', {}, 'Changes'), diffBox, h('h3', {}, 'Actions'), actions);
  diffOf(c.id).then(
    (d) => {
      if (S.selected !== c.id) return;
      const lists = [pathList('Added', d.added, 'added'), pathList('Changed', d.changed, 'changed'), pathList('Deleted', d.deleted, 'deleted')].filter(Boolean);
      diffBox.replaceChildren(h('p', {}, c.parent ? `Against its parent ${short(c.parent)}: ` : 'Against an empty tree: ', diffSummary(d), '.'), ...lists);
    },
    (e) => diffBox.replaceChildren(h('p', { class: 'error' }, `Could not load the changes: ${e.message}`)),
  );
}

function renderActions(c) {
  const bs = branches();
  const branch = bs.includes(S.branch) ? S.branch : S.profile;
  const headId = headOf(branch);
  const head = headId ? commitById(headId) : null;
  const headChain = head ? chainOf(head) : [];
  const idx = c.addedLayer ? headChain.indexOf(c.addedLayer) : -1;

  const select = h('select', { id: 'act-branch', onchange: (ev) => { S.branch = ev.target.value; renderCommit(); $('#act-branch')?.focus(); } },
    ...bs.map((b) => h('option', { value: b, selected: b === branch ? true : undefined }, b === S.profile ? `${b} (the profile)` : b)));
  const btn = (label, onclick, enabled, why) => h('button', { type: 'button', onclick, disabled: enabled ? undefined : true, title: enabled ? undefined : why }, label);

  const canRollback = head && headId !== c.id;
  const canRevert = head && c.addedLayer && idx > 0;
  const canPick = head && c.addedLayer && c.kind !== 'import' && idx < 0;
  const canFlatten = head && head.manifest.layers.length >= 2;
  return h('div', { class: 'actions' },
    h('label', { for: 'act-branch' }, 'Branch to act on'), select,
    h('p', { class: 'hint' }, head ? ['Its head: ', code(short(headId)), ` ${head.message}`] : 'That branch has no head here.'),
    h('div', { class: 'buttons' },
      btn('Roll back to here…', () => doRollback(branch, c), canRollback, 'this commit is already the head of the branch'),
      btn('Revert…', () => doRevert(branch, c), canRevert, c.addedLayer ? 'the branch head does not carry this commit’s layer above its base' : 'this commit adds no layer'),
      btn('Cherry-pick onto branch…', () => doCherryPick(branch, c, false), canPick, c.addedLayer ? 'the branch already has this layer' : 'this commit adds no layer'),
      btn('Flatten branch…', () => doFlatten(branch, c), canFlatten, 'the branch head has fewer than two layers'),
      btn('Tag…', () => doTag(c), true),
      btn('Pin clients…', () => doPin(c), true),
      btn('New branch…', () => doBranch(c), true),
    ));
}

/** Runs an action after its confirmation; reloads and reports. */
async function perform(what, run, done) {
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

function describe(c) {
  return [code(short(c.id)), ` “${c.message || 'no message'}”`];
}

async function doRollback(branch, c) {
  const from = headOf(branch);
  const back = firstParentDistance(from, c.id);
  const ok = await ask({
    title: `Roll ${branch} back?`,
    body: [
      h('p', {}, 'Move branch ', code(branch), ' from ', ...describe(commitById(from)), ' to ', ...describe(c), '.'),
      h('ul', {},
        h('li', {}, back > 0 ? `The newest ${back} commit${back === 1 ? '' : 's'} leave${back === 1 ? 's' : ''} the branch (they stay in the reflog).` : 'This commit is not an ancestor of the head: the branch jumps there.'),
        branch === S.profile ? h('li', {}, `Clients that follow ${branch} boot ${short(c.id)} at their next boot; running clients keep what they booted.`) : null,
        h('li', {}, 'Recorded in the reflog: rolling back to ', code(short(from)), ' undoes it.')),
    ],
    ok: 'Roll back',
    danger: true,
  });
  if (!ok) return;
  await perform(`Rolling back ${branch}`, () => api('POST', `/v1/profiles/${enc(branch)}/rollback`, { to: c.id }), (r) => `${branch} is now at ${short(r.to)}`);
}

/** Rolls `branch` back to any commit by id (one in the reflog may be drawn nowhere: fetch it). */
async function doRollbackTo(branch, id) {
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

// ------------------------------------------------------------------ reflog

function renderReflog() {
  const sel = $('#reflog-branch');
  const branch = S.reflog.branch;
  const bs = branches();
  if (document.activeElement !== sel) {
    sel.replaceChildren(...bs.map((b) => h('option', { value: b, selected: b === branch ? true : undefined }, b === S.profile ? `${b} (the profile)` : b)));
  }
  const box = $('#reflog-table');
  const entries = S.reflog.entries;
  if (!branch || !entries.length) {
    box.replaceChildren(h('p', { class: 'muted' }, 'No moves recorded for this branch.'));
    return;
  }
  const head = headOf(branch);
  const link = (id) => {
    if (!id) return h('span', { class: 'muted' }, 'none');
    if (!commitById(id)) return h('code', { title: id }, short(id));
    return h('button', { type: 'button', class: 'link', title: id, 'aria-label': `show commit ${short(id)} in the history`, onclick: () => { selectCommit(id); $(`#graph [data-commit="${id}"]`)?.focus(); } }, short(id));
  };
  const buttons = (e, i) => {
    const out = [];
    if (e.new === head) out.push(h('span', { class: 'state committed' }, 'current head'));
    // The newest move is the one an admin most likely wants to take back.
    if (i === 0 && e.old && e.old !== head) {
      out.push(h('button', { type: 'button', onclick: () => doRollbackTo(branch, e.old), 'aria-label': `Undo this ${e.action}: roll ${branch} back to ${short(e.old)}` }, `Undo: back to ${short(e.old)}…`));
    }
    if (e.new && e.new !== head) {
      out.push(h('button', { type: 'button', onclick: () => doRollbackTo(branch, e.new), 'aria-label': `Roll ${branch} back to ${short(e.new)}, its head after this ${e.action}` }, `Roll back to ${short(e.new)}…`));
    }
    return h('span', { class: 'buttons' }, ...out);
  };
  const shown = S.reflogAll ? entries : entries.slice(0, REFLOG_ROWS);
  box.replaceChildren(
    table(`Reflog of ${branch}, newest first`, [
      { label: 'When', cell: (e) => time(e.time) },
      { label: 'Action', cell: (e) => h('span', { class: 'action' }, e.action) },
      { label: 'Old → new', cell: (e) => h('span', { class: 'move' }, link(e.old), ' → ', link(e.new)) },
      { label: 'Message', cell: (e) => e.message || h('span', { class: 'muted' }, '(none)') },
      { label: 'Go back', cell: (e) => buttons(e, entries.indexOf(e)) },
    ], shown, (e) => (e.new === head ? 'reflog-head' : undefined)),
    entries.length > shown.length
      ? h('button', { type: 'button', class: 'quiet-link', onclick: () => { S.reflogAll = true; renderReflog(); } }, `Show all ${entries.length} moves`)
      : '',
  );
}

function chooseReflogBranch(ev) {
  S.reflogBranch = ev.target.value;
  S.reflogAll = false;
  void reload(['profiles']);
}

// ------------------------------------------------------------------ garbage collection

const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const gcWords = (r) => `${plural(r.commits.length, 'commit')} and ${plural(r.objects.length, 'object')} (${bytes(r.bytes)})`;

async function withCommits(r) {
  // Only the first 200 are named one by one; the counts and bytes cover all.
  const commits = await Promise.all(r.commits.slice(0, 200).map((id) => fetchCommit(id).catch(() => null)));
  return commits.filter(Boolean);
}

async function gcCheck() {
  if (S.gc.busy) return;
  S.gc.busy = true;
  renderGc('Checking what gc would remove…');
  try {
    const r = await api('POST', '/v1/gc', { dryRun: true });
    S.gc = { preview: r, commits: await withCommits(r), freed: null, stale: false, busy: false };
  } catch (e) {
    S.gc.busy = false;
    await showError(e, 'Checking what gc would remove');
  }
  renderGc();
}

const sameSet = (a, b) => a.length === b.length && a.every((x) => b.includes(x));

async function gcRun() {
  const p = S.gc.preview;
  if (!p || S.gc.busy) return;
  const ok = await ask({
    title: 'Delete for good?',
    body: [
      h('p', {}, `gc removes ${gcWords(p)} from the store.`),
      h('ul', {},
        h('li', {}, 'This cannot be undone: a removed commit can no longer be rolled back to, and its layers are gone from disk.'),
        h('li', {}, 'Reflog entries older than the store keeps them are dropped too.'),
        h('li', {}, 'Commits on a branch or tag, in a recent reflog entry, pinned, or booted by a client are never removed.')),
    ],
    ok: 'Delete now',
    danger: true,
  });
  if (!ok) return;
  S.gc.busy = true;
  renderGc('Removing…');
  try {
    // Look once more right before deleting: if the set changed since the
    // check (a rollback, a push), show the new set and ask again rather than
    // delete something the admin never saw.
    const again = await api('POST', '/v1/gc', { dryRun: true });
    if (!sameSet(again.commits, p.commits) || !sameSet(again.objects, p.objects)) {
      S.gc = { preview: again, commits: await withCommits(again), freed: null, stale: false, busy: false };
      renderGc();
      await ask({ title: 'What gc would remove changed', body: [h('p', {}, `Since your check the store changed: gc would now remove ${gcWords(again)}. Nothing was deleted. Look at the new list and confirm again.`)], ok: null });
      return;
    }
    const r = await api('POST', '/v1/gc', { dryRun: false });
    S.gc = { preview: null, commits: S.gc.commits, freed: r, stale: false, busy: false };
    toast(`gc freed ${bytes(r.bytes)}`);
    renderGc();
    $('#gc-result h2')?.focus();
    void reload(['profiles']);
  } catch (e) {
    S.gc.busy = false;
    renderGc();
    await showError(e, 'Garbage collection');
  }
}

function gcTables(r, commits) {
  const out = [];
  const byId = new Map(commits.map((c) => [c.id, c]));
  if (r.commits.length) {
    out.push(h('h3', {}, `Commits (${r.commits.length})`));
    out.push(table('Commits', [
      { label: 'Commit', cell: (id) => h('code', { title: id }, short(id)) },
      { label: 'Profile', cell: (id) => byId.get(id)?.profile ?? '—' },
      { label: 'Message', cell: (id) => byId.get(id)?.message || h('span', { class: 'muted' }, '(none)') },
      { label: 'Made', cell: (id) => (byId.get(id) ? time(byId.get(id).createdAt) : '—') },
    ], r.commits.slice(0, 200)));
  }
  if (r.objects.length) {
    out.push(h('h3', {}, `Objects on disk (${r.objects.length})`));
    out.push(table('Objects', [
      { label: 'Object', cell: (o) => h('code', { title: `sha256:${o.digest}` }, short(o.digest)) },
      { label: 'What', cell: (o) => [o.what, ...(o.commits.length ? [' of ', ...o.commits.slice(0, 3).flatMap((id, i) => [i ? ', ' : '', code(short(id))])] : [])] },
      { label: 'Size', cell: (o) => (o.size === null ? '—' : bytes(o.size)) },
    ], describeGcObjects(r.objects.slice(0, 500), commits), (o) => `gc-object gc-${o.what.replace(/\W+/g, '-')}`));
  }
  return out;
}

function renderGc(busyText) {
  const box = $('#gc-result');
  $('#gc-check').disabled = S.gc.busy;
  if (busyText) {
    box.replaceChildren(h('p', { class: 'muted' }, busyText));
    return;
  }
  const { preview, freed, commits, stale } = S.gc;
  if (freed) {
    box.replaceChildren(
      h('h2', { tabindex: '-1' }, 'Removed'),
      h('p', { id: 'gc-summary', class: 'done' }, freed.commits.length || freed.objects.length ? `Freed ${bytes(freed.bytes)}: removed ${gcWords(freed)}.` : 'Nothing was removed: everything was still kept.'),
      ...gcTables(freed, commits),
    );
    return;
  }
  if (!preview) {
    box.replaceChildren(h('p', { class: 'muted' }, 'Not checked yet.'));
    return;
  }
  const empty = !preview.commits.length && !preview.objects.length;
  box.replaceChildren(
    h('h2', {}, 'gc would remove'),
    h('p', { id: 'gc-summary' }, empty ? 'Nothing: every commit and object is still kept.' : `${gcWords(preview)}. Nothing has been deleted yet.`),
    stale ? h('p', { class: 'error', role: 'status' }, 'The store changed since this check; check again before deleting.') : '',
    ...gcTables(preview, commits),
    empty ? '' : h('div', { class: 'buttons' }, h('button', { type: 'button', id: 'gc-run', class: 'danger', onclick: gcRun, disabled: stale ? true : undefined }, 'Delete these now…')),
  );
}

async function diffLine(c) {
  try {
    return h('li', {}, `This commit’s changes: ${diffSummary(await diffOf(c.id))}.`);
  } catch {
    return null;
  }
}

async function doRevert(branch, c) {
  const layer = addedLayerOf(c);
  const ok = await ask({
    title: `Revert ${short(c.id)} on ${branch}?`,
    body: [
      h('p', {}, 'A new commit on ', code(branch), ' whose chain no longer has the layer ', code(short(c.addedLayer)), ` (${bytes(layer?.size)}) that `, ...describe(c), ' added.'),
      h('ul', {}, await diffLine(c), h('li', {}, 'Later layers that changed the same paths keep their version.'), h('li', {}, 'Nothing is deleted; roll back to undo.')),
    ],
    ok: 'Revert',
    danger: true,
  });
  if (!ok) return;
  await perform(`Reverting ${short(c.id)}`, () => api('POST', `/v1/profiles/${enc(branch)}/revert`, { commit: c.id }), (r) => `Reverted: new commit ${short(r.commit.id)} on ${branch}`);
}

async function doCherryPick(branch, c, force) {
  const layer = addedLayerOf(c);
  if (!force) {
    const ok = await ask({
      title: `Cherry-pick ${short(c.id)} onto ${branch}?`,
      body: [
        h('p', {}, 'A new commit on ', code(branch), ' that stacks the layer of ', ...describe(c), ` (${bytes(layer?.size)}, reused as is) on top of its head `, code(short(headOf(branch))), '.'),
        h('ul', {}, await diffLine(c), h('li', {}, 'Refused, with the list of paths, if the branch changed the same paths since the two diverged.')),
      ],
      ok: 'Cherry-pick',
    });
    if (!ok) return;
  }
  try {
    await perform(`Cherry-picking ${short(c.id)}`, () => api('POST', `/v1/profiles/${enc(branch)}/cherry-pick`, { commit: c.id, force }), (r) => `Cherry-picked: new commit ${short(r.commit.id)} on ${branch}`);
  } catch (e) {
    const paths = Array.isArray(e.details?.paths) ? e.details.paths : [];
    const again = await ask({
      title: 'Cherry-pick refused: conflicts',
      body: [
        h('p', {}, code(branch), ` changed ${paths.length} of the same path${paths.length === 1 ? '' : 's'} since it diverged from `, code(short(c.id)), '. Nothing was changed.'),
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

async function doFlatten(branch, c) {
  const head = commitById(headOf(branch));
  const hc = chainOf(head);
  const cc = chainOf(c);
  const isPrefix = c.id !== head.id && cc.length <= hc.length - 2 && cc.every((d, i) => hc[i] === d);
  const partial = h('input', { type: 'checkbox', id: 'fl-from' });
  const ok = await ask({
    title: `Flatten ${branch}?`,
    body: [
      h('p', {}, `Bake the ${hc.length} layers of `, code(branch), `’s head (${bytes(chainBytes(head))}) into one layer and commit it on `, code(branch), '. The files stay the same; the chain gets shorter, so clients mount fewer layers.'),
      isPrefix ? h('p', { class: 'check' }, partial, h('label', { for: 'fl-from' }, ` Only the ${hc.length - cc.length} layers above ${short(c.id)} (keep its ${cc.length} layer${cc.length === 1 ? '' : 's'} as they are)`)) : null,
      h('p', { class: 'muted' }, 'This bakes a new squashfs and may take a while for big images.'),
    ],
    ok: 'Flatten',
  });
  if (!ok) return;
  const from = isPrefix && partial.checked ? c.id : undefined;
  await perform(`Flattening ${branch}`, () => api('POST', `/v1/profiles/${enc(branch)}/flatten`, from ? { from } : {}), (r) => `Flattened: new commit ${short(r.commit.id)} on ${branch}`);
}

async function doTag(c) {
  const input = h('input', { id: 'tag-name', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]*', autocomplete: 'off', spellcheck: 'false' });
  const ok = await ask({
    title: `Tag ${short(c.id)}`,
    body: [h('p', {}, 'Give ', ...describe(c), ' a name. Tags never move; an assignment pinned to a tag follows it.'), h('label', { for: 'tag-name' }, 'Tag name'), input],
    ok: 'Create tag',
  });
  if (!ok) return;
  const name = input.value.trim();
  await perform(`Tagging ${short(c.id)}`, () => api('POST', '/v1/tags', { name, commit: c.id }), () => `Tagged ${short(c.id)} as ${name}`);
}

async function doBranch(c) {
  const input = h('input', { id: 'branch-name', required: true, value: `${S.profile}/`, autocomplete: 'off', spellcheck: 'false' });
  const ok = await ask({
    title: `New branch at ${short(c.id)}`,
    body: [h('p', {}, 'A branch starting at ', ...describe(c), '. ', code(`${S.profile}/NAME`), ` belongs to ${S.profile}; a bare NAME makes a new profile.`), h('label', { for: 'branch-name' }, 'Branch name'), input],
    ok: 'Create branch',
  });
  if (!ok) return;
  const name = input.value.trim();
  await perform(`Creating branch ${name}`, () => api('POST', '/v1/branches', { name, commit: c.id }), () => `Created branch ${name}`);
}

/** A preview of which known clients a rule would catch, as a list. */
function previewNodes(rule, remove) {
  const rows = previewChange(S.assignments, S.clients, { add: rule, remove });
  const nameOf = (a) => (a ? `${a.match} → ${a.profile}${a.pin ? `@${a.pin.length === 64 ? short(a.pin) : a.pin}` : ''}` : 'nothing (no boot)');
  const caught = rows.filter((r) => r.caught);
  const released = rows.filter((r) => !r.caught);
  const out = [];
  if (rule) {
    out.push(h('p', {}, `Would catch ${caught.length} of ${S.clients.length} known client${S.clients.length === 1 ? '' : 's'}${caught.length ? ':' : '.'}`));
    if (caught.length) out.push(h('ul', { class: 'catch' }, ...caught.map((r) => h('li', {}, code(r.client.mac), ` ${r.client.ip || 'no IP'} — today: ${nameOf(r.before)}`))));
  }
  if (released.length) {
    out.push(h('p', {}, `${released.length} client${released.length === 1 ? '' : 's'} would fall through to another rule:`));
    out.push(h('ul', { class: 'catch' }, ...released.map((r) => h('li', {}, code(r.client.mac), ` ${r.client.ip || 'no IP'} — then: ${nameOf(r.after)}`))));
  }
  return out;
}

async function doPin(c) {
  const input = h('input', { id: 'pin-match', required: true, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'pin-hint' });
  const preview = h('div', { class: 'preview', 'aria-live': 'polite' });
  const update = () => {
    const m = parseMatch(input.value);
    input.setCustomValidity(m || !input.value.trim() ? '' : 'not a MAC, IP, CIDR or default');
    preview.replaceChildren(...(m ? previewNodes({ ...m, profile: S.profile, pin: c.id, cmdline: '' }, null) : [h('p', { class: 'muted' }, input.value.trim() ? 'Not a MAC, an IP, a CIDR or default.' : 'Type a match to see which clients it catches.')]));
  };
  input.addEventListener('input', update);
  const body = [
    h('p', {}, 'Clients that match boot ', code(S.profile), ' at ', ...describe(c), ' and stay there until the pin changes, instead of following the head. An existing rule with the same match is replaced.'),
    h('label', { for: 'pin-match' }, 'Match'), input,
    h('p', { id: 'pin-hint', class: 'hint' }, 'A MAC, an IP, a CIDR or default.'),
    preview,
  ];
  update();
  const ok = await ask({ title: `Pin clients to ${short(c.id)}`, body, ok: 'Pin' });
  if (!ok) return;
  const m = parseMatch(input.value);
  if (!m) return;
  await perform(`Pinning ${m.match}`, () => api('PUT', '/v1/assignments', { match: m.match, target: `${S.profile}@${c.id}` }), () => `Pinned ${m.match} to ${S.profile}@${short(c.id)}`);
}

// ------------------------------------------------------------------ clients

const online = (c) => Date.now() - c.lastSeen < ONLINE_MS;

/** A table that turns into labelled cards on narrow screens (CSS uses data-label). */
function table(caption, columns, rows, rowClass) {
  return h('table', { class: 'data' },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, ...columns.map((c) => h('th', { scope: 'col' }, c.label)))),
    h('tbody', {}, ...rows.map((r) => h('tr', { class: rowClass ? rowClass(r) : undefined }, ...columns.map((c) => h('td', { 'data-label': c.label }, h('div', { class: 'cell' }, c.cell(r))))))));
}

function showCommit(profile, id) {
  location.hash = '#profiles';
  S.selected = id;
  if (profile && profile !== S.profile) {
    S.profile = profile;
    S.graphFor = null;
    void reload(['profiles']).then(() => selectCommit(id));
  } else selectCommit(id);
}

function renderClients() {
  const box = $('#clients-table');
  const on = S.clients.filter(online).length;
  $('#count-clients').textContent = S.clients.length ? `(${on}/${S.clients.length} online)` : '';
  if (!S.clients.length) {
    box.replaceChildren(h('p', { class: 'muted' }, 'No client has booted yet.'));
    return;
  }
  const heads = new Map(S.profiles.map((p) => [p.name, p.head]));
  box.replaceChildren(table('Known clients', [
    { label: 'MAC', cell: (c) => code(c.mac) },
    { label: 'IP', cell: (c) => c.ip || '—' },
    { label: 'Status', cell: (c) => h('span', { class: `state ${online(c) ? 'online' : 'offline'}` }, online(c) ? 'online' : 'offline') },
    { label: 'Profile', cell: (c) => c.profile ?? '—' },
    { label: 'Runs', cell: (c) => c.commit ? [h('button', { type: 'button', class: 'link', onclick: () => showCommit(c.profile, c.commit), 'aria-label': `show commit ${short(c.commit)} in the history` }, short(c.commit)), heads.get(c.profile) === c.commit ? ' (head)' : ' (not the head)'] : '—' },
    { label: 'Last boot', cell: (c) => time(c.lastBoot) },
    { label: 'Last seen', cell: (c) => time(c.lastSeen) },
    { label: 'Matched', cell: (c) => c.assignment ? code(c.assignment) : '—' },
  ], S.clients, (c) => (online(c) ? 'online' : 'offline')));
}

// ------------------------------------------------------------------ assignments

function renderAssignments() {
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
  box.replaceChildren(table('Assignments', [
    { label: 'Match', cell: (a) => code(a.match) },
    { label: 'Kind', cell: (a) => a.kind },
    { label: 'Profile', cell: (a) => a.profile },
    { label: 'Pin', cell: (a) => (a.pin ? code(a.pin.length === 64 ? short(a.pin) : a.pin) : h('span', { class: 'muted' }, 'follows head')) },
    { label: 'Command line', cell: (a) => (a.cmdline ? code(a.cmdline) : '—') },
    { label: 'Catches now', cell: (a) => String(catches.get(a.match) ?? 0) },
    { label: 'Actions', cell: (a) => h('span', { class: 'buttons' },
      h('button', { type: 'button', onclick: () => editAssignment(a), 'aria-label': `Edit assignment ${a.match}` }, 'Edit'),
      h('button', { type: 'button', class: 'danger', onclick: () => removeAssignment(a), 'aria-label': `Remove assignment ${a.match}` }, 'Remove')) },
  ], S.assignments));
}

function renderAssignForm() {
  const sel = $('#as-profile');
  const keep = sel.value;
  sel.replaceChildren(...S.profiles.map((p) => h('option', { value: p.name }, p.name)));
  if (S.profiles.some((p) => p.name === keep)) sel.value = keep;
}

function formRule() {
  const m = parseMatch($('#as-match').value);
  if (!m) return null;
  const pin = $('#as-pin').value.trim();
  return { ...m, profile: $('#as-profile').value, pin: pin || null, cmdline: $('#as-cmdline').value.trim() };
}

function renderPreview() {
  const box = $('#assign-preview');
  const text = $('#as-match').value.trim();
  const rule = formRule();
  $('#as-match').setCustomValidity(rule || !text ? '' : 'not a MAC, IP, CIDR or default');
  if (!text) return box.replaceChildren(h('p', { class: 'muted' }, 'Type a match to see which known clients it would catch.'));
  if (!rule) return box.replaceChildren(h('p', { class: 'error' }, 'Not a MAC (aa:bb:cc:dd:ee:ff), an IP (10.0.0.7), a CIDR (10.0.0.0/24) or default.'));
  const remove = S.editing && S.editing !== rule.match ? S.editing : null;
  box.replaceChildren(h('h3', {}, 'Preview'), ...previewNodes(rule, remove));
}

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

function resetAssignForm() {
  S.editing = null;
  for (const id of ['#as-match', '#as-pin', '#as-cmdline']) $(id).value = '';
  $('#assign-form-h').textContent = 'Add an assignment';
  $('#as-submit').textContent = 'Add assignment…';
  $('#as-cancel').hidden = true;
  renderPreview();
}

async function submitAssignment(ev) {
  ev.preventDefault();
  const rule = formRule();
  if (!rule) return;
  const old = S.editing;
  const target = rule.pin ? `${rule.profile}@${rule.pin}` : rule.profile;
  const replaces = S.assignments.find((a) => a.match === rule.match);
  const ok = await ask({
    title: old ? `Save assignment ${rule.match}?` : `Add assignment ${rule.match}?`,
    body: [
      h('p', {}, 'Clients matching ', code(rule.match), ' boot ', code(target), rule.pin ? ' (pinned: it does not follow the head)' : ' (following its head)', rule.cmdline ? [' with ', code(rule.cmdline)] : '', ', from their next boot on.'),
      replaces && replaces.match !== old ? h('p', {}, 'It replaces the rule ', code(`${replaces.match} → ${replaces.profile}`), '.') : null,
      old && old !== rule.match ? h('p', {}, 'The rule ', code(old), ' is removed.') : null,
      ...previewNodes(rule, old && old !== rule.match ? old : null),
    ],
    ok: old ? 'Save assignment' : 'Add assignment',
  });
  if (!ok) return;
  try {
    await api('PUT', '/v1/assignments', { match: rule.match, target, cmdline: rule.cmdline });
    if (old && old !== rule.match) await api('DELETE', `/v1/assignments?match=${enc(old)}`);
    toast(`Saved assignment ${rule.match} → ${target}`);
    resetAssignForm();
    await reload(['assignments']);
  } catch (e) {
    await showError(e, 'Saving the assignment');
  }
}

async function removeAssignment(a) {
  const ok = await ask({
    title: `Remove assignment ${a.match}?`,
    body: [h('p', {}, 'Clients matching ', code(a.match), ` no longer get ${a.profile} from this rule at their next boot.`), ...previewNodes(null, a.match)],
    ok: 'Remove',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('DELETE', `/v1/assignments?match=${enc(a.match)}`);
    if (S.editing === a.match) resetAssignForm();
    toast(`Removed assignment ${a.match}`);
    await reload(['assignments']);
  } catch (e) {
    await showError(e, 'Removing the assignment');
  }
}

// ------------------------------------------------------------------ pushes

function renderPushes() {
  const box = $('#pushes-table');
  const waiting = S.pushes.filter((p) => p.state === 'queued' || p.state === 'baking').length;
  $('#count-pushes').textContent = waiting ? `(${waiting} waiting)` : '';
  if (!S.pushes.length) {
    box.replaceChildren(h('p', { class: 'muted' }, 'No pushes yet.'));
    return;
  }
  box.replaceChildren(table('Pushes, newest first', [
    { label: 'Push', cell: (p) => code(p.id) },
    { label: 'State', cell: (p) => h('span', { class: `state ${p.state}` }, p.state) },
    { label: 'Profile', cell: (p) => p.profile },
    { label: 'Message', cell: (p) => p.message || h('span', { class: 'muted' }, '(none)') },
    { label: 'Author', cell: (p) => p.author },
    { label: 'Size', cell: (p) => bytes(p.bytes) },
    { label: 'Pushed', cell: (p) => time(p.createdAt) },
    { label: 'Result', cell: (p) => {
      if (p.state === 'rejected') return h('span', { class: 'reason' }, p.reason ?? 'rejected');
      if (p.state === 'committed' && p.commit) return [h('button', { type: 'button', class: 'link', onclick: () => showCommit(p.profile, p.commit) }, short(p.commit)), p.branch ? [' on new branch ', code(p.branch)] : ` on ${p.profile}`];
      return h('span', { class: 'muted' }, p.state === 'baking' ? 'baking a layer…' : 'waiting');
    } },
  ], S.pushes, (p) => `push-${p.state}`));
}

// ------------------------------------------------------------------ start

function start() {
  window.addEventListener('hashchange', () => {
    route();
    $(`#view-${S.view} h1`)?.setAttribute('tabindex', '-1');
    $(`#view-${S.view} h1`)?.focus();
  });
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', () => logout('Logged out.'));
  $('#cmdline-form').addEventListener('submit', saveCmdline);
  $('#new-profile').addEventListener('toggle', () => { if ($('#new-profile').open) void fillBaseChoices(); });
  $('#new-profile-form').addEventListener('submit', createProfile);
  $('#assign-form').addEventListener('submit', submitAssignment);
  $('#assign-form').addEventListener('input', renderPreview);
  $('#as-cancel').addEventListener('click', resetAssignForm);
  $('#reflog-branch').addEventListener('change', chooseReflogBranch);
  $('#gc-check').addEventListener('click', gcCheck);
  $('#online-minutes').textContent = String(ONLINE_MS / 60000);
  // Online/offline and "n min ago" change with time alone.
  setInterval(() => { if (S.loggedIn) { renderClients(); renderPushes(); } }, 30_000);
  // Changes made with the strata command on the server send no event: look now and then.
  setInterval(() => { if (S.loggedIn && document.visibilityState === 'visible') void reload(); }, 60_000);
  renderPreview();
  renderGc();
  if (session.get()) enter();
  else logout();
}

// dagre is a deferred classic script before this module: both run after parsing, in order.
start();
