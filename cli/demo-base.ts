/**
 * A tiny bootable root made from Debian's busybox-static: enough for the
 * demo profile and the boot tests (a shell on the console, networking
 * tools, the overlay visible under /.rw).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { findBusybox } from './initrd-build.ts';

/** Writes a busybox root into DIR (which must be empty or absent). */
export async function makeBusyboxRoot(dir: string, opts: { init?: string; motd?: string } = {}): Promise<void> {
  const bb = await findBusybox();
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'run', 'root', 'var/tmp', 'mnt']) {
    await fsp.mkdir(join(dir, d), { recursive: true });
  }
  await fsp.chmod(join(dir, 'tmp'), 0o1777);
  await fsp.copyFile(bb, join(dir, 'bin/busybox'));
  await fsp.chmod(join(dir, 'bin/busybox'), 0o755);
  const applets = execFileSync(bb, ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const a of applets) {
    const p = join(dir, a);
    if (a === 'bin/busybox' || existsSync(p)) continue;
    const depth = a.split('/').length - 1;
    await fsp.symlink(`${'../'.repeat(depth)}bin/busybox`, p);
  }
  await fsp.writeFile(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await fsp.writeFile(join(dir, 'etc/group'), 'root:x:0:\n');
  await fsp.writeFile(join(dir, 'etc/hostname'), 'strata-demo\n');
  await fsp.writeFile(
    join(dir, 'etc/motd'),
    opts.motd ?? 'strata demo: a busybox root booted from a layer chain. Changes live in /.rw/upper.\n',
  );
  const init =
    opts.init ??
    `#!/bin/sh
# Demo init: mount the API filesystems, say hello, give a shell on the console.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sys /sys 2>/dev/null
mount -t devtmpfs dev /dev 2>/dev/null
hostname -F /etc/hostname
cat /etc/motd
echo "strata: booted commit $(cat /run/strata/commit 2>/dev/null)"
exec setsid cttyhack sh
`;
  await fsp.writeFile(join(dir, 'sbin/init.strata'), init, { mode: 0o755 });
  await fsp.rm(join(dir, 'sbin/init'), { force: true });
  await fsp.symlink('init.strata', join(dir, 'sbin/init'));
}
