/**
 * A new base for a profile (`strata import NAME SOURCE` when NAME exists,
 * and recipe builds): SOURCE becomes NAME's base, stored as one delta layer
 * over the old base's chain when that is small enough (clients holding the
 * old base fetch only the delta), else as a full base; NAME's own layers
 * are replayed onto it as in a rebase, all in one ref move. When a replayed
 * layer conflicts with what the new base changed, the result lands on a
 * branch NAME/rebase-<id> and NAME does not move.
 */
import { promises as fsp } from 'node:fs';
import { bakeTar } from './bake.ts';
import { withBoot } from './commit-boot.ts';
import { bakeOptions, createCommits, type NewCommit, registerBaked } from './commit-write.ts';
import type { StoreCore } from './core.ts';
import { StrataError, wrapIoError } from './errors.ts';
import { planToTar } from './flatten-stream.ts';
import { baseLayerOf, type ImportOptions, importBase, readBaseSource } from './import.ts';
import { objectPath } from './object-access.ts';
import { mergedTree } from './overlay-merge.ts';
import { getProfile } from './profiles.ts';
import { ownLayers, pendingOf, replayCommits, treeOfLayers } from './rebase.ts';
import { layerEntries } from './revisions.ts';
import type { NewLayer } from './tables/layers.ts';
import { planDelta, type RebaseConflict, rebaseConflicts } from './tree-delta.ts';
import type { Commit, Digest } from './types.ts';

export interface NewBaseOptions extends ImportOptions {
  /** Store the delta when it is smaller than this share of the full image (default: config deltaMaxShare, 0.5). */
  deltaShare?: number;
  /** Always a full base (no delta). */
  full?: boolean;
}

export interface NewBaseResult {
  /** Where the ref moved: NAME's new head, or the head of the conflict branch. */
  commit: Commit;
  /** The new base's commit. */
  base: Commit;
  /** 'delta': the old base's chain plus one layer; 'full': one new base layer; 'new': NAME did not exist, a first import. */
  mode: 'delta' | 'full' | 'new';
  /** Bytes of the delta layer when one was baked (also when it was too large to keep). */
  deltaBytes: number | null;
  /** Bytes of the full image. */
  fullBytes: number;
  /** NAME's own layers replayed as they are (same digests). */
  reused: Digest[];
  conflicts: RebaseConflict[];
  /** Set when conflicts sent the result to a side branch (NAME/rebase-<id>) instead of NAME. */
  branch: string | null;
  warnings: string[];
}

/**
 * SOURCE as NAME's new base (a first import when NAME does not exist). The
 * one store function behind `strata import` and recipe builds. E_NOTHING_TO_DO
 * (nothing stored, no ref moved) when SOURCE's tree is the current base's.
 */
export async function newBase(core: StoreCore, name: string, source: string, opts: NewBaseOptions = {}): Promise<NewBaseResult> {
  if (!core.t.profiles.get(name)) {
    const c = await importBase(core, name, source, opts);
    const full = c.manifest.layers[0]!.size;
    return { commit: c, base: c, mode: 'new', deltaBytes: null, fullBytes: full, reused: [], conflicts: [], branch: null, warnings: [] };
  }
  const { head, base: oldBase, own, profile } = ownLayers(core, name);
  const p = getProfile(core, profile);
  const compressor = opts.compressor ?? p.compressor;
  const level = opts.level === undefined ? p.level : opts.level;
  const share = opts.deltaShare ?? core.config.deltaMaxShare;
  if (!(share >= 0 && share <= 1)) throw new StrataError('E_BAD_ARGUMENT', `the delta share must be between 0 and 1, not ${share}`);
  const tmpFiles: string[] = [];
  const temp = (what: string) => {
    const f = core.objects.tempPath(what);
    tmpFiles.push(f);
    return f;
  };
  try {
    const src = await readBaseSource(core, name, source, { compressor, level, kernel: opts.kernel }, temp);
    const oldTree = treeOfLayers(core, oldBase.manifest.layers);
    const newTree = mergedTree([src.base.entries]);
    const delta = planDelta(oldTree, src.base.entries);
    if (!src.upper.length && !delta.changes.changed.filter((x) => x !== '').length && !delta.plan.whiteouts.length && !opts.kernel)
      throw new StrataError(
        'E_NOTHING_TO_DO',
        `${source} holds the same tree as ${name}'s base ${oldBase.id.slice(0, 12)} (same content digests); nothing was committed`,
      );
    const fullLayer = baseLayerOf(src.base, compressor);
    const message = opts.message ?? `new base ${source.split('/').pop()}`;
    const author = opts.author ?? 'admin';

    // The delta, when it may pay: its file bytes first (cheap), then its baked size.
    let deltaLayer: NewLayer | null = null;
    let deltaBytes: number | null = null;
    if (!opts.full && !src.upper.length && !opts.kernel && delta.fileBytes < share * Math.max(1, delta.fullBytes)) {
      const tar = planToTar([objectPath(core, src.base.ref.digest)], [src.base.entries], delta.plan);
      const baked = await bakeTar(tar, { ...bakeOptions(core, { compressor, level }), trustedListing: () => tar.listing() });
      deltaBytes = baked.size;
      if (baked.size < share * src.base.ref.size) {
        const ref = await registerBaked(core, baked);
        deltaLayer = {
          info: {
            digest: ref.digest,
            size: ref.size,
            kind: 'base',
            entryCount: baked.entries.length,
            uncompressedBytes: baked.uncompressedBytes,
            compressor,
          },
          entries: baked.entries,
        };
      } else await fsp.rm(baked.path, { force: true });
    }

    const conflicts = rebaseConflicts(
      own.map((o) => ({ digest: o.layer.digest, entries: layerEntries(core, o.layer.digest) })),
      oldTree,
      newTree,
    );
    const branch = conflicts.length ? `${name}/rebase-${Date.now().toString(36)}` : null;
    const ref = branch ?? name;
    const expectedHead = branch ? null : head.id;
    const upperLayers = src.upper.map((u) => baseLayerOf(u, compressor));
    const baseCommit: NewCommit = deltaLayer
      ? await withBoot(core, {
          profile,
          ref,
          expectedHead,
          parent: oldBase.id,
          layers: [...oldBase.manifest.layers, { digest: deltaLayer.info.digest, size: deltaLayer.info.size }],
          kernel: oldBase.manifest.kernel,
          initrd: oldBase.manifest.initrd,
          message: `${message} (delta over ${oldBase.id.slice(0, 12)})`,
          author,
          kind: 'import',
          addedLayer: deltaLayer.info.digest,
          newLayer: deltaLayer,
          action: 'import',
        })
      : await withBoot(
          core,
          {
            profile,
            ref,
            expectedHead,
            parent: null,
            layers: [src.base.ref, ...src.upper.map((u) => u.ref)],
            kernel: null,
            initrd: null,
            message,
            author,
            kind: 'import',
            addedLayer: src.base.ref.digest,
            newLayer: fullLayer,
            moreLayers: upperLayers,
            action: 'import',
          },
          { kernel: src.kernelSrc, initrd: opts.initrd, kernelFrom: opts.kernel ? 'override' : 'iso' },
        );
    const fresh = deltaLayer ? [deltaLayer] : [fullLayer, ...upperLayers];
    const replayed = await replayCommits(core, {
      profile,
      ref,
      expectedHead,
      onto: pendingOf(baseCommit),
      own,
      author,
      action: 'import',
      message: '',
      fresh,
    });
    const summary = `${message}: ${deltaLayer ? 'delta' : 'full'} base, ${own.length} layer(s) replayed${conflicts.length ? `, ${conflicts.length} conflict(s)` : ''}`;
    const all = [baseCommit, ...replayed];
    all[all.length - 1] = { ...all[all.length - 1]!, reflogMessage: summary };
    const r = createCommits(core, all);
    const warnings = [...r.warnings];
    if (branch)
      warnings.push(
        `the new base changes paths that ${name}'s own layers also change; the result is on ${branch} and ${name} did not move (see the conflicts; "strata rollback ${name} ${branch}" takes it)`,
      );
    return {
      commit: r.commits[r.commits.length - 1]!,
      base: r.commits[0]!,
      mode: deltaLayer ? 'delta' : 'full',
      deltaBytes,
      fullBytes: src.base.ref.size,
      reused: own.map((o) => o.layer.digest),
      conflicts,
      branch,
      warnings,
    };
  } catch (e) {
    throw wrapIoError(e, `importing ${source}`);
  } finally {
    for (const f of tmpFiles) await fsp.rm(f, { force: true });
  }
}
