/**
 * The kernel and initramfs of a new commit (docs/booting.md, "Which kernel
 * a commit boots"). The tree decides (store/kernel-choice.ts, pure); this
 * module reads what the decision needs out of the layers (store/tree-files.ts),
 * builds the initramfs from the tree's own modules (store/initrd-image.ts)
 * and remembers, per commit, where its kernel came from.
 *
 * A build is named by (kernel fingerprint, hook version) and kept in
 * `initrd_builds`, so a commit that leaves the kernel alone, a second import
 * of the same tree or a rollback target never builds again.
 */
import { createHash } from 'node:crypto';
import { open, rm, utimes } from 'node:fs/promises';
import type { NewCommit } from './commit-write.ts';
import type { StoreCore } from './core.ts';
import { StrataError } from './errors.ts';
import { assembleInitrd, initrdHookVersion } from './initrd-image.ts';
import {
  bzImageVersion,
  chooseKernel,
  type KernelTree,
  kernelFingerprint,
  kernelTree,
  modulesDirFor,
  modulesFingerprint,
  type TreeKernel,
} from './kernel-choice.ts';
import type { ObjectStore } from './objects.ts';
import { getCommit, layerEntries } from './revisions.ts';
import type { BootRecord, BootTable } from './tables/boot.ts';
import { extractTreeFile, treeModules } from './tree-files.ts';
import type { BlobRef, CommitId, Digest, LayerEntry, Manifest } from './types.ts';

export type { BootRecord, BootSource } from './tables/boot.ts';

export interface BootDecision {
  kernel: BlobRef | null;
  initrd: BlobRef | null;
  record: BootRecord;
}

/** What the store lends this module. */
export interface BootStoreView {
  boot: BootTable;
  objects: ObjectStore;
  layerEntries(digest: Digest): LayerEntry[];
}

/** Files named on import: --kernel/--initrd, or the kernel an ISO ships. */
export interface BootFiles {
  kernel?: string;
  initrd?: string;
  /** 'iso' when the kernel file came out of an ISO rather than from --kernel. */
  kernelFrom?: 'override' | 'iso';
}

export function viewOf(core: StoreCore, fresh: Map<Digest, LayerEntry[]> = new Map()): BootStoreView {
  return { boot: core.t.boot, objects: core.objects, layerEntries: (d) => fresh.get(d) ?? layerEntries(core, d) };
}

/**
 * C with the kernel and initramfs its tree decides: the parent's when the
 * tree's kernel did not change or the tree has none, else the tree's kernel
 * with an initramfs built from its own modules. The decision is recorded
 * with the commit, in its transaction (C's `also`).
 */
export async function withBoot(core: StoreCore, c: NewCommit, files?: BootFiles): Promise<NewCommit> {
  // Layers baked for this commit are registered only in its transaction: lend their listings.
  const fresh = new Map([...(c.newLayer ? [c.newLayer] : []), ...(c.moreLayers ?? [])].map((l) => [l.info.digest, l.entries]));
  const view = viewOf(core, fresh);
  const boot = c.parent
    ? await decideCommitBoot(view, c.layers, c.profile, getCommit(core, c.parent))
    : await decideImportBoot(view, c.layers, c.profile, files);
  const also = c.also;
  return {
    ...c,
    kernel: boot.kernel,
    initrd: boot.initrd,
    also: (id) => {
      core.t.boot.insertRecord(id, boot.record);
      also?.(id);
    },
  };
}

export function treeOf(view: BootStoreView, layers: BlobRef[]): KernelTree {
  return kernelTree(layers.map((l) => ({ digest: l.digest, entries: view.layerEntries(l.digest) })));
}

async function fileVersion(path: string): Promise<string | null> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return bzImageVersion(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/** The initramfs for kernel VERSION of tree T, built at most once per (version, modules content, hook). */
async function initrdFor(view: BootStoreView, t: KernelTree, version: string, modulesDir: string, where: string): Promise<BlobRef> {
  const modules = modulesFingerprint(t, version, modulesDir);
  const cacheKey = createHash('sha256')
    .update(`${modules}\n${await initrdHookVersion()}`)
    .digest('hex');
  const hit = view.boot.initrdBuild(cacheKey);
  if (hit && view.objects.has(hit.digest)) {
    // About to be referenced again: keep gc's grace period from removing it meanwhile.
    const now = new Date();
    await utimes(view.objects.pathOf(hit.digest), now, now).catch(() => {});
    return hit;
  }
  const out = view.objects.tempPath('initrd');
  try {
    await assembleInitrd(
      treeModules(t, version, modulesDir, (d) => view.objects.pathOf(d), where),
      { output: out },
    );
    const ref = await view.objects.putFile(out);
    view.boot.putInitrdBuild(cacheKey, version, ref, Date.now());
    return ref;
  } finally {
    await rm(out, { force: true });
  }
}

async function kernelBlob(view: BootStoreView, t: KernelTree, k: TreeKernel): Promise<BlobRef> {
  const tmp = view.objects.tempPath('kernel');
  try {
    await extractTreeFile(t, k.image, (d) => view.objects.pathOf(d), tmp);
    return await view.objects.putFile(tmp);
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Kernel and initramfs of the tree's kernel K. */
async function fromTree(view: BootStoreView, t: KernelTree, k: TreeKernel, key: string): Promise<BootDecision> {
  const kernel = await kernelBlob(view, t, k);
  const initrd = await initrdFor(view, t, k.version, k.modulesDir, `the tree's /${k.modulesDir}`);
  return {
    kernel,
    initrd,
    record: {
      source: 'tree',
      version: k.version,
      treeKey: key,
      note: `kernel ${k.version} from the tree (/${k.image}); initramfs built from its modules`,
    },
  };
}

/**
 * An import: the tree decides unless --kernel/--initrd (or an ISO's kernel)
 * say otherwise. A kernel file given without an initramfs gets one built
 * from the tree's modules for its version; an ISO kernel without them is
 * refused, with the ways out.
 */
export async function decideImportBoot(
  view: BootStoreView,
  layers: BlobRef[],
  profile: string,
  files: BootFiles = {},
): Promise<BootDecision> {
  const t = treeOf(view, layers);
  const choice = chooseKernel(t.entries, view.boot.pin(profile));
  const treeKey = choice.kernel ? kernelFingerprint(t, choice.kernel) : null;
  if (!files.kernel) {
    if (!choice.kernel) {
      const initrd = files.initrd ? await view.objects.putFile(files.initrd) : null;
      return {
        kernel: null,
        initrd,
        record: {
          source: files.initrd ? 'override' : 'none',
          version: null,
          treeKey,
          note: `${choice.why}; boots need a kernel (strata import --kernel F --initrd F)`,
        },
      };
    }
    if (!files.initrd) return fromTree(view, t, choice.kernel, treeKey!);
    return {
      kernel: await kernelBlob(view, t, choice.kernel),
      initrd: await view.objects.putFile(files.initrd),
      record: {
        source: 'override',
        version: choice.kernel.version,
        treeKey,
        note: `kernel ${choice.kernel.version} from the tree; initramfs given with --initrd`,
      },
    };
  }
  const from = files.kernelFrom ?? 'override';
  const kernel = await view.objects.putFile(files.kernel);
  const version = await fileVersion(files.kernel);
  const label = from === 'iso' ? "the ISO's kernel" : 'the kernel given with --kernel';
  if (files.initrd) {
    const initrd = await view.objects.putFile(files.initrd);
    return {
      kernel,
      initrd,
      record: { source: from, version, treeKey, note: `${label}${version ? ` (${version})` : ''}; initramfs given with --initrd` },
    };
  }
  const modulesDir = version ? modulesDirFor(t.entries, version) : null;
  if (!version || !modulesDir) {
    if (from === 'override') {
      return {
        kernel,
        initrd: null,
        record: {
          source: from,
          version,
          treeKey,
          note: `${label}${version ? ` (${version})` : ''}, no initramfs: the tree has no modules for it`,
        },
      };
    }
    throw new StrataError(
      'E_BAD_ISO',
      `${label} ${version ? `is ${version}, and the root image has no /lib/modules/${version}` : 'has no version this strata can read, so its modules cannot be found in the root image'} (some ISOs keep the modules only in their own initrd, which ignores strata's boot arguments). Import it with --initrd FILE (an initramfs with the strata hook for that kernel, e.g. "strata initrd build"), or import the root tree with that kernel's /lib/modules added.`,
    );
  }
  const initrd = await initrdFor(view, t, version, modulesDir, `the root image's /${modulesDir}`);
  return {
    kernel,
    initrd,
    record: { source: from, version, treeKey, note: `${label} (${version}); initramfs built from the root image's modules` },
  };
}

/**
 * A commit on top of PARENT: when the tree's kernel is the parent's (same
 * fingerprint) or the tree has none, the parent's kernel and initramfs are
 * kept (overrides included); otherwise the tree's kernel is taken and its
 * initramfs built (or found already built).
 */
export async function decideCommitBoot(
  view: BootStoreView,
  layers: BlobRef[],
  profile: string,
  parent: { id: CommitId; manifest: Manifest },
): Promise<BootDecision> {
  const pin = view.boot.pin(profile);
  const t = treeOf(view, layers);
  const choice = chooseKernel(t.entries, pin);
  const treeKey = choice.kernel ? kernelFingerprint(t, choice.kernel) : null;
  const prev = view.boot.record(parent.id);
  // Commits made before kernels followed the tree have no record: look at their tree the same way.
  const parentKey =
    prev?.treeKey !== undefined && prev !== null
      ? prev.treeKey
      : (() => {
          const pt = treeOf(view, parent.manifest.layers);
          const pc = chooseKernel(pt.entries, pin);
          return pc.kernel ? kernelFingerprint(pt, pc.kernel) : null;
        })();
  const kept = { kernel: parent.manifest.kernel, initrd: parent.manifest.initrd };
  const parentVersion = prev?.version ?? null;
  if (!choice.kernel) {
    return {
      ...kept,
      record: {
        source: 'parent',
        version: parentVersion,
        treeKey,
        note: `${choice.why}; kernel and initramfs kept from the parent ${parent.id.slice(0, 12)}`,
      },
    };
  }
  if (treeKey === parentKey && (kept.kernel || kept.initrd)) {
    return {
      ...kept,
      record: {
        source: 'parent',
        version: parentVersion ?? choice.kernel.version,
        treeKey,
        note: `kernel ${choice.kernel.version} unchanged in the tree; kernel and initramfs kept from the parent ${parent.id.slice(0, 12)}`,
      },
    };
  }
  return fromTree(view, t, choice.kernel, treeKey!);
}

/** `strata initrd build --from COMMIT`: the initramfs of the commit's tree kernel (or pinned one), written to OUTPUT. */
export async function buildInitrdFromTree(
  view: BootStoreView,
  layers: BlobRef[],
  opts: { output: string; kernelVersion?: string; where: string },
): Promise<{ output: string; kernelVersion: string; modules: string[] }> {
  const t = treeOf(view, layers);
  const choice = chooseKernel(t.entries, opts.kernelVersion ?? null);
  const modulesDir = choice.kernel?.modulesDir ?? (opts.kernelVersion ? modulesDirFor(t.entries, opts.kernelVersion) : null);
  const version = choice.kernel?.version ?? opts.kernelVersion;
  if (!modulesDir || !version) throw new StrataError('E_NOT_FOUND', `${opts.where}: ${choice.why ?? 'no kernel modules'}`);
  return assembleInitrd(
    treeModules(t, version, modulesDir, (d) => view.objects.pathOf(d), opts.where),
    { output: opts.output },
  );
}
