// @ts-check
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
import { S, allCommits, branches, currentProfile } from './state.js';
import { wired } from './wiring.js';

/**
 * Data seen last, per kind: a reload that brings nothing new re-renders
 * nothing, so the periodic refresh never steals focus or collapses details.
 */
/** @type {Map<string, string>} */
const seen = new Map();
/**
 * @param {string} key
 * @param {unknown} data
 */
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
  /** @type {import('./api-types.js').ProfilesResponse} */
  const { profiles } = await api('GET', '/v1/profiles');
  if (unchanged('profiles', profiles) && profiles.some((p) => p.name === S.profile)) return;
  S.profiles = profiles;
  if (!S.profile || !profiles.some((p) => p.name === S.profile)) S.profile = profiles[0]?.name ?? null;
  wired.renderProfiles();
  wired.renderAssignForm();
}

async function loadGraph() {
  if (!S.profile) {
    S.graph = { commits: [], refs: [] };
    S.held = { commits: [], why: new Map() };
    S.reflog = { branch: null, entries: [] };
    S.graphFor = null;
  } else {
    const name = S.profile;
    /** @type {[import('./api-types.js').GraphResponse, import('./api-types.js').GcRootsResponse]} */
    const [g, { roots }] = await Promise.all([api('GET', `/v1/profiles/${enc(name)}/graph`), api('GET', '/v1/gc/roots')]);
    if (name !== S.profile) return; // the user switched profile meanwhile
    const drawn = new Set(g.commits.map((c) => c.id));
    const branchNames = g.refs.filter((r) => r.type === 'branch').map((r) => r.name);
    const rb = S.graphFor === name && S.reflogBranch && branchNames.includes(S.reflogBranch) ? S.reflogBranch : name;
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
  if (!S.branch || !branches().includes(S.branch)) S.branch = S.profile;
  wired.renderProfiles(); // the head's message comes from the graph
  wired.drawGraph();
  wired.renderCommit();
  wired.renderReflog();
}

/**
 * One list of the API into S[kind]; when it changed, `renders` redraw what shows it.
 * @param {'clients' | 'assignments' | 'pushes' | 'pendingKeys'} kind
 * @param {string} path
 * @param {(keyof import('./wiring.js').Wired)[]} renders
 */
async function loadList(kind, path, ...renders) {
  const { [kind]: list } = await api('GET', path);
  if (unchanged(kind, list)) return;
  S[kind] = list;
  for (const render of renders) wired[render]();
}

const LOADERS = {
  profiles: async () => {
    await loadProfiles();
    await loadGraph();
  },
  clients: async () => {
    await loadList('clients', '/v1/clients', 'renderClients', 'renderAssignments', 'renderPreview', 'drawGraph', 'renderCommit');
    await loadList('pendingKeys', '/v1/keys/pending', 'renderPendingKeys');
  },
  assignments: () => loadList('assignments', '/v1/assignments', 'renderAssignments', 'renderPreview', 'drawGraph', 'renderCommit'),
  pushes: () => loadList('pushes', '/v1/pushes?limit=200', 'renderPushes'),
};

/** @typedef {keyof typeof LOADERS} Kind */

/** Every kind of data the page loads. */
export const KINDS = /** @type {Kind[]} */ (Object.keys(LOADERS));

/** @type {Set<Kind>} */
let pending = new Set();
/** @type {ReturnType<typeof setTimeout> | undefined} */
let pendingTimer;
/**
 * Coalesces reloads: a burst of events becomes one request per kind of data.
 * @param {Kind[]} kinds
 */
export function schedule(...kinds) {
  for (const k of kinds) pending.add(k);
  clearTimeout(pendingTimer);
  pendingTimer = setTimeout(() => {
    const todo = pending;
    pending = new Set();
    void reload([...todo]);
  }, 120);
}

/** @param {Kind[]} [kinds] */
export async function reload(kinds = KINDS) {
  try {
    await Promise.all(kinds.map((k) => LOADERS[k]()));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) wired.logout('The server refused the token; log in again.');
    else toast(`Could not load: ${e instanceof Error ? e.message : e}`);
  }
}

/**
 * Makes a change the admin confirmed: run() calls the API; then the toast
 * says `done` and `kinds` are reloaded. A failure is shown as what did not work.
 * @param {string} what
 * @param {() => Promise<unknown>} run
 * @param {string} done
 * @param {Kind[]} [kinds]
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
