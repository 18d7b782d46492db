/**
 * Reading history: naming a commit (resolve), reading commits, logs and
 * graphs, and what each layer holds. Walks go through the commit index's
 * cache; the order and reachability rules are pure (store/dag.ts).
 */
import type { StoreCore } from './core.ts';
import { logOrder, reachable, nthFirstParent, touchedPaths, unionTouch, type TouchSet } from './dag.ts';
import { StrataError } from './errors.ts';
import { mergedTree } from './overlay-merge.ts';
import { getProfile } from './profiles.ts';
import type { Commit, CommitId, DiffResult, Digest, LayerEntry, LayerInfo, Ref } from './types.ts';

export function getCommit(core: StoreCore, id: string): Commit {
  const c = core.commits.get(id);
  if (!c) throw new StrataError('E_COMMIT_NOT_FOUND', `no commit ${id}`);
  return c;
}

export function manifestText(core: StoreCore, id: string): string {
  const m = core.t.commits.manifestText(id);
  if (m === undefined) throw new StrataError('E_COMMIT_NOT_FOUND', `no commit ${id}`);
  return m;
}

/**
 * Names a commit: full id, unique 7+ hex prefix, a tag, a branch or
 * profile (its head), NAME~N (N first parents back) or NAME@{N} (the
 * ref's value N moves ago, from the reflog).
 */
export function resolve(core: StoreCore, rev: string): CommitId {
  const r = rev.trim();
  const tilde = /^(.+?)~(\d*)$/.exec(r);
  if (tilde) {
    const base = resolve(core, tilde[1]!);
    const n = tilde[2] === '' ? 1 : Number(tilde[2]);
    const id = nthFirstParent(base, n, core.commits.lookup);
    if (!id) throw new StrataError('E_COMMIT_NOT_FOUND', `${r}: the history of ${tilde[1]} is not ${n} commit(s) deep`);
    return id;
  }
  const at = /^(.+)@\{(\d+)\}$/.exec(r);
  if (at) {
    const ref = at[1]!;
    const n = Number(at[2]);
    const e = core.t.refs.reflog(ref)[n];
    if (!e?.new) throw new StrataError('E_COMMIT_NOT_FOUND', `${r}: the reflog of ${ref} has no entry ${n} (see "strata reflog ${ref}")`);
    return e.new;
  }
  const ref = core.t.refs.get(r);
  if (ref) return ref.commit;
  if (/^[0-9a-f]{64}$/.test(r)) {
    if (core.t.commits.exists(r)) return r;
    throw new StrataError('E_COMMIT_NOT_FOUND', `no commit ${r}`);
  }
  if (/^[0-9a-f]{7,63}$/.test(r)) {
    const ids = core.t.commits.withPrefix(r, 11);
    if (ids.length === 1) return ids[0]!;
    if (ids.length > 1) {
      throw new StrataError(
        'E_AMBIGUOUS_REF',
        `${r} is ambiguous: it starts ${ids.length > 10 ? 'more than 10' : ids.length} commits (${ids
          .slice(0, 5)
          .map((x) => x.slice(0, 12))
          .join(', ')}); give more digits`,
        { candidates: ids },
      );
    }
  }
  if (/^[0-9a-f]{1,6}$/.test(r)) {
    throw new StrataError('E_COMMIT_NOT_FOUND', `${r}: a commit prefix needs at least 7 hex digits`);
  }
  throw new StrataError('E_COMMIT_NOT_FOUND', `no commit, tag, branch or profile named "${r}" (see "strata log PROFILE")`);
}

export function log(core: StoreCore, rev: string, opts: { limit?: number } = {}): Commit[] {
  const head = resolve(core, rev);
  // A cold process reads the whole table in one query (a 10,000-commit log
  // in one pass, not 10,000 lookups); a warm one (the server) only new rows.
  return logOrder([head], core.commits.whole(), opts.limit ?? Infinity).map((n) => getCommit(core, n.id));
}

/** Every commit reachable from the profile's branches (P and P/...) and tags on them. */
export function graph(core: StoreCore, profile: string): { commits: Commit[]; refs: Ref[] } {
  getProfile(core, profile);
  const refs = core.t.refs.all().filter((r) => r.profile === profile);
  const nodes = logOrder(
    refs.map((r) => r.commit),
    core.commits.whole(),
  );
  return { commits: nodes.map((n) => getCommit(core, n.id)), refs };
}

export function getLayer(core: StoreCore, digest: Digest): LayerInfo {
  const l = core.t.layers.info(digest);
  if (!l) throw new StrataError('E_OBJECT_NOT_FOUND', `no layer sha256:${digest}`);
  return l;
}

export function layerEntries(core: StoreCore, digest: Digest): LayerEntry[] {
  const e = core.t.layers.entries(digest);
  if (!e) throw new StrataError('E_OBJECT_NOT_FOUND', `no layer sha256:${digest}`);
  return e;
}

/** The paths a stack of layers touches, together. */
export function touchOf(core: StoreCore, layers: Digest[]): TouchSet {
  return unionTouch(layers.map((d) => touchedPaths(layerEntries(core, d))));
}

/** A commit's chain of layer digests, bottom first. */
export function chainOf(core: StoreCore, id: CommitId): Digest[] {
  return getCommit(core, id).manifest.layers.map((l) => l.digest);
}

/** What changed between two commits (or a commit and its parent), from the layers' listings. */
export function diff(core: StoreCore, a: string, b?: string): DiffResult {
  const ca = getCommit(core, resolve(core, a));
  let from: Commit | null;
  let to: Commit;
  if (b === undefined) {
    from = ca.parent ? getCommit(core, ca.parent) : null;
    to = ca;
  } else {
    from = ca;
    to = getCommit(core, resolve(core, b));
  }
  const treeOf = (c: Commit | null) => mergedTree(c ? c.manifest.layers.map((l) => layerEntries(core, l.digest)) : []);
  const ta = treeOf(from);
  const tb = treeOf(to);
  const added: string[] = [];
  const changed: string[] = [];
  const deleted: string[] = [];
  for (const [p, e] of tb) {
    if (p === '') continue;
    const o = ta.get(p);
    if (!o) added.push(p);
    else if (!sameEntry(o, e)) changed.push(p);
  }
  for (const p of ta.keys()) if (p !== '' && !tb.has(p)) deleted.push(p);
  return { added: added.sort(), changed: changed.sort(), deleted: deleted.sort() };
}

function sameEntry(a: LayerEntry, b: LayerEntry): boolean {
  // Content first when both sides know it; otherwise size and mtime stand in.
  if (a.sha256 && b.sha256 && a.sha256 !== b.sha256) return false;
  return (
    a.type === b.type &&
    a.mode === b.mode &&
    a.uid === b.uid &&
    a.gid === b.gid &&
    a.size === b.size &&
    a.mtime === b.mtime &&
    (a.linkname ?? '') === (b.linkname ?? '') &&
    JSON.stringify(a.xattrs ?? {}) === JSON.stringify(b.xattrs ?? {})
  );
}

/** Whether commit ID is of PROFILE's history: made in it, or reachable from its branches and tags. */
export function inProfileHistory(core: StoreCore, profile: string, id: CommitId): boolean {
  if (core.commits.get(id)?.profile === profile) return true;
  const heads = core.t.refs
    .all()
    .filter((r) => r.profile === profile)
    .map((r) => r.commit);
  return reachable(heads, core.commits.lookup).has(id);
}
