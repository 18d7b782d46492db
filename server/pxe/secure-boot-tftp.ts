/**
 * The TFTP files a UEFI machine with Secure Boot on needs to reach strata:
 * Microsoft-signed shim (package shim-signed) as the DHCP boot file, and
 * Debian-signed GRUB's network image (grub-efi-amd64-signed) next to it
 * under the name shim loads, `grubx64.efi`. The grub.cfg goes where that
 * image looks for it: its prefix is baked in and signed as `/grub` on the
 * TFTP server it was loaded from (measured: `prefix=(tftp,SERVER)/grub`,
 * and it sources `$prefix/x86_64-efi/grub.cfg` if present, else
 * `$prefix/grub.cfg`), i.e. `<TFTP root>/grub/grub.cfg`, whatever directory
 * shim itself came from.
 *
 * That signed image has no `http` module (its 95 built-in modules include
 * tftp and efinet, not http), so it cannot ask GET /v1/boot/grub: strata
 * writes the boot config itself into the TFTP root, with the kernel and
 * initrd next to it under strata/objects/<sha256>, and GRUB loads them over
 * TFTP. The initramfs then fetches the manifest and layers over HTTP as
 * always. See docs/booting.md, "Secure Boot".
 */
import { constants as fsc } from 'node:fs';
import { createHash } from 'node:crypto';
import { access, copyFile, link, mkdir, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Store } from '../../store/store.ts';
import type { Assignment } from '../../store/types.ts';
import { bootArgs } from '../boot-routes.ts';
import { grubQuote, RETRY_SECONDS, renderGrub } from '../boot-scripts.ts';
import { SECURE_BOOT_FILE } from './conf.ts';

export const SHIM_SIGNED = '/usr/lib/shim/shimx64.efi.signed';
export const GRUBNET_SIGNED = '/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed';

/** Paths relative to the TFTP root. */
export const SECURE_BOOT_TFTP = {
  /** The DHCP boot file name for UEFI x86-64 clients that must pass Secure Boot. */
  shim: SECURE_BOOT_FILE,
  /** shim loads this name from the directory it came from. */
  grub: 'grubx64.efi',
  /** Where Debian's signed network GRUB reads its config (prefix /grub). */
  grubCfg: 'grub/grub.cfg',
  /** Kernel and initrd by digest, for GRUB to load over TFTP. */
  objects: 'strata/objects',
  /** One boot config per distinct answer, named by its content (serve --pxe-secure-boot). */
  configs: 'strata/cfg',
} as const;

export interface SecureBootConfig {
  /** The grub.cfg (renderGrub with kernel and initrd on TFTP). */
  grubCfg: string;
  /** Files it names: digest and where the store keeps it. */
  objects: Array<{ digest: string; file: string }>;
}

/**
 * The boot config for a machine (mac/ip, or the default assignment), as
 * GET /v1/boot/grub would answer it, but loading kernel and initrd from the
 * TFTP root. null when nothing is assigned or the profile has no kernel.
 */
export function secureBootConfig(store: Store, serverUrl: string, client: { mac?: string; ip?: string } = {}): SecureBootConfig | null {
  const hit = store.matchClient(client.mac ?? null, client.ip ?? null);
  if (!hit) return null;
  const commit = store.getCommit(hit.commit);
  const kernel = commit.manifest.kernel ?? hit.profile.kernel;
  const initrd = commit.manifest.initrd ?? hit.profile.initrd;
  if (!kernel) return null;
  const grubCfg = renderGrub({
    serverUrl,
    kernel: kernel.digest,
    initrd: initrd?.digest ?? null,
    args: bootArgs({
      serverUrl,
      commit: hit.commit,
      profile: hit.profile.name,
      profileCmdline: hit.profile.cmdline,
      assignmentCmdline: hit.assignment.cmdline,
    }),
    banner: `booting ${hit.profile.name} at ${hit.commit.slice(0, 12)} (Secure Boot)`,
    selfUrl: `${serverUrl}/v1/boot/grub`,
    tftpObjectsDir: SECURE_BOOT_TFTP.objects,
  });
  const objects = [kernel, ...(initrd ? [initrd] : [])].map((o) => ({ digest: o.digest, file: store.objects.pathOf(o.digest) }));
  return { grubCfg, objects };
}

/** Why the signed boot files are not on this machine, or null. */
export async function missingSecureBootFiles(): Promise<string | null> {
  const need: Array<[string, string]> = [
    [SHIM_SIGNED, 'shim-signed'],
    [GRUBNET_SIGNED, 'grub-efi-amd64-signed'],
  ];
  for (const [file, pkg] of need) {
    try {
      await access(file, fsc.R_OK);
    } catch {
      return `${file} is missing (apt-get install ${pkg})`;
    }
  }
  return null;
}

/**
 * Puts shim, signed GRUB, the boot config and the files it names into
 * tftpRoot. Returns the boot file name DHCP must offer.
 */
export async function writeSecureBootTftp(tftpRoot: string, boot: SecureBootConfig): Promise<string> {
  const why = await missingSecureBootFiles();
  if (why) throw new Error(why);
  await mkdir(join(tftpRoot, SECURE_BOOT_TFTP.objects), { recursive: true });
  await copyFile(SHIM_SIGNED, join(tftpRoot, SECURE_BOOT_TFTP.shim));
  await copyFile(GRUBNET_SIGNED, join(tftpRoot, SECURE_BOOT_TFTP.grub));
  for (const o of boot.objects) {
    const to = join(tftpRoot, SECURE_BOOT_TFTP.objects, o.digest);
    await rm(to, { force: true });
    // A hard link costs no space; another file system gets a copy.
    await link(o.file, to).catch(() => copyFile(o.file, to));
  }
  const cfg = join(tftpRoot, SECURE_BOOT_TFTP.grubCfg);
  await mkdir(dirname(cfg), { recursive: true });
  await writeFile(cfg, boot.grubCfg);
  return SECURE_BOOT_TFTP.shim;
}

/**
 * A POSIX extended regular expression (GRUB's `regexp`) matching exactly the
 * dotted-quad addresses inside CIDR: the whole octets of the prefix
 * literally, the partial octet as the list of its values.
 */
export function cidrRegexp(cidr: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
  if (!m) throw new Error(`not a CIDR: ${cidr}`);
  const octets = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  const whole = Math.floor(bits / 8);
  const parts = octets.slice(0, whole).map(String);
  if (whole < 4) {
    const rest = bits % 8;
    const size = 2 ** (8 - rest);
    const first = octets[whole]! & (256 - size);
    parts.push(size === 256 ? '[0-9]+' : `(${Array.from({ length: size }, (_, i) => first + i).join('|')})`);
    for (let i = whole + 1; i < 4; i++) parts.push('[0-9]+');
  }
  return `^${parts.join('\\.')}$`;
}

export interface SecureBootTree {
  /** TFTP-root-relative path -> content: grub/grub.cfg and strata/cfg/*.cfg. */
  files: Map<string, string>;
  /** Kernel and initrd blobs the configs name, by digest -> store path. */
  objects: Map<string, string>;
}

const MATCH_ORDER: Record<Assignment['kind'], number> = { mac: 0, ip: 1, cidr: 2, default: 3 };
const prefixBits = (a: Assignment) => (a.kind === 'cidr' ? Number(a.match.split('/')[1]) : 0);

/** The boot config one assignment gives, or a config that waits and asks again (unbootable, with the reason). */
function assignmentConfig(
  store: Store,
  serverUrl: string,
  a: Assignment,
): { cfg: string; objects: Array<{ digest: string; file: string }> } {
  const retry = (why: string) => ({
    cfg: [`echo ${grubQuote(`strata: ${why}`)}`, `sleep ${RETRY_SECONDS}`, 'reboot', ''].join('\n'),
    objects: [],
  });
  let profile: ReturnType<Store['getProfile']>;
  let commit: string | null;
  try {
    profile = store.getProfile(a.profile);
    commit = a.pin ? store.resolve(a.pin) : profile.head;
  } catch (e) {
    return retry(`assignment ${a.match}: ${(e as Error).message}`);
  }
  if (!commit) return retry(`profile ${a.profile} (assignment ${a.match}) has no commits yet`);
  const manifest = store.getCommit(commit).manifest;
  const kernel = manifest.kernel ?? profile.kernel;
  const initrd = manifest.initrd ?? profile.initrd;
  if (!kernel) return retry(`commit ${commit.slice(0, 12)} of ${a.profile} has no kernel`);
  const cfg = renderGrub({
    serverUrl,
    kernel: kernel.digest,
    initrd: initrd?.digest ?? null,
    args: bootArgs({ serverUrl, commit, profile: profile.name, profileCmdline: profile.cmdline, assignmentCmdline: a.cmdline }),
    banner: `booting ${profile.name} at ${commit.slice(0, 12)} (Secure Boot)`,
    selfUrl: `${serverUrl}/v1/boot/grub`,
    tftpObjectsDir: SECURE_BOOT_TFTP.objects,
  });
  const objects = [kernel, ...(initrd ? [initrd] : [])].map((o) => ({ digest: o.digest, file: store.objects.pathOf(o.digest) }));
  return { cfg, objects };
}

/**
 * Every file the Secure Boot TFTP root needs for the store's assignments as
 * they are now: the dispatcher grub.cfg, one config per distinct answer, the
 * kernels and initrds those name.
 */
export function secureBootTree(store: Store, serverUrl: string): SecureBootTree {
  const files = new Map<string, string>();
  const objects = new Map<string, string>();
  const rules = [...store.listAssignments()].sort(
    (x, y) => MATCH_ORDER[x.kind] - MATCH_ORDER[y.kind] || prefixBits(y) - prefixBits(x) || x.match.localeCompare(y.match),
  );
  const branches: string[] = [];
  let fallback = [
    // Double quotes: GRUB expands the variables, naming the machine as it sees itself.
    '  echo "strata: no assignment matches this machine (MAC $net_default_mac, IP $net_default_ip) and there is no default; run: strata assign MAC PROFILE"',
    `  sleep ${RETRY_SECONDS}`,
    '  reboot',
  ];
  for (const a of rules) {
    const { cfg, objects: objs } = assignmentConfig(store, serverUrl, a);
    const name = `${SECURE_BOOT_TFTP.configs}/${createHash('sha256').update(cfg).digest('hex').slice(0, 16)}.cfg`;
    files.set(name, cfg);
    for (const o of objs) objects.set(o.digest, o.file);
    const load = `  configfile /${name}`;
    if (a.kind === 'default') fallback = [load];
    else if (a.kind === 'mac') branches.push(`[ "$net_default_mac" = ${grubQuote(a.match)} ]`, load);
    else if (a.kind === 'ip') branches.push(`[ "$net_default_ip" = ${grubQuote(a.match)} ]`, load);
    else branches.push(`regexp ${grubQuote(cidrRegexp(a.match))} "$net_default_ip"`, load);
  }
  const lines = [
    '# Generated by strata serve --pxe --pxe-secure-boot from its assignments; rewritten when they or the profiles move.',
    '# Same order as every boot: MAC, exact IP, most specific CIDR, default.',
  ];
  for (let i = 0; i < branches.length; i += 2) lines.push(`${i === 0 ? 'if' : 'elif'} ${branches[i]}; then`, branches[i + 1]!);
  if (branches.length) lines.push('else', ...fallback, 'fi');
  else lines.push(...fallback.map((l) => l.trim()));
  files.set(SECURE_BOOT_TFTP.grubCfg, `${lines.join('\n')}\n`);
  return { files, objects };
}

async function replaceFile(path: string, content: string): Promise<boolean> {
  const old = await readFile(path, 'utf8').catch(() => null);
  if (old === content) return false;
  await mkdir(dirname(path), { recursive: true });
  await writeFile(`${path}.tmp`, content);
  await rename(`${path}.tmp`, path);
  return true;
}

/** Links shim and the signed GRUB into tftpRoot (links: an upgraded package is served at once). */
export async function linkSecureBootLoaders(tftpRoot: string): Promise<void> {
  const why = await missingSecureBootFiles();
  if (why) throw new Error(`--pxe-secure-boot: ${why}`);
  for (const [from, to] of [
    [SHIM_SIGNED, SECURE_BOOT_TFTP.shim],
    [GRUBNET_SIGNED, SECURE_BOOT_TFTP.grub],
  ] as const) {
    await rm(join(tftpRoot, to), { force: true });
    await symlink(from, join(tftpRoot, to));
  }
}

/**
 * Makes tftpRoot hold exactly `tree` (beside the boot loaders): new and
 * changed files first, the dispatcher last, then what no config names any
 * more. Returns whether anything changed.
 */
export async function syncSecureBootTftp(tftpRoot: string, tree: SecureBootTree): Promise<boolean> {
  let changed = false;
  const objDir = join(tftpRoot, SECURE_BOOT_TFTP.objects);
  await mkdir(objDir, { recursive: true });
  const haveObjects = new Set(await readdir(objDir));
  for (const [digest, file] of tree.objects) {
    if (haveObjects.has(digest)) continue;
    const to = join(objDir, digest);
    // A hard link costs no space; another file system gets a copy.
    await link(file, `${to}.tmp`).catch(() => copyFile(file, `${to}.tmp`));
    await rename(`${to}.tmp`, to);
    changed = true;
  }
  for (const [path, content] of tree.files) {
    if (path !== SECURE_BOOT_TFTP.grubCfg && (await replaceFile(join(tftpRoot, path), content))) changed = true;
  }
  if (await replaceFile(join(tftpRoot, SECURE_BOOT_TFTP.grubCfg), tree.files.get(SECURE_BOOT_TFTP.grubCfg)!)) changed = true;
  const cfgDir = join(tftpRoot, SECURE_BOOT_TFTP.configs);
  for (const f of await readdir(cfgDir).catch(() => [] as string[])) {
    if (!tree.files.has(`${SECURE_BOOT_TFTP.configs}/${f}`)) {
      await rm(join(cfgDir, f), { force: true });
      changed = true;
    }
  }
  for (const d of haveObjects) {
    if (!tree.objects.has(d)) {
      await rm(join(objDir, d), { force: true });
      changed = true;
    }
  }
  return changed;
}
