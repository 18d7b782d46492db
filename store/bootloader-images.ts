/**
 * The boot loader a backup disk gets (docs/booting.md, "A backup disk that
 * boots by itself"), made once when the initramfs is built and carried in
 * it as three files the hook writes to the disk:
 *
 *   boot.img     GRUB's BIOS boot sector (its first 440 bytes go to sector 0)
 *   core.img     GRUB's BIOS core image, for sectors 1..2047 (boot.img reads
 *                it from sector 1; grub-mkimage writes its length into it)
 *   esp.img.gz   an 8 MiB FAT EFI system partition holding GRUB for UEFI as
 *                EFI/BOOT/BOOTX64.EFI, the path firmware boots without an
 *                NVRAM entry
 *
 * Both GRUBs carry the same built-in config: find the partition labelled
 * strata-boot and read grub/grub.cfg there, which the hook writes after each
 * good boot of a new commit. Everything they need is built in (no modules
 * are read from the disk). See docs/decisions.md, "Where the backup disk's
 * boot loader comes from".
 */
import { execa } from 'execa';
import { constants as fsc } from 'node:fs';
import { access, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BOOT_PARTITION_LABEL = 'strata-boot';
export const BOOTLOADER_FILES = ['boot.img', 'core.img', 'esp.img.gz'] as const;
const GRUB_PC = '/usr/lib/grub/i386-pc';
const GRUB_EFI = '/usr/lib/grub/x86_64-efi';
/** The ESP's size in KiB; must match STRATA_ESP_SECTORS in initrd-hooks/lib/bootdisk-parse.sh. */
export const ESP_KIB = 8192;

/** GRUB's built-in config, the same for BIOS and UEFI. */
export function earlyGrubConfig(): string {
  return [
    `search --no-floppy --label ${BOOT_PARTITION_LABEL} --set=root`,
    'set prefix=($root)/grub',
    // normal (built in) then reads $prefix/grub.cfg.
    '',
  ].join('\n');
}

const COMMON_MODULES = ['part_msdos', 'ext2', 'search', 'search_label', 'normal', 'configfile', 'linux', 'echo', 'test', 'sleep', 'reboot'];

async function tool(name: string): Promise<boolean> {
  for (const dir of ['/usr/bin', '/usr/sbin', '/sbin', '/bin']) {
    try {
      await access(join(dir, name), fsc.X_OK);
      return true;
    } catch {}
  }
  return false;
}

/** Why the boot loader images cannot be built here, or null. */
export async function missingBootloaderTools(): Promise<string | null> {
  if (!(await tool('grub-mkimage'))) return 'grub-mkimage is not installed (apt-get install grub-common)';
  try {
    await access(join(GRUB_PC, 'boot.img'));
  } catch {
    return `${GRUB_PC}/boot.img is missing (apt-get install grub-pc-bin)`;
  }
  try {
    await access(join(GRUB_EFI, 'linux.mod'));
  } catch {
    return `${GRUB_EFI} is missing (apt-get install grub-efi-amd64-bin)`;
  }
  if (!(await tool('mkfs.fat'))) return 'mkfs.fat is not installed (apt-get install dosfstools)';
  if (!(await tool('mcopy'))) return 'mcopy is not installed (apt-get install mtools)';
  return null;
}

/** Writes BOOTLOADER_FILES into outDir. */
export async function buildBootloaderImages(outDir: string): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'strata-bootloader-'));
  try {
    const cfg = join(work, 'early.cfg');
    await writeFile(cfg, earlyGrubConfig());
    await execa('cp', [join(GRUB_PC, 'boot.img'), join(outDir, 'boot.img')]);
    await execa('grub-mkimage', [
      ...['-O', 'i386-pc', '-d', GRUB_PC, '-c', cfg, '-p', '/grub', '-o', join(outDir, 'core.img')],
      ...['biosdisk', 'serial', 'terminal', ...COMMON_MODULES],
    ]);
    const efi = join(work, 'BOOTX64.EFI');
    await execa('grub-mkimage', [
      ...['-O', 'x86_64-efi', '-d', GRUB_EFI, '-c', cfg, '-p', '/grub', '-o', efi],
      ...['fat', 'efi_gop', ...COMMON_MODULES],
    ]);
    const esp = join(work, 'esp.img');
    // A fixed volume id and fixed times (mkfs.fat --invariant for the volume
    // label's entry; SOURCE_DATE_EPOCH, 1980-01-01, for mtools) keep the image
    // (and the initramfs) reproducible: the store names an initramfs build
    // by its inputs and expects the same bytes.
    const epoch = { SOURCE_DATE_EPOCH: '315532800' };
    await execa('mkfs.fat', ['--invariant', '-C', '-n', 'STRATA-ESP', '-i', '5354524b', esp, String(ESP_KIB)], { env: epoch });
    const env = { MTOOLS_SKIP_CHECK: '1', ...epoch };
    await execa('mmd', ['-i', esp, '::/EFI', '::/EFI/BOOT'], { env });
    await execa('mcopy', ['-i', esp, efi, '::/EFI/BOOT/BOOTX64.EFI'], { env });
    await execa('gzip', ['-9', '-n', esp]);
    await execa('cp', [`${esp}.gz`, join(outDir, 'esp.img.gz')]);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * For `strata initrd build`: the hook's boot-partition scripts into libDir
 * and, when the tools are here (and not turned off), the GRUB images into
 * libDir/bootloader. Without the images the hook formats backup disks as
 * caches only and says why.
 */
export async function installBootdiskFiles(hooksDir: string, libDir: string, withBootloader?: boolean): Promise<void> {
  for (const f of ['bootdisk.sh', 'bootdisk-parse.sh']) await copyFile(join(hooksDir, 'lib', f), join(libDir, f));
  if (withBootloader === false) return;
  const missing = await missingBootloaderTools();
  if (missing) {
    if (withBootloader) throw new Error(`cannot put a boot loader into the initramfs: ${missing}`);
    return;
  }
  await buildBootloaderImages(join(libDir, 'bootloader'));
}
