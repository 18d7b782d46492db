/**
 * GRUB's BIOS network image for QEMU: grub-mknetdir (Debian's grub-pc-bin)
 * writes core.0, a PXE network boot program, and the modules it loads over
 * TFTP. QEMU's iPXE ROM loads core.0 as any PXE ROM would (DHCP boot file).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const GRUB_PC_DIR = '/usr/lib/grub/i386-pc';
/** Where grub-mknetdir --subdir=boot/grub puts the PXE image, relative to the TFTP root. */
export const GRUB_PXE_BOOTFILE = 'boot/grub/i386-pc/core.0';

/** Why a GRUB network image cannot be made here, or null. */
export function missingGrubNetboot(): string | null {
  if (!['/usr/bin/grub-mknetdir', '/usr/sbin/grub-mknetdir'].some((p) => existsSync(p)))
    return 'grub-mknetdir is not installed (apt-get install grub-common)';
  if (!existsSync(join(GRUB_PC_DIR, 'pxe.mod')) || !existsSync(join(GRUB_PC_DIR, 'http.mod')))
    return `${GRUB_PC_DIR} has no pxe/http modules (apt-get install grub-pc-bin)`;
  return null;
}

/**
 * Fills tftpDir with GRUB's BIOS network image and grub.cfg (GRUB reads it
 * from <TFTP root>/boot/grub/grub.cfg, its prefix). Returns the boot file
 * name for QEMU's DHCP (runQemu's `bootfile`).
 */
export async function makeGrubNetDir(tftpDir: string, grubCfg: string): Promise<string> {
  await mkdir(tftpDir, { recursive: true });
  await run('grub-mknetdir', [`--net-directory=${tftpDir}`, '--subdir=boot/grub', '-d', GRUB_PC_DIR]);
  await writeFile(join(tftpDir, 'boot/grub/grub.cfg'), grubCfg);
  return GRUB_PXE_BOOTFILE;
}
