/**
 * `strata initrd build` from the host's installed kernel: the image
 * (store/initrd-image.ts) with modules read from /lib/modules. The store
 * builds the same image from a commit's own tree (store/commit-boot.ts);
 * `strata initrd build --from COMMIT` asks it for that one.
 */
import { constants as fsc } from 'node:fs';
import { access, copyFile, readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StrataError } from '../store/errors.ts';
import { type AssembleResult, assembleInitrd, type ModuleSource } from '../store/initrd-image.ts';
import { compareKernelVersions } from '../store/initrd-modules.ts';

export { findBusybox } from '../store/initrd-image.ts';
export {
  compareKernelVersions,
  type ModuleDep,
  moduleName,
  OPTIONAL_MODULES,
  parseModulesDep,
  REQUIRED_MODULES,
  resolveModules,
} from '../store/initrd-modules.ts';

export interface BuildInitrdOptions {
  output: string;
  /** e.g. 6.1.0-56-cloud-amd64; default: the newest *-amd64 under modulesDir with a /boot/vmlinuz-<v>. */
  kernelVersion?: string;
  /** Default /lib/modules. */
  modulesDir?: string;
  /** Path of a static busybox; default /usr/bin/busybox or /bin/busybox. */
  busybox?: string;
  /** Copy e2fsprogs' mke2fs (+ its libraries) so strata.backup.format=1 makes ext4. Default true when present. */
  withMkfs?: boolean;
  /** GRUB images so a backup disk boots by itself (store/bootloader-images.ts). Default true when the tools are present. */
  withBootloader?: boolean;
}

export type BuildInitrdResult = AssembleResult;

async function exists(p: string): Promise<boolean> {
  try {
    await access(p, fsc.F_OK);
    return true;
  } catch {
    return false;
  }
}

export async function defaultKernelVersion(modulesDir = '/lib/modules', bootDir = '/boot'): Promise<string> {
  const names = await readdir(modulesDir).catch(() => [] as string[]);
  const candidates: string[] = [];
  for (const v of names) {
    if (v.endsWith('-amd64') && (await exists(join(bootDir, `vmlinuz-${v}`)))) candidates.push(v);
  }
  candidates.sort(compareKernelVersions);
  const newest = candidates.at(-1);
  if (!newest) {
    throw new StrataError(
      'E_NOT_FOUND',
      `no installed kernel found (no ${modulesDir}/*-amd64 with a ${bootDir}/vmlinuz-*); install one (apt-get install linux-image-cloud-amd64) or pass --kernel-version`,
    );
  }
  return newest;
}

/** A kernel's modules as installed on this host. */
export function hostModules(kernelVersion: string, modulesDir = '/lib/modules'): ModuleSource {
  const kdir = join(resolve(modulesDir), kernelVersion);
  return {
    kernelVersion,
    where: kdir,
    readText: (rel) => readFile(join(kdir, rel), 'utf8').catch(() => null),
    copy: async (rel, dest) => copyFile(join(kdir, rel), dest),
  };
}

export async function buildInitrd(opts: BuildInitrdOptions): Promise<BuildInitrdResult> {
  const modulesDir = resolve(opts.modulesDir ?? '/lib/modules');
  const kernelVersion = opts.kernelVersion ?? (await defaultKernelVersion(modulesDir));
  return assembleInitrd(hostModules(kernelVersion, modulesDir), {
    output: opts.output,
    busybox: opts.busybox,
    withMkfs: opts.withMkfs,
    withBootloader: opts.withBootloader,
  });
}
