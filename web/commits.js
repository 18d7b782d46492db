// @ts-check
/**
 * What the page reads off commits: their layers and chain, how far back one
 * is along first parents, and the commits and diffs fetched one by one
 * (immutable, so cached for the session).
 */
import { api } from './api.js';
import { enc } from './dom.js';
import { S, commitById } from './state.js';

/**
 * The promise cached under `key`, made by load() once; a failure is forgotten so the next call tries again.
 * @template T
 * @param {Map<string, Promise<T>>} cache
 * @param {string} key
 * @param {() => Promise<T>} load
 * @returns {Promise<T>}
 */
async function cached(cache, key, load) {
  if (!cache.has(key)) cache.set(key, load());
  try {
    return await /** @type {Promise<T>} */ (cache.get(key));
  } catch (e) {
    cache.delete(key);
    throw e;
  }
}

/** @typedef {import('./api-types.js').Commit} Commit */

/** @param {string} id @returns {Promise<Commit>} */
export const fetchCommit = (id) =>
  cached(S.commitCache, id, () =>
    api('GET', `/v1/commits/${enc(id)}`).then((/** @type {import('./api-types.js').CommitResponse} */ r) => r.commit),
  );
/** @param {string} id @returns {Promise<import('./api-types.js').DiffResult>} */
export const diffOf = (id) =>
  cached(S.diffs, id, () => api('GET', `/v1/commits/${id}/diff`).then((/** @type {import('./api-types.js').DiffResponse} */ r) => r.diff));

/** @param {import('./api-types.js').DiffResult} d */
export function diffSummary(d) {
  return `${d.added.length} added, ${d.changed.length} changed, ${d.deleted.length} deleted`;
}

/** @param {Commit} c */
export const chainOf = (c) => c.manifest.layers.map((l) => l.digest);
/** @param {Commit} c */
export const addedLayerOf = (c) => (c.addedLayer ? (c.manifest.layers.find((l) => l.digest === c.addedLayer) ?? null) : null);
/** @param {Commit} c */
export const chainBytes = (c) => c.manifest.layers.reduce((s, l) => s + l.size, 0);

/**
 * Commits from `from` back along first parents to `to`: how many `to` is behind, or -1.
 * @param {string} from
 * @param {string} to
 */
export function firstParentDistance(from, to) {
  let n = 0;
  for (let c = commitById(from); c; c = c.parent ? commitById(c.parent) : null) {
    if (c.id === to) return n;
    n += 1;
  }
  return -1;
}
