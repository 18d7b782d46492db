/**
 * `strata share SOURCE --interface IFACE`: "share this CD with the room" in
 * one command. Imports the ISO, block device or running live system's medium
 * unless the same bytes were shared before, makes it the default for every
 * machine, and serves it with PXE on the interface.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { basename } from 'node:path';
import { Store } from '../store/store.ts';
import { StrataError } from '../store/errors.ts';

export interface ShareOptions {
  dataDir: string;
  /** ISO file, block device, or undefined for the medium this live system booted from. */
  source?: string;
  iface: string;
  http: string;
  ssh: string;
  /** Profile name for a first import (default: share-<first 12 hex of the content's sha256>). */
  name?: string;
  /** Kernel command line words for the shared profile (e.g. console=ttyS0). */
  cmdline?: string;
  /** An initramfs to use instead of one built from the medium's own modules (for media whose root has none). */
  initrd?: string;
  print: (text: string) => void;
}

/** Where Debian live, casper and dracut live systems mount the medium they booted from. */
const LIVE_MOUNTS = ['/run/live/medium', '/lib/live/mount/medium', '/cdrom', '/run/initramfs/live'];

export function liveMediumDevice(): string {
  for (const m of LIVE_MOUNTS) {
    if (!existsSync(m)) continue;
    try {
      const dev = execFileSync('findmnt', ['-no', 'SOURCE', '--mountpoint', m], { stdio: ['ignore', 'pipe', 'ignore'] })
        .toString()
        .trim();
      if (dev.startsWith('/dev/')) return dev;
    } catch {}
  }
  throw new StrataError(
    'E_BAD_SOURCE',
    `this is not a running live system (nothing mounted at ${LIVE_MOUNTS.join(', ')}); give the ISO or device to share: strata share FILE --interface IFACE`,
  );
}

async function sha256Of(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** The profile whose first commit was imported from these exact bytes, if any. */
export function findShared(store: Store, digest: string): string | null {
  const mark = `sha256:${digest}`;
  for (const p of store.listProfiles()) {
    if (!p.head) continue;
    const root = store.log(p.name).at(-1);
    if (root?.message.includes(mark)) return p.name;
  }
  return null;
}

/** What a person at the server needs to read, once it serves. */
export function shareNotice(s: {
  profile: string;
  commit: string;
  source: string;
  iface: string;
  address: string;
  url: string;
  reused: boolean;
  proxy: boolean;
}): string {
  return [
    `strata: sharing ${s.source} as profile "${s.profile}" at commit ${s.commit}${s.reused ? ' (already imported: same content)' : ''}`,
    `  on ${s.iface} (${s.address}); boot files over TFTP, the system over HTTP from ${s.url}`,
    '',
    'To boot a machine on this network from it:',
    '  turn it on and pick network boot (PXE) in its firmware boot menu (often F12, F11 or Esc);',
    '  BIOS and UEFI machines both work (UEFI: Secure Boot off, see docs/pxe.md).',
    s.proxy
      ? "  Your network's DHCP server keeps handing out addresses; strata only adds the boot answer."
      : '  strata is the DHCP server on this network.',
    '  Every machine boots it unless assigned something else (strata assign MAC PROFILE).',
    '',
    `To stop sharing: press Ctrl-C here (or kill ${process.pid}). The image stays in the data directory;`,
    `  "strata share" with the same source later starts at once without importing again.`,
    '',
  ].join('\n');
}

export async function share(o: ShareOptions): Promise<void> {
  const source = o.source ?? liveMediumDevice();
  if (!existsSync(source)) throw new StrataError('E_BAD_SOURCE', `${source} does not exist`);
  const st = statSync(source);
  if (!st.isFile() && !st.isBlockDevice()) {
    throw new StrataError('E_BAD_SOURCE', `strata share takes an ISO image or a block device (a CD, a USB stick), not ${source}`);
  }
  const digest = await sha256Of(source);
  const store = await Store.open(o.dataDir, { create: true });
  let profile: string;
  let commit: string;
  let reused = false;
  try {
    const found = findShared(store, digest);
    if (found) {
      profile = found;
      reused = true;
    } else {
      profile = o.name ?? `share-${digest.slice(0, 12)}`;
      await store.importBase(profile, source, { message: `shared from ${basename(source)} (sha256:${digest})`, initrd: o.initrd });
    }
    if (o.cmdline !== undefined) store.setCmdline(profile, o.cmdline);
    store.assign('default', profile);
    commit = store.getProfile(profile).head!;
  } finally {
    store.close();
  }
  const { startServer } = await import('../server/main.ts');
  const srv = await startServer({ dataDir: o.dataDir, http: o.http, ssh: o.ssh, pxe: { iface: o.iface } });
  const pxe = srv.pxe!;
  o.print(
    shareNotice({
      profile,
      commit,
      source,
      iface: pxe.iface,
      address: pxe.address,
      url: pxe.serverUrl,
      reused,
      proxy: pxe.mode.kind === 'proxy',
    }),
  );
}
