/**
 * `strata initrd build`: a small standalone initramfs (gzip'd newc cpio)
 * made of busybox-static, the kernel modules a netbooted strata client
 * needs, and initrd-hooks/. No dracut or initramfs-tools involved, so it
 * builds the same on any Debian-ish host that has the kernel's modules.
 */
import { execa } from 'execa';
import { constants as fsc } from 'node:fs';
import { access, chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StrataError } from '../store/errors.ts';
import { installBootdiskFiles } from './bootloader-images.ts';
import { addClientKit } from './client-kit.ts';

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
  /** GRUB images so a backup disk boots by itself (cli/bootloader-images.ts). Default true when the tools are present. */
  withBootloader?: boolean;
}

export interface BuildInitrdResult {
  output: string;
  kernelVersion: string;
  /** Module names in the image (the wanted ones plus their dependencies). */
  modules: string[];
}

/** Always needed: network (virtio), layer mounts, the backup disk on virtio. */
export const REQUIRED_MODULES = ['virtio_pci', 'virtio_net', 'virtio_blk', 'loop', 'squashfs', 'overlay'] as const;
/** Taken when the kernel has them (common NICs on real hardware and in QEMU). */
export const OPTIONAL_MODULES = ['e1000', 'e1000e'] as const;

const HOOKS_DIR = fileURLToPath(new URL('../initrd-hooks/', import.meta.url));

/** Module name as modprobe knows it: file name without .ko[.xz|.zst|.gz], dashes as underscores. */
export function moduleName(path: string): string {
  return basename(path)
    .replace(/\.ko(\.(xz|zst|gz))?$/, '')
    .replace(/-/g, '_');
}

export interface ModuleDep {
  /** Path relative to /lib/modules/<v>. */
  path: string;
  deps: string[];
}

/** Parses modules.dep ("kernel/a.ko: kernel/b.ko kernel/c.ko") into name -> entry. */
export function parseModulesDep(text: string): Map<string, ModuleDep> {
  const out = new Map<string, ModuleDep>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon).trim();
    const deps = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    out.set(moduleName(path), { path, deps });
  }
  return out;
}

/**
 * The set of module files (relative paths) for the wanted names, with all
 * their dependencies. Names built into the kernel are skipped; a required
 * name that is neither a module nor built in is an error.
 */
export function resolveModules(
  dep: Map<string, ModuleDep>,
  builtin: Set<string>,
  required: readonly string[],
  optional: readonly string[],
): { files: string[]; names: string[]; missing: string[] } {
  const files = new Set<string>();
  const missing: string[] = [];
  const visit = (path: string) => {
    if (files.has(path)) return;
    files.add(path);
    for (const d of dep.get(moduleName(path))?.deps ?? []) visit(d);
  };
  for (const name of [...required, ...optional]) {
    const entry = dep.get(name);
    if (entry) visit(entry.path);
    else if (!builtin.has(name) && required.includes(name)) missing.push(name);
  }
  const sorted = [...files].sort();
  return { files: sorted, names: sorted.map(moduleName), missing };
}

/** Compares kernel versions like 6.1.0-56-cloud-amd64 numerically, part by part. */
export function compareKernelVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p, fsc.F_OK);
    return true;
  } catch {
    return false;
  }
}

export async function defaultKernelVersion(modulesDir = '/lib/modules', bootDir = '/boot'): Promise<string> {
  let names: string[] = [];
  try {
    names = await readdir(modulesDir);
  } catch {
    names = [];
  }
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

async function isStatic(binary: string): Promise<boolean> {
  const r = await execa('ldd', [binary], { reject: false });
  const text = `${r.stdout}\n${r.stderr}`;
  return /not a dynamic executable|statically linked/.test(text);
}

export async function findBusybox(given?: string): Promise<string> {
  const candidates = given ? [given] : ['/usr/bin/busybox', '/bin/busybox'];
  for (const c of candidates) {
    if (!(await exists(c))) continue;
    if (!(await isStatic(c))) {
      throw new StrataError('E_BAD_ARGUMENT', `${c} is dynamically linked; install busybox-static (apt-get install busybox-static)`);
    }
    return c;
  }
  throw new StrataError('E_NOT_FOUND', 'busybox not found; install busybox-static (apt-get install busybox-static)');
}

/** Copies a dynamic binary and the libraries ldd names, keeping their paths. */
async function copyWithLibs(binary: string, root: string, dest: string): Promise<void> {
  await mkdir(dirname(join(root, dest)), { recursive: true });
  await copyFile(binary, join(root, dest));
  await chmod(join(root, dest), 0o755);
  const r = await execa('ldd', [binary], { reject: false });
  for (const line of r.stdout.split('\n')) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (!m) continue;
    const lib = m[1]!;
    const target = join(root, lib);
    if (await exists(target)) continue;
    await mkdir(dirname(target), { recursive: true });
    await copyFile(lib, target);
  }
}

export async function buildInitrd(opts: BuildInitrdOptions): Promise<BuildInitrdResult> {
  const modulesDir = resolve(opts.modulesDir ?? '/lib/modules');
  const kernelVersion = opts.kernelVersion ?? (await defaultKernelVersion(modulesDir));
  const kdir = join(modulesDir, kernelVersion);
  let depText: string;
  try {
    depText = await readFile(join(kdir, 'modules.dep'), 'utf8');
  } catch {
    throw new StrataError(
      'E_NOT_FOUND',
      `kernel ${kernelVersion} has no ${kdir}/modules.dep; install that kernel's modules or pick another with --kernel-version`,
    );
  }
  const builtinText = await readFile(join(kdir, 'modules.builtin'), 'utf8').catch(() => '');
  const builtin = new Set(builtinText.split('\n').filter(Boolean).map(moduleName));
  const { files, names, missing } = resolveModules(parseModulesDep(depText), builtin, REQUIRED_MODULES, OPTIONAL_MODULES);
  if (missing.length) {
    throw new StrataError(
      'E_NOT_FOUND',
      `kernel ${kernelVersion} has no module ${missing.join(', ')} (and it is not built in); a strata client cannot boot without it`,
    );
  }
  const busybox = await findBusybox(opts.busybox);

  const stage = await mkdtemp(join(tmpdir(), 'strata-initrd-'));
  try {
    for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'run', 'etc', 'newroot', 'lib/strata', 'tmp']) {
      await mkdir(join(stage, d), { recursive: true });
    }
    await copyFile(busybox, join(stage, 'bin/busybox'));
    await chmod(join(stage, 'bin/busybox'), 0o755);
    await symlink('busybox', join(stage, 'bin/sh'));
    // The kernel opens /dev/console for init's stdio before /init runs.
    await execa('mknod', ['-m', '600', join(stage, 'dev/console'), 'c', '5', '1'], { reject: false });

    // Modules, then depmod on the staging tree so busybox modprobe finds dependencies.
    const kstage = join(stage, 'lib/modules', kernelVersion);
    for (const f of files) {
      await mkdir(dirname(join(kstage, f)), { recursive: true });
      await copyFile(join(kdir, f), join(kstage, f));
    }
    for (const meta of ['modules.order', 'modules.builtin', 'modules.builtin.modinfo']) {
      if (await exists(join(kdir, meta))) await copyFile(join(kdir, meta), join(kstage, meta));
    }
    const dm = await execa('depmod', ['-b', stage, kernelVersion], { reject: false });
    if (dm.exitCode !== 0) {
      throw new StrataError(
        'E_INTERNAL',
        `depmod -b failed for kernel ${kernelVersion}: ${dm.stderr.trim()}; check that kmod is installed`,
      );
    }

    if (opts.withMkfs !== false && (await exists('/sbin/mke2fs'))) {
      await copyWithLibs('/sbin/mke2fs', stage, 'sbin/mke2fs');
      await symlink('mke2fs', join(stage, 'sbin/mkfs.ext4'));
      if (await exists('/etc/mke2fs.conf')) await copyFile('/etc/mke2fs.conf', join(stage, 'etc/mke2fs.conf'));
    }

    await copyFile(join(HOOKS_DIR, 'busybox/init'), join(stage, 'init'));
    await chmod(join(stage, 'init'), 0o755);
    await copyFile(join(HOOKS_DIR, 'strata-root.sh'), join(stage, 'lib/strata/strata-root.sh'));
    await copyFile(join(HOOKS_DIR, 'lib/parse-cmdline.sh'), join(stage, 'lib/strata/parse-cmdline.sh'));
    await copyFile(join(HOOKS_DIR, 'lib/udhcpc.script'), join(stage, 'lib/strata/udhcpc.script'));
    await chmod(join(stage, 'lib/strata/udhcpc.script'), 0o755);
    await installBootdiskFiles(HOOKS_DIR, join(stage, 'lib/strata'), opts.withBootloader);
    await addClientKit(stage, { busybox: join(stage, 'bin/busybox') });
    // Load order: the wanted names in order; modprobe pulls in the rest.
    const load = [...REQUIRED_MODULES, ...OPTIONAL_MODULES].filter((n) => names.includes(n));
    await writeFile(join(stage, 'lib/strata/modules'), `${load.join('\n')}\n`);

    const output = resolve(opts.output);
    await mkdir(dirname(output), { recursive: true });
    const tmpOut = `${output}.tmp-${process.pid}`;
    // Sorted names, owner root, gzip without a timestamp: the same inputs make
    // nearly the same bytes (cpio still records mtimes).
    const pack = await execa(
      'sh',
      ['-c', 'cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9n > "$2"', 'sh', stage, tmpOut],
      { reject: false },
    );
    if (pack.exitCode !== 0) {
      await rm(tmpOut, { force: true });
      throw new StrataError('E_INTERNAL', `packing the initramfs failed: ${pack.stderr.trim()}; check that cpio and gzip are installed`);
    }
    await rename(tmpOut, output);
    if ((await stat(output)).size === 0) throw new StrataError('E_INTERNAL', 'the initramfs came out empty');
    return { output, kernelVersion, modules: names };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}
