/**
 * Assembles the strata initramfs (gzip'd newc cpio): busybox-static, the
 * kernel modules a netbooted client needs, and initrd-hooks/. The modules
 * come from a ModuleSource: the host's /lib/modules (`strata initrd build`)
 * or a commit's tree read out of its layers (store/commit-boot.ts). No
 * dracut or initramfs-tools involved.
 *
 * The output is reproducible: sorted names, owner root, every mtime 0, inode
 * numbers renumbered (cpio --reproducible) and
 * gzip without a timestamp, so the same kernel modules and hook give the
 * same bytes (and the same blob digest) on every build.
 */
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { access, chmod, copyFile, mkdir, mkdtemp, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installBootdiskFiles, missingBootloaderTools } from './bootloader-images.ts';
import { addClientKit, kitSources } from './client-kit.ts';
import { StrataError } from './errors.ts';
import {
  loadOrder,
  missingModulesMessage,
  moduleName,
  OPTIONAL_MODULES,
  parseBuiltin,
  parseModulesDep,
  REQUIRED_MODULES,
  resolveModules,
} from './initrd-modules.ts';

/** Where one kernel's modules are read from; paths are relative to lib/modules/<version>. */
export interface ModuleSource {
  kernelVersion: string;
  /** Says where the modules are, for messages ("/lib/modules/V", "commit abc's tree"). */
  where: string;
  /** A small text file (modules.dep, modules.builtin, ...), or null when absent. */
  readText(rel: string): Promise<string | null>;
  /** Copies one file to DEST. */
  copy(rel: string, dest: string): Promise<void>;
  /** Every module file (relative paths), for kernels whose modules.dep is absent (unpacked by dpkg-deb -x, not installed). */
  listModules?(): Promise<string[]>;
}

export interface AssembleOptions {
  output: string;
  /** Path of a static busybox; default /usr/bin/busybox or /bin/busybox. */
  busybox?: string;
  /** Copy e2fsprogs' mke2fs (+ its libraries) so strata.backup.format=1 makes ext4. Default true when present. */
  withMkfs?: boolean;
  /** GRUB images so a backup disk boots by itself (store/bootloader-images.ts). Default true when the tools are present. */
  withBootloader?: boolean;
}

export interface AssembleResult {
  output: string;
  kernelVersion: string;
  /** Module names in the image (the wanted ones plus their dependencies). */
  modules: string[];
}

const HOOKS_DIR = fileURLToPath(new URL('../initrd-hooks/', import.meta.url));
/** Host files copied into every image besides busybox and the modules. */
const HOOK_FILES = [
  'busybox/init',
  'strata-root.sh',
  'lib/parse-cmdline.sh',
  'lib/udhcpc.script',
  'lib/bootdisk.sh',
  'lib/bootdisk-parse.sh',
  'lib/boot-health.sh',
];
/** Bump when the image's layout changes in a way the hook files do not show. */
const LAYOUT_VERSION = 'strata-initrd 2';
const MKE2FS = '/sbin/mke2fs';

async function exists(p: string): Promise<boolean> {
  try {
    await access(p, fsc.F_OK);
    return true;
  } catch {
    return false;
  }
}

async function isStatic(binary: string): Promise<boolean> {
  const r = await execa('ldd', [binary], { reject: false });
  return /not a dynamic executable|statically linked/.test(`${r.stdout}\n${r.stderr}`);
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

let hookVersionMemo: Promise<string> | null = null;

/**
 * A digest of everything besides the modules that goes into an image (the
 * hook scripts, busybox, mke2fs, the layout): with the kernel version and the
 * modules' content it names a build, so an unchanged kernel reuses its image.
 */
export function initrdHookVersion(): Promise<string> {
  hookVersionMemo ??= (async () => {
    const h = createHash('sha256').update(LAYOUT_VERSION);
    for (const f of HOOK_FILES) h.update(f).update(await readFile(join(HOOKS_DIR, f)));
    h.update(await readFile(await findBusybox()));
    if (await exists(MKE2FS)) h.update(await readFile(MKE2FS));
    // With or without the backup disk's boot loader (store/bootloader-images.ts): the tools decide.
    h.update(`bootloader ${(await missingBootloaderTools()) ?? 'yes'}`);
    for (const f of await kitSources()) h.update(f.name).update(f.bytes);
    return h.digest('hex');
  })();
  hookVersionMemo.catch(() => {
    hookVersionMemo = null;
  });
  return hookVersionMemo;
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

/** busybox modprobe may lack xz/zstd: compressed modules go in as plain .ko. */
async function decompressModule(path: string): Promise<string> {
  const m = /\.ko\.(xz|zst|gz)$/.exec(path);
  if (!m) return path;
  const tool = { xz: 'xz', zst: 'zstd', gz: 'gzip' }[m[1] as 'xz' | 'zst' | 'gz'];
  const plain = path.slice(0, -(m[1]!.length + 1));
  const r = await execa('sh', ['-c', `${tool} -dc "$1" > "$2"`, 'sh', path, plain], { reject: false });
  if (r.exitCode !== 0) throw new StrataError('E_INTERNAL', `cannot decompress ${path} with ${tool}: ${r.stderr.trim()}`);
  await rm(path);
  return plain;
}

/** The names in a module's `depends=` field (its .modinfo section). */
export function modinfoDepends(ko: Buffer): string[] {
  const text = ko.toString('latin1');
  const m = /\0depends=([\w,-]*)\0/.exec(text) ?? /depends=([\w,-]*)\0/.exec(text);
  return (m?.[1] ?? '')
    .split(',')
    .filter(Boolean)
    .map((n) => n.replace(/-/g, '_'));
}

/**
 * Copies the wanted modules and their dependencies into KSTAGE, found by
 * name in the list of module files and followed through each module's own
 * `depends=`: what depmod would have written to modules.dep.
 */
async function copyByModinfo(src: ModuleSource, builtin: Set<string>, kstage: string): Promise<string[]> {
  const byName = new Map<string, string>();
  for (const p of (await src.listModules?.()) ?? []) if (/\.ko(\.(xz|zst|gz))?$/.test(p)) byName.set(moduleName(p), p);
  const missing = REQUIRED_MODULES.filter((n) => !byName.has(n) && !builtin.has(n));
  if (missing.length) throw new StrataError('E_BAD_SOURCE', missingModulesMessage(src.kernelVersion, missing));
  const queue = [...REQUIRED_MODULES, ...OPTIONAL_MODULES].filter((n) => byName.has(n)) as string[];
  const done = new Set<string>();
  const files: string[] = [];
  while (queue.length) {
    const name = queue.shift()!;
    const rel = byName.get(name);
    if (done.has(name) || !rel) continue;
    done.add(name);
    await mkdir(dirname(join(kstage, rel)), { recursive: true });
    await src.copy(rel, join(kstage, rel));
    const plain = await decompressModule(join(kstage, rel));
    files.push(rel);
    for (const d of modinfoDepends(await readFile(plain))) if (!done.has(d)) queue.push(d);
  }
  return files.sort();
}

/**
 * Puts the modules a kernel's initramfs needs into KSTAGE (lib/modules/V of
 * the staging tree); refuses a kernel without loop, squashfs or overlay.
 * Dependencies come from modules.dep, or from the modules themselves when
 * the kernel was unpacked without running depmod.
 */
export async function stageModules(src: ModuleSource, kstage: string): Promise<string[]> {
  const builtin = parseBuiltin((await src.readText('modules.builtin')) ?? '');
  const depText = await src.readText('modules.dep');
  let files: string[];
  if (depText === null) {
    if (!src.listModules) {
      throw new StrataError(
        'E_NOT_FOUND',
        `kernel ${src.kernelVersion} has no modules.dep in ${src.where}; install that kernel's modules or pick another with --kernel-version`,
      );
    }
    files = await copyByModinfo(src, builtin, kstage);
  } else {
    const r = resolveModules(parseModulesDep(depText), builtin, REQUIRED_MODULES, OPTIONAL_MODULES);
    if (r.missing.length) throw new StrataError('E_BAD_SOURCE', missingModulesMessage(src.kernelVersion, r.missing));
    files = r.files;
    for (const f of files) {
      await mkdir(dirname(join(kstage, f)), { recursive: true });
      await src.copy(f, join(kstage, f));
      await decompressModule(join(kstage, f));
    }
  }
  return files.map(moduleName);
}

export async function assembleInitrd(src: ModuleSource, opts: AssembleOptions): Promise<AssembleResult> {
  const busybox = await findBusybox(opts.busybox);
  const kernelVersion = src.kernelVersion;
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
    const names = await stageModules(src, kstage);
    for (const meta of ['modules.order', 'modules.builtin', 'modules.builtin.modinfo']) {
      const text = await src.readText(meta);
      if (text !== null) await writeFile(join(kstage, meta), text);
    }
    const dm = await execa('depmod', ['-b', stage, kernelVersion], { reject: false });
    if (dm.exitCode !== 0) {
      throw new StrataError(
        'E_INTERNAL',
        `depmod -b failed for kernel ${kernelVersion}: ${dm.stderr.trim()}; check that kmod is installed`,
      );
    }

    if (opts.withMkfs !== false && (await exists(MKE2FS))) {
      await copyWithLibs(MKE2FS, stage, 'sbin/mke2fs');
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
    // Every machine strata boots gets the client kit under /run/strata (store/client-kit.ts).
    await addClientKit(stage, { busybox: join(stage, 'bin/busybox') });
    // With the kit, the booted system judges the boot's health (initrd-hooks/lib/boot-health.sh).
    await copyFile(join(HOOKS_DIR, 'lib/boot-health.sh'), join(stage, 'lib/strata/boot-health.sh'));
    await writeFile(join(stage, 'lib/strata/modules'), `${loadOrder(names).join('\n')}\n`);

    const output = resolve(opts.output);
    await mkdir(dirname(output), { recursive: true });
    const tmpOut = `${output}.tmp-${process.pid}`;
    // Sorted names, owner root, mtimes 0, gzip without a timestamp: the same
    // inputs make the same bytes, so a rebuild dedups to the same blob.
    const pack = await execa(
      'sh',
      [
        '-c',
        'cd "$1" && find . -mindepth 1 -exec touch -h -d @0 {} + && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet | gzip -9n > "$2"',
        'sh',
        stage,
        tmpOut,
      ],
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
