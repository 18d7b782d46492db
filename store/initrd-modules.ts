/**
 * Which kernel modules go into a strata initramfs (pure: text in, names
 * out). Used for the host's kernel (`strata initrd build`) and for the
 * kernel found in a commit's tree alike.
 */

/**
 * The hook cannot mount a layer chain without these: refused when a kernel
 * has them neither as modules nor built in.
 */
export const REQUIRED_MODULES = ['loop', 'squashfs', 'overlay'] as const;

/**
 * Taken when the kernel has them: the network drivers a PXE machine may need
 * (QEMU's virtio and e1000, the common Intel, Broadcom and Realtek NICs) and
 * the block and file-system drivers of the backup disk (virtio, SATA, NVMe,
 * ext4). Dependencies come from modules.dep.
 */
export const OPTIONAL_MODULES = [
  'virtio_pci',
  'virtio_net',
  'virtio_blk',
  'virtio_scsi',
  'e1000',
  'e1000e',
  'igb',
  'igc',
  'ixgbe',
  'i40e',
  'ice',
  'bnxt_en',
  'tg3',
  'r8169',
  'ahci',
  'sd_mod',
  'nvme',
  'ext4',
] as const;

/** Module name as modprobe knows it: file name without .ko[.xz|.zst|.gz], dashes as underscores. */
export function moduleName(path: string): string {
  const base = path.slice(path.lastIndexOf('/') + 1);
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
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

/** modules.builtin lists one path per line ("kernel/fs/ext4/ext4.ko"): the names built into the kernel. */
export function parseBuiltin(text: string): Set<string> {
  return new Set(text.split('\n').filter(Boolean).map(moduleName));
}

/**
 * The set of module files (relative paths) for the wanted names, with all
 * their dependencies. Names built into the kernel are skipped; a required
 * name that is neither a module nor built in is reported missing.
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

/** The wanted names present as modules, in load order (modprobe pulls in the rest). */
export function loadOrder(names: readonly string[]): string[] {
  return [...REQUIRED_MODULES, ...OPTIONAL_MODULES].filter((n) => names.includes(n));
}

/** Compares kernel versions like 6.1.0-56-cloud-amd64 numerically, part by part. */
export function compareKernelVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** What a refusal says when a kernel lacks a module the hook needs. */
export function missingModulesMessage(kernelVersion: string, missing: string[]): string {
  return `kernel ${kernelVersion} has no ${missing.join(', ')} support (neither a module nor built in); the strata initramfs needs loop, squashfs and overlay to mount a layer chain`;
}
