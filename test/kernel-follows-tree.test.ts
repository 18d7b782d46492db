/**
 * Kernels follow the image, booted for real (issue 12). A Debian bookworm
 * tree made by mmdebstrap with linux-image-6.1.0-54-cloud-amd64 (older than
 * the host's kernel) is imported with no --kernel/--initrd and PXE-booted
 * through the real server; a layer made by unpacking the newer
 * 6.1.0-56-cloud-amd64 package boots that kernel with its own modules;
 * `rollback` boots -54 again; the same tree as a Debian live ISO boots as
 * imported. One server, one store, the tree built once per machine
 * (test/helpers/debian-tree.ts caches it).
 *
 * The first boot goes all the way through systemd; the later ones start
 * the proof script as init= to keep the file's run time down (what they
 * check is the kernel and its modules, not systemd).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../server/build-server.ts';
import { Store } from '../store/store.ts';
import type { Commit } from '../store/types.ts';
import { debianKernelTree, NEW_KERNEL, OLD_KERNEL, unpackKernelPackage } from './helpers/debian-tree.ts';
import { proofs, runQemu, strataLines, writeIpxeChain } from './helpers/qemu.ts';

const PROOF_SCRIPT = `#!/bin/sh
# Prints what the kernel test checks, then powers the VM off. Runs as init=
# (PID 1, nothing mounted yet) or from strata-proof.service under systemd.
[ -r /proc/modules ] || mount -t proc proc /proc
{
	echo "PROOF uname=$(uname -r)"
	echo "PROOF pid1=$(cat /proc/1/comm)"
	echo "PROOF modules=$(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' ')"
	echo "PROOF root=$(grep ' / ' /proc/mounts | cut -d' ' -f3 | tail -n 1)"
} > /dev/console 2>&1
sync
if [ $$ -eq 1 ]; then echo o > /proc/sysrq-trigger; sleep 30; fi
systemctl --force --force poweroff
`;

const PROOF_UNIT = `[Unit]
Description=strata kernel test: print the running kernel and power off

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/strata-proof

[Install]
WantedBy=multi-user.target
`;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const CMDLINE = 'console=ttyS0 panic=-1 strata.reboot.delay=0 strata.retries=3';
const FAST = `${CMDLINE} init=/usr/local/sbin/strata-proof`;

let dir: string;
let tarball: string;
let store: Store;
let app: FastifyInstance;
let tftp: string;
const commits: Record<string, Commit> = {};

function tarOf(root: string, name: string): string {
  const out = join(dir, `${name}.tar`);
  execFileSync('tar', ['-C', root, '--numeric-owner', '--sort=name', '-cf', out, '.']);
  return out;
}

/** The tree's own file, straight from the mmdebstrap tarball. */
function fromTarball(path: string): Buffer {
  return execFileSync('tar', ['-xOf', tarball, `./${path}`], { maxBuffer: 64 << 20 });
}

function objectCount(): number {
  const root = join(dir, 'data/objects/sha256');
  return readdirSync(root).reduce((n, d) => n + readdirSync(join(root, d)).length, 0);
}

async function boot(label: string) {
  const r = await runQemu({ tftpDir: tftp, memoryMb: 768, timeoutMs: 360_000 });
  const why = `${label}, console:\n${r.output.slice(-4000)}\nstrata lines:\n${strataLines(r.output).join('\n')}`;
  expect(r.timedOut, why).toBe(false);
  return { p: proofs(r.output), why };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-kernel-boot-'));
  tarball = await debianKernelTree(OLD_KERNEL);
  store = await Store.open(join(dir, 'data'), { create: true });
  commits.imported = await store.importBase('deb', tarball, { level: 3, message: 'bookworm, kernel -54' });

  const proof = join(dir, 'proof');
  mkdirSync(join(proof, 'usr/local/sbin'), { recursive: true });
  mkdirSync(join(proof, 'etc/systemd/system/multi-user.target.wants'), { recursive: true });
  writeFileSync(join(proof, 'usr/local/sbin/strata-proof'), PROOF_SCRIPT);
  chmodSync(join(proof, 'usr/local/sbin/strata-proof'), 0o755);
  writeFileSync(join(proof, 'etc/systemd/system/strata-proof.service'), PROOF_UNIT);
  symlinkSync('../strata-proof.service', join(proof, 'etc/systemd/system/multi-user.target.wants/strata-proof.service'));
  commits.proof = (await store.commitTar('deb', tarOf(proof, 'proof'), { message: 'proof service' })).commit;

  store.setCmdline('deb', CMDLINE);
  store.assign('default', 'deb');
  app = buildServer({ store });
  await app.listen({ host: '127.0.0.1', port: 0 });
  tftp = join(dir, 'tftp');
  mkdirSync(tftp, { recursive: true });
  await writeIpxeChain(tftp, (app.server.address() as AddressInfo).port);
}, 45 * 60_000);

afterAll(async () => {
  await app?.close();
  store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the kernel and initramfs follow the tree', () => {
  it("an import with no --kernel/--initrd takes the tree's kernel; a commit that leaves it alone keeps the same blobs", () => {
    const c = commits.imported!;
    expect(c.manifest.kernel?.digest).toBe(sha(fromTarball(`boot/vmlinuz-${OLD_KERNEL}`)));
    expect(c.manifest.initrd).not.toBeNull();
    expect(store.bootRecord(c.id)).toMatchObject({ source: 'tree', version: OLD_KERNEL });
    const p = commits.proof!;
    expect(p.manifest.kernel).toEqual(c.manifest.kernel);
    expect(p.manifest.initrd).toEqual(c.manifest.initrd);
    expect(store.bootRecord(p.id)?.note).toMatch(/unchanged in the tree; kernel and initramfs kept from the parent/);
  });

  it('PXE-boots the imported tree through systemd on its own (older) kernel', async () => {
    const { p, why } = await boot('first boot');
    expect(p.uname, why).toBe(OLD_KERNEL);
    expect(p.pid1, why).toBe('systemd');
    expect(p.root, why).toBe('overlay');
  }, 420_000);

  it('a layer unpacking the newer kernel package boots that kernel with its own modules', async () => {
    const up = join(dir, 'upgrade');
    await unpackKernelPackage(NEW_KERNEL, up);
    // dpkg on a merged-/usr system writes lib/modules through the /lib -> usr/lib symlink.
    mkdirSync(join(up, 'usr/lib'), { recursive: true });
    renameSync(join(up, 'lib/modules'), join(up, 'usr/lib/modules'));
    rmSync(join(up, 'lib'), { recursive: true });
    const kernelBytes = readFileSync(join(up, `boot/vmlinuz-${NEW_KERNEL}`));
    commits.upgrade = (await store.commitTar('deb', tarOf(up, 'upgrade'), { message: `apt install linux-image-${NEW_KERNEL}` })).commit;
    const u = commits.upgrade;
    expect(u.manifest.kernel?.digest).toBe(sha(kernelBytes));
    expect(u.manifest.initrd?.digest).not.toBe(commits.proof!.manifest.initrd?.digest);
    expect(store.bootRecord(u.id)).toMatchObject({ source: 'tree', version: NEW_KERNEL });
    const listing = execFileSync('sh', ['-c', 'zcat "$1" | cpio -it --quiet', 'sh', store.objectPath(u.manifest.initrd!.digest)], {
      encoding: 'utf8',
    });
    expect(listing).toMatch(new RegExp(`lib/modules/${NEW_KERNEL}/kernel/fs/overlayfs/overlay\\.ko`));
    expect(listing).not.toContain(OLD_KERNEL);

    store.setCmdline('deb', FAST);
    const { p, why } = await boot('upgraded kernel');
    expect(p.uname, why).toBe(NEW_KERNEL);
    // Loaded by the initramfs: a module of another kernel version would have been refused.
    const loaded = (p.modules ?? '').split(' ');
    for (const m of ['overlay', 'squashfs', 'loop', 'virtio_net']) expect(loaded, why).toContain(m);
    expect(p.root, why).toBe('overlay');
  }, 420_000);

  it('rollback boots the older kernel again', async () => {
    const r = store.rollback('deb');
    expect(r.to).toBe(commits.proof!.id);
    const { p, why } = await boot('after rollback');
    expect(p.uname, why).toBe(OLD_KERNEL);
  }, 420_000);

  it('a second import of the same tree stores no new blobs', async () => {
    const before = objectCount();
    const again = await store.importBase('deb-again', tarball, { level: 3 });
    expect(objectCount()).toBe(before);
    expect(again.manifest.kernel).toEqual(commits.imported!.manifest.kernel);
    expect(again.manifest.initrd).toEqual(commits.imported!.manifest.initrd);
    expect(again.manifest.layers).toEqual(commits.imported!.manifest.layers);
  }, 600_000);

  it('the tree as a Debian live ISO (xorriso) imports and boots as imported', async () => {
    // The ISO's root image: the same tree with the proof script (appended to a copy of the tarball).
    const stage = join(dir, 'iso');
    mkdirSync(join(stage, 'live'), { recursive: true });
    const rootTar = join(dir, 'iso-root.tar');
    copyFileSync(tarball, rootTar);
    execFileSync('tar', ['-rf', rootTar, '--numeric-owner', '-C', join(dir, 'proof'), './usr/local/sbin/strata-proof']);
    execFileSync('sh', [
      '-c',
      'tar2sqfs -q -f -c zstd -X level=3 "$2" < "$1" 2>/dev/null',
      'sh',
      rootTar,
      join(stage, 'live/filesystem.squashfs'),
    ]);
    writeFileSync(join(stage, `live/vmlinuz-${OLD_KERNEL}`), fromTarball(`boot/vmlinuz-${OLD_KERNEL}`));
    // live-boot's own initramfs would ignore strata.*: it must not be what boots.
    writeFileSync(join(stage, `live/initrd.img-${OLD_KERNEL}`), 'a live-boot initramfs\n');
    const iso = join(dir, 'bookworm-live.iso');
    execFileSync('xorriso', ['-as', 'mkisofs', '-quiet', '-R', '-J', '-V', 'BOOKWORM_LIVE', '-o', iso, stage]);

    const live = await store.importBase('live', iso, { level: 3 });
    expect(live.manifest.layers[0]?.digest).toBe(sha(readFileSync(join(stage, 'live/filesystem.squashfs'))));
    expect(live.manifest.kernel?.digest).toBe(sha(fromTarball(`boot/vmlinuz-${OLD_KERNEL}`)));
    // Built from the root image's modules: the same modules as the tree's, so the same initramfs.
    expect(live.manifest.initrd).toEqual(commits.imported!.manifest.initrd);
    expect(store.bootRecord(live.id)).toMatchObject({ source: 'iso', version: OLD_KERNEL });
    store.setCmdline('live', FAST);
    store.assign('default', 'live');
    const { p, why } = await boot('live ISO');
    expect(p.uname, why).toBe(OLD_KERNEL);
    expect(p.root, why).toBe('overlay');
  }, 600_000);
});
