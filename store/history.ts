/**
 * Operations that make history on a branch: commit a tar, roll back,
 * revert, cherry-pick and flatten. Each reads, decides (store/dag.ts) and
 * makes its commit through createCommit (store/commit-write.ts).
 */
import { faultPoint } from './fault.ts';
import { bakeTar, type TarPolicy } from './bake.ts';
import { withBoot } from './commit-boot.ts';
import { bakeOptions, commitAgainstHead, createCommit, layerOf, registerBaked, type CommitResult } from './commit-write.ts';
import { inTransaction, type StoreCore } from './core.ts';
import { chainDifference, conflictingPaths, mergeBase, touchedPaths } from './dag.ts';
import { StrataError } from './errors.ts';
import { flattenToTar } from './flatten-stream.ts';
import { objectPath } from './object-access.ts';
import { isRestorable, restoreDeleted } from './ref-delete.ts';
import { branchInfo } from './refs.ts';
import { chainOf, getCommit, layerEntries, resolve, touchOf } from './revisions.ts';
import type { CommitId } from './types.ts';

/**
 * An upper-directory tar becomes a layer on top of PARENT (default: the
 * profile's head). When another commit landed on the profile meanwhile, the
 * layer is stacked onto the new head if it touches none of the paths that
 * changed; otherwise nothing moves and E_STALE_PARENT says why.
 */
export async function commitTar(
  core: StoreCore,
  profileName: string,
  input: NodeJS.ReadableStream | string,
  opts: { message?: string; parent?: string; author?: string; policy?: TarPolicy } = {},
): Promise<CommitResult> {
  const { profile, head: startHead } = branchInfo(core, profileName);
  const parent = opts.parent ? resolve(core, opts.parent) : startHead;
  const baked = await bakeTar(input, bakeOptions(core, profile, opts.policy));
  const layer = await registerBaked(core, baked);
  const r = await commitAgainstHead(
    core,
    () => branchInfo(core, profileName).head,
    parent,
    baked.entries,
    (head, decision) => {
      if (decision.kind === 'conflict') {
        throw new StrataError(
          'E_STALE_PARENT',
          `${profileName} moved past ${parent.slice(0, 12)} and the new commits change the same paths: ${decision.paths.slice(0, 10).join(', ')}${decision.paths.length > 10 ? ', ...' : ''}. Nothing was committed; commit against ${head.slice(0, 12)} or use a branch.`,
          { paths: decision.paths },
        );
      }
      const base = getCommit(core, decision.onto);
      return {
        profile: profile.name,
        ref: profileName,
        expectedHead: head,
        parent: decision.onto,
        mergeParent: decision.onto === parent ? null : parent,
        layers: [...base.manifest.layers, layer],
        kernel: base.manifest.kernel,
        initrd: base.manifest.initrd,
        message: opts.message ?? 'commit',
        author: opts.author ?? 'admin',
        kind: 'commit',
        addedLayer: layer.digest,
        newLayer: layerOf(baked, layer, 'layer', profile),
        action: 'commit',
      };
    },
  );
  return { commit: r.commit, warnings: [...baked.warnings, ...r.warnings] };
}

export function rollback(core: StoreCore, profile: string, rev?: string): { from: CommitId; to: CommitId; restored?: string[] } {
  // A deleted branch, tag or profile: the undo puts it back (store/ref-delete.ts).
  if (!rev && isRestorable(core, profile)) {
    const r = restoreDeleted(core, profile);
    const at = r.restored.find((x) => x.name === profile)?.commit ?? r.restored[0]?.commit ?? '';
    return { from: at, to: at, restored: r.restored.map((x) => x.name) };
  }
  const b = branchInfo(core, profile);
  const from = b.head;
  const to = rev ? resolve(core, rev) : resolve(core, `${profile}~1`);
  if (to === from) throw new StrataError('E_NOTHING_TO_DO', `${profile} is already at ${to.slice(0, 12)}`);
  inTransaction(core, () => {
    if (core.t.refs.get(profile)?.commit !== from)
      throw new StrataError('E_STALE_PARENT', `${profile} moved while rolling back; nothing was changed, try again`);
    core.t.refs.move(profile, 'branch', to, b.profile.name, 'rollback', `rollback from ${from.slice(0, 12)} to ${to.slice(0, 12)}`);
    faultPoint('rollback');
  });
  return { from, to };
}

export async function revert(core: StoreCore, profile: string, rev: string, opts: { author?: string } = {}): Promise<CommitResult> {
  const b = branchInfo(core, profile);
  const head = getCommit(core, b.head);
  const target = getCommit(core, resolve(core, rev));
  const layer = target.addedLayer;
  const chain = head.manifest.layers.map((l) => l.digest);
  const idx = layer ? chain.indexOf(layer) : -1;
  if (!layer || idx < 0)
    throw new StrataError(
      'E_NOTHING_TO_DO',
      `the head of ${profile} does not contain the layer that ${target.id.slice(0, 12)} added (already reverted, or flattened into another layer)`,
    );
  if (idx === 0)
    throw new StrataError(
      'E_BAD_ARGUMENT',
      `${target.id.slice(0, 12)} is the base of ${profile}; a chain cannot drop its base (import a new base instead)`,
    );
  const later = chain.slice(idx + 1);
  const warnings: string[] = [];
  const overlap = conflictingPaths(touchedPaths(layerEntries(core, layer)), touchOf(core, later));
  if (overlap.length)
    warnings.push(
      `later layers also change ${overlap.length} of the reverted paths (${overlap.slice(0, 5).join(', ')}${overlap.length > 5 ? ', ...' : ''}); their version stays`,
    );
  const r = createCommit(
    core,
    await withBoot(core, {
      profile: b.profile.name,
      ref: profile,
      expectedHead: head.id,
      parent: head.id,
      layers: head.manifest.layers.filter((l) => l.digest !== layer),
      kernel: head.manifest.kernel,
      initrd: head.manifest.initrd,
      message: `revert ${target.id.slice(0, 12)}: ${target.message}`,
      author: opts.author ?? 'admin',
      kind: 'revert',
      addedLayer: null,
      action: 'revert',
    }),
  );
  return { commit: r.commit, warnings: [...warnings, ...r.warnings] };
}

/** Paths a cherry-pick of `rev` onto `profile` would collide on (empty = clean). */
export function cherryPickConflicts(core: StoreCore, profile: string, rev: string): string[] {
  const head = getCommit(core, branchInfo(core, profile).head);
  const picked = getCommit(core, resolve(core, rev));
  if (!picked.addedLayer) return [];
  const base = picked.parent ? mergeBase(head.id, picked.parent, core.commits.whole()) : null;
  const since = chainDifference(
    base ? chainOf(core, base) : [],
    head.manifest.layers.map((l) => l.digest),
  );
  return conflictingPaths(touchedPaths(layerEntries(core, picked.addedLayer)), touchOf(core, since));
}

export async function cherryPick(
  core: StoreCore,
  profile: string,
  rev: string,
  opts: { force?: boolean; author?: string } = {},
): Promise<CommitResult> {
  const b = branchInfo(core, profile);
  const head = getCommit(core, b.head);
  const picked = getCommit(core, resolve(core, rev));
  if (!picked.addedLayer || picked.kind === 'import')
    throw new StrataError(
      'E_BAD_ARGUMENT',
      `${picked.id.slice(0, 12)} adds no layer of its own (${picked.kind}); only commits that add a layer can be cherry-picked`,
    );
  if (head.manifest.layers.some((l) => l.digest === picked.addedLayer))
    throw new StrataError('E_NOTHING_TO_DO', `${profile} already contains the layer of ${picked.id.slice(0, 12)}`);
  const conflicts = cherryPickConflicts(core, profile, picked.id);
  const warnings: string[] = [];
  if (conflicts.length && !opts.force) {
    throw new StrataError(
      'E_CONFLICT',
      `${profile} changed the same paths since it diverged from ${picked.id.slice(0, 12)}: ${conflicts.slice(0, 10).join(', ')}${conflicts.length > 10 ? ` and ${conflicts.length - 10} more` : ''}. Nothing was changed; use --force to stack the layer anyway (its version wins).`,
      { paths: conflicts },
    );
  }
  if (conflicts.length) warnings.push(`forced over ${conflicts.length} conflicting path(s); the picked layer's version wins`);
  const layer = picked.manifest.layers.find((l) => l.digest === picked.addedLayer)!;
  // The picked layer is reused as is: same digest, no re-bake.
  const r = createCommit(
    core,
    await withBoot(core, {
      profile: b.profile.name,
      ref: profile,
      expectedHead: head.id,
      parent: head.id,
      layers: [...head.manifest.layers, layer],
      kernel: head.manifest.kernel,
      initrd: head.manifest.initrd,
      message: `cherry-pick ${picked.id.slice(0, 12)}: ${picked.message}`,
      author: opts.author ?? 'admin',
      kind: 'cherry-pick',
      addedLayer: layer.digest,
      action: 'cherry-pick',
    }),
  );
  return { commit: r.commit, warnings: [...warnings, ...r.warnings] };
}

/**
 * One layer for the chain (or the part above `from`). `onProgress` is
 * called about once a second while the merged tree is read and baked (a
 * flatten at the default zstd level takes minutes on a large base).
 */
export async function flatten(
  core: StoreCore,
  profileName: string,
  opts: { from?: string; author?: string; onProgress?: (p: { done: number; total: number }) => void } = {},
): Promise<CommitResult> {
  const { profile, head: headId } = branchInfo(core, profileName);
  const head = getCommit(core, headId);
  const chain = head.manifest.layers;
  let keep = 0;
  if (opts.from) {
    const from = getCommit(core, resolve(core, opts.from));
    const fl = from.manifest.layers;
    const isPrefix = fl.length <= chain.length && fl.every((l, i) => chain[i]!.digest === l.digest);
    if (!isPrefix)
      throw new StrataError(
        'E_BAD_ARGUMENT',
        `${from.id.slice(0, 12)}'s chain is not the start of ${profileName}'s chain; --from must name an earlier commit of ${profileName}`,
      );
    keep = fl.length;
  }
  const part = chain.slice(keep);
  if (part.length < 2)
    throw new StrataError(
      'E_NOTHING_TO_DO',
      `${part.length === 0 ? 'no layers' : 'only one layer'} above ${keep ? 'that commit' : 'nothing'}; nothing to flatten`,
    );
  const entries = part.map((l) => layerEntries(core, l.digest));
  const tar = flattenToTar(
    part.map((l) => objectPath(core, l.digest)),
    entries,
    { keepBelow: keep > 0 },
  );
  // The merged tar is the store's own (headers encoded from checked layers):
  // no re-check, its listing comes from the merge (docs/decisions.md, "Flatten speed").
  const onProgress = opts.onProgress;
  const ticker = onProgress ? setInterval(() => onProgress(tar.progress()), 1000) : null;
  let baked: Awaited<ReturnType<typeof bakeTar>>;
  try {
    baked = await bakeTar(tar, { ...bakeOptions(core, profile), trustedListing: () => tar.listing() });
  } finally {
    if (ticker) clearInterval(ticker);
  }
  onProgress?.(tar.progress());
  const layer = await registerBaked(core, baked);
  const r = createCommit(
    core,
    await withBoot(core, {
      profile: profile.name,
      ref: profileName,
      expectedHead: head.id,
      parent: head.id,
      layers: [...chain.slice(0, keep), layer],
      kernel: head.manifest.kernel,
      initrd: head.manifest.initrd,
      message: `flatten ${part.length} layers${keep ? ` above ${chain[keep - 1]!.digest.slice(0, 12)}` : ''}`,
      author: opts.author ?? 'admin',
      kind: 'flatten',
      addedLayer: layer.digest,
      action: 'flatten',
      newLayer: layerOf(baked, layer, 'flat', profile),
    }),
  );
  return { commit: r.commit, warnings: [...baked.warnings, ...r.warnings] };
}
