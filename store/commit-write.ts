/**
 * The one place commits are made: every history operation decides purely
 * (store/dag.ts) and then calls createCommit, one SQLite transaction that
 * registers new layers, inserts the commit and moves the branch, refusing
 * when the branch moved since the decision.
 */
import { faultPoint } from './fault.ts';
import { inTransaction, type StoreCore } from './core.ts';
import type { BakedImage, TarPolicy } from './bake.ts';
import { withBoot } from './commit-boot.ts';
import { chainDifference, conflictingPaths, touchedPaths } from './dag.ts';
import { StrataError } from './errors.ts';
import { commitIdOf, renderManifest } from './manifest.ts';
import { chainOf, getCommit, touchOf } from './revisions.ts';
import type { NewLayer } from './tables/layers.ts';
import type { BlobRef, Commit, CommitId, Digest, LayerEntry, Manifest, Profile } from './types.ts';

export interface NewCommit {
  profile: string;
  /** The ref to move (a branch). */
  ref: string;
  /** The head the decision was made against; the transaction refuses to move a ref that moved since. null = ref must not exist. */
  expectedHead: CommitId | null | undefined;
  parent: CommitId | null;
  mergeParent?: CommitId | null;
  layers: BlobRef[];
  kernel: BlobRef | null;
  initrd: BlobRef | null;
  message: string;
  author: string;
  kind: Commit['kind'];
  addedLayer: Digest | null;
  /** A freshly baked layer to register in the same transaction. */
  newLayer?: NewLayer;
  /** Further new layers (an ISO whose root is a stack of squashfs files). */
  moreLayers?: NewLayer[];
  action: string;
  /** The reflog line of the ref move, when it is not the commit message (a rebase's summary). */
  reflogMessage?: string;
  /** Extra statements to run inside the same transaction (e.g. marking a push committed). */
  also?: (id: CommitId) => void;
}

export interface CommitResult {
  commit: Commit;
  warnings: string[];
}

/** Where a layer made on `parent` goes when the branch's head is elsewhere (decideParent). */
export type ParentDecision = { kind: 'onto'; onto: CommitId } | { kind: 'conflict'; paths: string[] };

export function createCommit(core: StoreCore, c: NewCommit): CommitResult {
  const r = createCommits(core, [c]);
  return { commit: r.commits[0]!, warnings: r.warnings };
}

/**
 * Several commits, each the parent of the next, in one transaction with one
 * move of the last one's ref (a rebase replays a profile's layers as one
 * reflog entry). Every commit's checks are createCommit's.
 */
export function createCommits(core: StoreCore, cs: NewCommit[]): { commits: Commit[]; warnings: string[] } {
  const warnings: string[] = [];
  const last = cs[cs.length - 1];
  if (!last) throw new StrataError('E_INTERNAL', 'createCommits needs at least one commit');
  const made = cs.map((c) => {
    if (c.layers.length > core.config.maxChainLength) {
      throw new StrataError(
        'E_CHAIN_TOO_LONG',
        `this commit would stack ${c.layers.length} layers; the limit is ${core.config.maxChainLength} (overlayfs mounts at most 500 lower layers and its option string must fit one page). Run "strata flatten ${c.profile}" first.`,
      );
    }
    const manifest: Manifest = { parent: c.parent, kernel: c.kernel, initrd: c.initrd, layers: c.layers };
    const text = renderManifest(manifest);
    return { c, text, id: commitIdOf(text) };
  });
  if (last.layers.length >= core.config.warnChainLength) {
    warnings.push(
      `the chain of ${last.profile} is now ${last.layers.length} layers deep; boots fetch and mount every layer, consider "strata flatten ${last.profile}"`,
    );
  }
  const now = Date.now();
  inTransaction(core, () => {
    faultPoint('ref-move');
    const cur = core.t.refs.get(last.ref);
    if (cur && cur.type !== 'branch') throw new StrataError('E_REF_EXISTS', `${last.ref} is a tag, not a branch`);
    if (last.expectedHead !== undefined && (cur?.commit ?? null) !== last.expectedHead) {
      throw new StrataError(
        'E_STALE_PARENT',
        `${last.ref} moved to ${cur?.commit.slice(0, 12) ?? 'nothing'} while this was being prepared; nothing was changed, try again`,
      );
    }
    for (const { c, text, id } of made) {
      for (const l of [...(c.newLayer ? [c.newLayer] : []), ...(c.moreLayers ?? [])]) core.t.layers.insert(l, now);
      for (const l of c.layers) {
        if (!core.t.layers.info(l.digest)) throw new StrataError('E_INTERNAL', `layer ${l.digest} is not registered`);
      }
      // Same manifest = same commit id: committing identical content on the
      // same parent again is not an error, the existing commit is reused.
      core.t.commits.insert({
        id,
        parent: c.parent,
        merge_parent: c.mergeParent ?? null,
        profile: c.profile,
        message: c.message,
        author: c.author,
        created_at: now,
        manifest: text,
        added_layer: c.addedLayer,
        kind: c.kind,
      });
    }
    const top = made[made.length - 1]!;
    core.t.refs.move(last.ref, 'branch', top.id, last.profile, last.action, last.reflogMessage ?? last.message);
    for (const { c, id } of made) c.also?.(id);
  });
  return { commits: made.map((m) => getCommit(core, m.id)), warnings };
}

/**
 * Decide, then commit, against a head that other writers may move (commits
 * and pushes): read the head, decide purely where the new layer goes
 * (decideParent), let `prepare` turn that into a commit (or throw, e.g. on
 * a conflict; not retried), and run the transaction with the head it read
 * as expectedHead. When another writer moved the head in between, the
 * transaction refuses with E_STALE_PARENT and nothing was written: decide
 * again against the new head, up to 5 more times, then give up with that error.
 * The commit's kernel and initramfs follow its tree (withBoot, store/commit-boot.ts).
 */
export async function commitAgainstHead(
  core: StoreCore,
  readHead: () => CommitId,
  parent: CommitId,
  entries: LayerEntry[],
  prepare: (head: CommitId, decision: ParentDecision) => NewCommit,
): Promise<CommitResult> {
  for (let attempt = 0; ; attempt++) {
    const head = readHead();
    const c = await withBoot(core, prepare(head, decideParent(core, parent, head, entries)));
    try {
      return createCommit(core, c);
    } catch (e) {
      if ((e as StrataError).code === 'E_STALE_PARENT' && attempt < 5) continue;
      throw e;
    }
  }
}

/**
 * The parent rule (shared by commits and pushes): fast-forward when the
 * parent is the head; stack onto the head when the new layer touches no
 * path that changed between parent and head; otherwise a conflict.
 */
function decideParent(core: StoreCore, parent: CommitId, head: CommitId, entries: LayerEntry[]): ParentDecision {
  if (parent === head) return { kind: 'onto', onto: head };
  const changed = chainDifference(chainOf(core, parent), chainOf(core, head));
  const paths = conflictingPaths(touchedPaths(entries), touchOf(core, changed));
  return paths.length ? { kind: 'conflict', paths } : { kind: 'onto', onto: head };
}

/** Moves a baked image into the object store (durable before any row names it). */
export async function registerBaked(core: StoreCore, baked: BakedImage): Promise<BlobRef> {
  await core.objects.adopt(baked.path, baked.digest);
  return { digest: baked.digest, size: baked.size };
}

/** The row that registers a baked image as a layer of `kind`. */
export function layerOf(baked: BakedImage, layer: BlobRef, kind: NewLayer['info']['kind'], profile: Profile): NewLayer {
  return {
    info: {
      digest: layer.digest,
      size: layer.size,
      kind,
      entryCount: baked.entries.length,
      uncompressedBytes: baked.uncompressedBytes,
      compressor: profile.compressor,
    },
    entries: baked.entries,
  };
}

export function bakeOptions(core: StoreCore, profile: Pick<Profile, 'compressor' | 'level'>, policy?: TarPolicy) {
  return {
    tmpDir: core.objects.tmpDir,
    compressor: profile.compressor,
    level: profile.level,
    maxUncompressedBytes: core.config.maxUncompressedBytes,
    maxEntries: core.config.maxEntries,
    maxMetadataBytes: core.config.maxMetadataBytes,
    maxEntryMetadataBytes: core.config.maxEntryMetadataBytes,
    policy,
  };
}
