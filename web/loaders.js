/**
 * Loading the admin API's data into the state and re-rendering the parts of
 * the page that show it. A burst of events becomes one request per kind of
 * data, and data that did not change re-renders nothing.
 */
import { api, ApiError } from './api.js';
import { fetchCommit } from './commits.js';
import { showError, toast } from './dialogs.js';
import { enc } from './dom.js';
import { collectHeld } from './held.js';
import { logout } from './session.js';
import { S, allCommits, branches, currentProfile } from './state.js';
import { renderAssignForm, renderAssignments, renderPreview } from './views/assignments.js';
import { renderClients } from './views/clients.js';
import { renderPendingKeys } from './views/pending-keys.js';
import { drawGraph, renderCommit } from './views/history.js';
import { renderProfiles } from './views/profiles.js';
import { renderPushes } from './views/pushes.js';
import { renderReflog } from './views/reflog.js';

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

/** After logging out: the next login renders everything afresh. */
export function forgetLoaded() {
  seen.clear();
}

async function loadProfiles() {
  const { profiles } = await api('GET', '/v1/profiles');
  if (unchanged('profiles', profiles) && profiles.some((p) => p.name === S.profile)) return;
  S.profiles = profiles;
  if (!S.profile || !profiles.some((p) => p.name === S.profile)) S.profile = profiles[0]?.name ?? null;
  renderProfiles();
  renderAssignForm();
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

/** One list of the API into S[kind]; when it changed, `renders` redraw what shows it. */
async function loadList(kind, path, ...renders) {
  const { [kind]: list } = await api('GET', path);
  if (unchanged(kind, list)) return;
  S[kind] = list;
  for (const render of renders) render();
}

const LOADERS = {
  profiles: async () => {
    await loadProfiles();
    await loadGraph();
  },
  clients: async () => {
    await loadList('clients', '/v1/clients', renderClients, renderAssignments, renderPreview, drawGraph, renderCommit);
    await loadList('pending', '/v1/keys/pending', () => {
      S.pendingKeys = S.pending;
      renderPendingKeys(() => reload(['clients', 'pushes']));
    });
  },
  assignments: () => loadList('assignments', '/v1/assignments', renderAssignments, renderPreview, drawGraph, renderCommit),
  pushes: () => loadList('pushes', '/v1/pushes?limit=200', renderPushes),
};

/** Every kind of data the page loads. */
export const KINDS = Object.keys(LOADERS);

let pending = new Set();
let pendingTimer = null;
/** Coalesces reloads: a burst of events becomes one request per kind of data. */
export function schedule(...kinds) {
  for (const k of kinds) pending.add(k);
  clearTimeout(pendingTimer);
  pendingTimer = setTimeout(() => {
    const todo = pending;
    pending = new Set();
    void reload([...todo]);
  }, 120);
}

export async function reload(kinds = KINDS) {
  try {
    await Promise.all(kinds.map((k) => LOADERS[k]()));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) logout('The server refused the token; log in again.');
    else toast(`Could not load: ${e.message}`);
  }
}

/**
 * Makes a change the admin confirmed: run() calls the API; then the toast
 * says `done` and `kinds` are reloaded. A failure is shown as what did not work.
 */
export async function change(what, run, done, kinds) {
  try {
    await run();
    toast(done);
    await reload(kinds);
  } catch (e) {
    await showError(e, what);
  }
}
