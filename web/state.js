// @ts-check
/**
 * The page's state, in one object: each part of the page is re-rendered from
 * it when its data is reloaded; and the lookups derived from it.
 */

export const ONLINE_MS = 5 * 60 * 1000;
export const VIEWS = ['profiles', 'clients', 'assignments', 'pushes', 'gc', 'builds'];

/** @typedef {import('./api-types.js').PageState} PageState */

/**
 * The storage view before any check: nothing shown, nothing running.
 * @returns {import('./api-types.js').GcView}
 */
export const noGc = () => ({ preview: null, commits: [], freed: null, stale: false, busy: false });

/** @type {PageState} */
export const S = {
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
  gc: noGc(),
  selected: null,
  branch: null,
  assignments: [],
  clients: [],
  /** Client keys held for approval (GET /v1/keys/pending). */
  pendingKeys: [],
  pushes: [],
  diffs: new Map(),
  editing: null,
  stopEvents: null,
  loggedIn: false,
};

// ------------------------------------------------------------------ lookups

export const currentProfile = () => S.profiles.find((p) => p.name === S.profile) ?? null;
export const allCommits = () => [...S.graph.commits, ...S.held.commits];
/** @param {string | null} id */
export const commitById = (id) => S.graph.commits.find((c) => c.id === id) ?? S.held.commits.find((c) => c.id === id) ?? null;
export const branches = () =>
  S.graph.refs
    .filter((r) => r.type === 'branch')
    .map((r) => r.name)
    .sort((a, b) => (a === S.profile ? -1 : b === S.profile ? 1 : a.localeCompare(b)));
/** @param {string | null} branch */
export const headOf = (branch) => S.graph.refs.find((r) => r.type === 'branch' && r.name === branch)?.commit ?? null;
/** @param {{ lastSeen: number }} c */
export const online = (c) => Date.now() - c.lastSeen < ONLINE_MS;
