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
import { access, copyFile, link, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { bootArgs } from '../server/boot-routes.ts';
import { renderGrub } from '../server/boot-scripts.ts';
import type { Store } from '../store/store.ts';

export const SHIM_SIGNED = '/usr/lib/shim/shimx64.efi.signed';
export const GRUBNET_SIGNED = '/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed';

/** Paths relative to the TFTP root. */
export const SECURE_BOOT_TFTP = {
  /** The DHCP boot file name for UEFI x86-64 clients that must pass Secure Boot. */
  shim: 'shimx64.efi',
  /** shim loads this name from the directory it came from. */
  grub: 'grubx64.efi',
  /** Where Debian's signed network GRUB reads its config (prefix /grub). */
  grubCfg: 'grub/grub.cfg',
  /** Kernel and initrd by digest, for GRUB to load over TFTP. */
  objects: 'strata/objects',
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
