/**
 * Rebase: a profile's own layers (those above its base) replayed onto
 * another base, reused as they are (same digests, no re-bake), as one ref
 * move. The conflict rule is pure (store/tree-delta.ts); the commits are
 * made by createCommits (store/commit-write.ts) in one transaction.
 */
import { decideCommitBoot, viewOf } from './commit-boot.ts';
import { createCommits, type NewCommit } from './commit-write.ts';
import { inTransaction, type StoreCore } from './core.ts';
import { StrataError } from './errors.ts';
import { commitIdOf, renderManifest } from './manifest.ts';
import { mergedTree } from './overlay-merge.ts';
import { branchInfo } from './refs.ts';
import { getCommit, layerEntries, resolve } from './revisions.ts';
import type { NewLayer } from './tables/layers.ts';
import { layersAbove, type RebaseConflict, rebaseConflicts, type Tree } from './tree-delta.ts';
import type { BlobRef, Commit, CommitId, Digest, LayerEntry, Manifest } from './types.ts';

/**
 * The commit that is BRANCH's base: walking first parents from its head,
 * the first import, single-layer flatten, or commit no one in this profile
 * made (a branch made from, or rebased onto, another profile's commit starts
 * there). Commit ids are manifest hashes, so two profiles that commit the
 * same layer on the same base share the commit: what counts is every
 * profile that made it (commit_makers), not the first (commits.profile).
 */
export function baseCommitOf(core: StoreCore, head: CommitId, profile: string): Commit {
  let c = getCommit(core, head);
  for (;;) {
    const theirs = c.profile !== profile && !core.t.commits.madeBy(c.id).includes(profile);
    if (c.kind === 'import' || theirs || (c.kind === 'flatten' && c.manifest.layers.length === 1) || !c.parent) return c;
    c = getCommit(core, c.parent);
  }
}

/** One of the profile's own layers, with the commit that added it (message and author are replayed). */
export interface OwnLayer {
  layer: BlobRef;
  from: Commit | null;
}

/** BRANCH's head, base and own layers (base first). */
export function ownLayers(core: StoreCore, ref: string): { head: Commit; base: Commit; own: OwnLayer[]; profile: string } {
  const b = branchInfo(core, ref);
  const head = getCommit(core, b.head);
  const base = baseCommitOf(core, head.id, b.profile.name);
  const digests = layersAbove(
    head.manifest.layers.map((l) => l.digest),
    base.manifest.layers.map((l) => l.digest),
  );
  if (!digests)
    throw new StrataError(
      'E_BAD_ARGUMENT',
      `${ref}'s chain no longer starts with its base ${base.id.slice(0, 12)} (flattened across it); flatten the whole chain or import a new base instead`,
    );
  const adders = new Map<Digest, Commit>();
  for (let c: Commit | null = head; c && c.id !== base.id; c = c.parent ? getCommit(core, c.parent) : null) {
    if (c.addedLayer && !adders.has(c.addedLayer)) adders.set(c.addedLayer, c);
  }
  const own = head.manifest.layers.slice(base.manifest.layers.length).map((layer) => ({ layer, from: adders.get(layer.digest) ?? null }));
  return { head, base, own, profile: b.profile.name };
}

export const treeOfLayers = (core: StoreCore, layers: BlobRef[], fresh?: Map<Digest, LayerEntry[]>): Tree =>
  mergedTree(layers.map((l) => fresh?.get(l.digest) ?? layerEntries(core, l.digest)));

/** A commit not written yet: what the next replayed commit needs of its parent. */
export interface PendingCommit {
  id: CommitId;
  manifest: Manifest;
}

export const pendingOf = (c: NewCommit): PendingCommit => {
  const manifest: Manifest = { parent: c.parent, kernel: c.kernel, initrd: c.initrd, layers: c.layers };
  return { id: commitIdOf(renderManifest(manifest)), manifest };
};

/**
 * The commits that stack OWN onto ONTO, one per layer, each with the kernel
 * and initramfs its tree decides (store/commit-boot.ts). They all name REF;
 * createCommits moves it once, to the last.
 */
export async function replayCommits(
  core: StoreCore,
  p: {
    profile: string;
    ref: string;
    expectedHead: CommitId | null;
    onto: PendingCommit;
    own: OwnLayer[];
    author: string;
    action: string;
    message: string;
    fresh?: NewLayer[];
  },
): Promise<NewCommit[]> {
  const view = viewOf(core, new Map((p.fresh ?? []).map((l) => [l.info.digest, l.entries])));
  const out: NewCommit[] = [];
  let parent = p.onto;
  for (const o of p.own) {
    const layers = [...parent.manifest.layers, o.layer];
    const boot = await decideCommitBoot(view, layers, p.profile, parent);
    const c: NewCommit = {
      profile: p.profile,
      ref: p.ref,
      expectedHead: p.expectedHead,
      parent: parent.id,
      layers,
      kernel: boot.kernel,
      initrd: boot.initrd,
      message: o.from?.message ?? `layer ${o.layer.digest.slice(0, 12)}`,
      author: o.from?.author ?? p.author,
      kind: o.from?.kind === 'push' || o.from?.kind === 'cherry-pick' || o.from?.kind === 'flatten' ? o.from.kind : 'commit',
      addedLayer: o.layer.digest,
      action: p.action,
      also: (id) => core.t.boot.insertRecord(id, boot.record),
    };
    out.push(c);
    parent = pendingOf(c);
  }
  // The reflog line is the whole operation's, on the one move.
  const last = out[out.length - 1];
  if (last) last.reflogMessage = p.message;
  return out;
}

export interface RebaseResult {
  commit: Commit;
  /** Commits made, base first. */
  commits: Commit[];
  /** Layers replayed as they are (same digests). */
  reused: Digest[];
  conflicts: RebaseConflict[];
  warnings: string[];
}

/** What a rebase of REF onto ONTO would collide on (empty: clean), without changing anything. */
export function rebaseCheck(core: StoreCore, ref: string, onto: string): { conflicts: RebaseConflict[]; own: Digest[]; base: CommitId } {
  const { base, own } = ownLayers(core, ref);
  const target = getCommit(core, resolve(core, onto));
  const conflicts = rebaseConflicts(
    own.map((o) => ({ digest: o.layer.digest, entries: layerEntries(core, o.layer.digest) })),
    treeOfLayers(core, base.manifest.layers),
    treeOfLayers(core, target.manifest.layers),
  );
  return { conflicts, own: own.map((o) => o.layer.digest), base: base.id };
}

/**
 * `strata rebase REF --onto ONTO`: REF's own layers on ONTO, one ref move.
 * Conflicts (a path the new base changed and a layer touches) refuse with
 * E_CONFLICT listing them, unless force (the layer's version wins).
 */
export async function rebase(
  core: StoreCore,
  ref: string,
  onto: string,
  opts: { force?: boolean; author?: string } = {},
): Promise<RebaseResult> {
  const { head, base, own, profile } = ownLayers(core, ref);
  const target = getCommit(core, resolve(core, onto));
  if (target.id === base.id) throw new StrataError('E_NOTHING_TO_DO', `${ref} is already based on ${target.id.slice(0, 12)}`);
  if (own.some((o) => target.manifest.layers.some((l) => l.digest === o.layer.digest)))
    throw new StrataError(
      'E_BAD_ARGUMENT',
      `${target.id.slice(0, 12)} already holds some of ${ref}'s own layers; rebase onto a base, not onto a descendant of ${ref}`,
    );
  const { conflicts } = rebaseCheck(core, ref, target.id);
  if (conflicts.length && !opts.force) throw conflictError(ref, target.id, conflicts);
  const message = `rebase ${own.length} layer(s) from ${base.id.slice(0, 12)} onto ${target.id.slice(0, 12)}`;
  const author = opts.author ?? 'admin';
  if (!own.length) {
    // Nothing of its own: the branch simply moves to the new base.
    inTransaction(core, () => {
      if (core.t.refs.get(ref)?.commit !== head.id)
        throw new StrataError('E_STALE_PARENT', `${ref} moved while rebasing; nothing was changed, try again`);
      core.t.refs.move(ref, 'branch', target.id, profile, 'rebase', message);
    });
    return { commit: target, commits: [], reused: [], conflicts, warnings: [] };
  }
  const cs = await replayCommits(core, {
    profile,
    ref,
    expectedHead: head.id,
    onto: target,
    own,
    author,
    action: 'rebase',
    message,
  });
  const r = createCommits(core, cs);
  const warnings = [...r.warnings];
  if (conflicts.length) warnings.push(`forced over ${conflicts.length} conflicting path(s); the profile's layers win`);
  return { commit: r.commits[r.commits.length - 1]!, commits: r.commits, reused: own.map((o) => o.layer.digest), conflicts, warnings };
}

export function conflictError(ref: string, onto: CommitId, conflicts: RebaseConflict[]): StrataError {
  const shown = conflicts
    .slice(0, 10)
    .map((c) => `${c.path} (old base: ${c.oldBase}; new base: ${c.newBase}; layer ${c.layer.slice(0, 12)})`)
    .join(', ');
  return new StrataError(
    'E_CONFLICT',
    `the new base ${onto.slice(0, 12)} changes paths that ${ref}'s own layers also change: ${shown}${conflicts.length > 10 ? ` and ${conflicts.length - 10} more` : ''}. Nothing was changed; use --force to stack the layers anyway (their version wins).`,
    { conflicts },
  );
}
