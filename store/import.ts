/**
 * Importing a base: a directory, tar, squashfs image or ISO becomes the
 * first commit of a new profile (profile row and commit in one transaction).
 */
import { spawn } from 'node:child_process';
import { closeSync, promises as fsp, openSync, readSync, statSync } from 'node:fs';
import { bakeTar } from './bake.ts';
import { withBoot } from './commit-boot.ts';
import { bakeOptions, createCommit, registerBaked, type CommitResult } from './commit-write.ts';
import { inTransaction, type StoreCore } from './core.ts';
import { StrataError, wrapIoError } from './errors.ts';
import { extractIsoFile, inspectIso, isNestedRootfs } from './iso.ts';
import { NAME_RE } from './profiles.ts';
import { assertSquashfs, listSquashfs } from './squashfs.ts';
import type { NewLayer } from './tables/layers.ts';
import type { BlobRef, Commit, Compressor, LayerEntry } from './types.ts';

export interface ImportOptions {
  kernel?: string;
  initrd?: string;
  message?: string;
  author?: string;
  compressor?: Compressor;
  level?: number | null;
}

/** A layer read from the source: its blob, listing and unpacked size. */
export interface Read {
  ref: BlobRef;
  entries: LayerEntry[];
  uncompressed: number;
}

const fileBytes = (entries: LayerEntry[]) => entries.reduce((a, e) => a + (e.type === 'file' ? e.size : 0), 0);

/** Creates profile NAME whose first commit is the base made from SOURCE. */
export async function importBase(core: StoreCore, name: string, source: string, opts: ImportOptions = {}): Promise<Commit> {
  if (!NAME_RE.test(name))
    throw new StrataError('E_BAD_ARGUMENT', `"${name}" is not a usable profile name (letters, digits, . _ -; up to 64)`);
  if (core.t.profiles.get(name) || core.t.refs.get(name)) {
    throw new StrataError('E_PROFILE_EXISTS', `profile "${name}" already exists; commit on top of it or choose another name`);
  }
  const compressor = opts.compressor ?? 'zstd';
  const level = opts.level === undefined ? null : opts.level;
  const tmpFiles: string[] = [];
  const temp = (what: string) => {
    const f = core.objects.tempPath(what);
    tmpFiles.push(f);
    return f;
  };
  try {
    const { base, upper, kernelSrc } = await readBaseSource(core, name, source, { compressor, level, kernel: opts.kernel }, temp);
    const initrdSrc = opts.initrd;
    const asLayer = (r: Read) => baseLayerOf(r, compressor);
    // The tree decides the kernel and initramfs unless --kernel/--initrd (or the ISO's kernel) say otherwise.
    const first = await withBoot(
      core,
      {
        profile: name,
        ref: name,
        expectedHead: null,
        parent: null,
        layers: [base.ref, ...upper.map((u) => u.ref)],
        kernel: null,
        initrd: null,
        moreLayers: upper.map(asLayer),
        message: opts.message ?? `import ${source.split('/').pop()}`,
        author: opts.author ?? 'admin',
        kind: 'import',
        addedLayer: base.ref.digest,
        newLayer: asLayer(base),
        action: 'import',
      },
      { kernel: kernelSrc, initrd: initrdSrc, kernelFrom: opts.kernel ? 'override' : 'iso' },
    );
    const { kernel, initrd } = first;
    const now = Date.now();
    // Profile row and first commit in one transaction: a crash leaves
    // either nothing or a complete profile.
    const result: CommitResult = inTransaction(core, () => {
      core.t.profiles.insert({ name, cmdline: '', compressor, level, kernel, initrd, createdAt: now });
      return createCommit(core, first);
    });
    return result.commit;
  } catch (e) {
    throw wrapIoError(e, `importing ${source}`);
  } finally {
    for (const f of tmpFiles) await fsp.rm(f, { force: true });
  }
}

/** A layer read from a base source as the row that registers it. */
export function baseLayerOf(r: Read, compressor: Compressor): NewLayer {
  return {
    info: {
      digest: r.ref.digest,
      size: r.ref.size,
      kind: 'base',
      entryCount: r.entries.length,
      uncompressedBytes: r.uncompressed,
      compressor,
    },
    entries: r.entries,
  };
}

/**
 * SOURCE (a directory, tar, squashfs or ISO) as base layers in the object
 * store (not registered yet): the base, the layers above it when an ISO
 * ships its root as a stack, and the ISO's kernel file unless one was given.
 */
export async function readBaseSource(
  core: StoreCore,
  name: string,
  source: string,
  o: { compressor: Compressor; level: number | null; kernel?: string },
  temp: (what: string) => string,
): Promise<{ base: Read; upper: Read[]; kernelSrc?: string }> {
  const { compressor, level } = o;
  const kind = await sourceKind(source);
  /** Layers above the base when an ISO ships its root as a stack (newer Ubuntu). */
  const upper: Read[] = [];
  let kernelSrc = o.kernel;
  if (kind === 'dir' || kind === 'tar') {
    const base = kind === 'dir' ? await bakeDir(core, source, compressor, level) : await bakeFile(core, source, compressor, level);
    return { base, upper, kernelSrc };
  }
  let sqfs = source;
  if (kind === 'iso') {
    const iso = await inspectIso(source);
    sqfs = temp('iso-root');
    await extractIsoFile(source, iso.rootfs, sqfs);
    if (await isNestedRootfs(sqfs)) {
      throw new StrataError(
        'E_BAD_ISO',
        `${source}: ${iso.rootfs} holds LiveOS/rootfs.img (an ext4 image inside squashfs, older Fedora); strata cannot read it without mounting. Loop-mount rootfs.img yourself and "strata import ${name} <that directory>".`,
      );
    }
    if (!kernelSrc) {
      kernelSrc = temp('iso-kernel');
      await extractIsoFile(source, iso.kernel, kernelSrc);
    }
    // The ISO's own initrd ignores strata's boot arguments: the initramfs is built from the root image's modules.
    for (const inner of (iso.layers ?? []).slice(1)) {
      const f = temp('iso-layer');
      await extractIsoFile(source, inner, f);
      upper.push(await readSquashfs(core, f));
    }
  }
  return { base: await readSquashfs(core, sqfs), upper, kernelSrc };
}

async function bakeDir(core: StoreCore, source: string, compressor: Compressor, level: number | null): Promise<Read> {
  // --sort=name: squashfs keeps small files in fragment blocks in tar
  // order, and sqfs2tar (flatten, export) reads in name order; sorted
  // input made reading a layer back 4x faster here.
  const tar = spawn('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '--sort=name', '-C', source, '-cf', '-', '.'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  tar.stderr.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number>((res) => tar.on('close', (code) => res(code ?? 1)));
  const baked = await bakeTar(tar.stdout, bakeOptions(core, { compressor, level }));
  if ((await exited) !== 0) {
    await fsp.rm(baked.path, { force: true });
    throw new StrataError('E_BAD_SOURCE', `reading the directory ${source} failed: ${err.trim()}`);
  }
  return { ref: await registerBaked(core, baked), entries: baked.entries, uncompressed: baked.uncompressedBytes };
}

async function bakeFile(core: StoreCore, source: string, compressor: Compressor, level: number | null): Promise<Read> {
  const baked = await bakeTar(source, bakeOptions(core, { compressor, level }));
  return { ref: await registerBaked(core, baked), entries: baked.entries, uncompressed: baked.uncompressedBytes };
}

async function readSquashfs(core: StoreCore, file: string): Promise<Read> {
  await assertSquashfs(file);
  const entries = await listSquashfs(file);
  return { ref: await core.objects.putFile(file), entries, uncompressed: fileBytes(entries) };
}

/** What kind of base SOURCE is, from its content rather than its name. */
export async function sourceKind(source: string): Promise<'dir' | 'tar' | 'squashfs' | 'iso'> {
  if (source === '-') return 'tar';
  let st;
  try {
    st = statSync(source);
  } catch {
    throw new StrataError('E_BAD_SOURCE', `${source} does not exist`);
  }
  if (st.isDirectory()) return 'dir';
  // A block device (a CD drive, a USB stick) is read like an image file.
  if (!st.isFile() && !st.isBlockDevice() && source !== '-')
    throw new StrataError('E_BAD_SOURCE', `${source} is neither a file, a block device nor a directory`);
  const fd = openSync(source, 'r');
  const head = Buffer.alloc(32774);
  const n = readSync(fd, head, 0, head.length, 0);
  closeSync(fd);
  if (n >= 4 && head.subarray(0, 4).toString('latin1') === 'hsqs') return 'squashfs';
  if (n >= 32774 && head.subarray(32769, 32774).toString('latin1') === 'CD001') return 'iso';
  if (/\.(sqfs|squashfs|img)$/i.test(source))
    throw new StrataError(
      'E_NOT_SQUASHFS',
      `${source} is not a squashfs image (no "hsqs" magic); give a squashfs, an ISO, a tar or a directory`,
    );
  if (/\.iso$/i.test(source)) throw new StrataError('E_BAD_ISO', `${source} is not an ISO 9660 image`);
  return 'tar';
}
