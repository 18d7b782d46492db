/**
 * The TFTP root dnsmasq serves: links to the iPXE builds of Debian's `ipxe`
 * package, and nothing else, so a client can fetch only the boot files.
 * Links, not copies: an upgraded `ipxe` package is served at once.
 */
import { existsSync } from 'node:fs';
import { mkdir, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../../store/errors.ts';
import { BOOT_FILES } from './conf.ts';

export const IPXE_DIR = '/usr/lib/ipxe';

export async function prepareTftpRoot(dir: string, ipxeDir = IPXE_DIR): Promise<string[]> {
  const names = Object.values(BOOT_FILES);
  const missing = names.filter((n) => !existsSync(join(ipxeDir, n)));
  if (missing.length) {
    throw new StrataError(
      'E_BAD_ARGUMENT',
      `--pxe serves iPXE from Debian's ipxe package, but ${missing.map((n) => join(ipxeDir, n)).join(', ')} ${missing.length > 1 ? 'are' : 'is'} missing: apt-get install ipxe`,
    );
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o755 });
  for (const n of names) await symlink(join(ipxeDir, n), join(dir, n));
  return names;
}
