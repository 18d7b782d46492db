/**
 * Which kernel a tree boots, decided from layer listings alone, and what the
 * store does with it on small trees made of the host's real module files:
 * the initramfs is built from the tree's modules, kept when a commit leaves
 * the kernel alone, follows a profile pin, and a kernel that cannot mount a
 * layer chain is refused at commit time. (Booting real Debian trees:
 * test/kernel-follows-tree.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { StrataError } from '../store/errors.ts';
import { modinfoDepends } from '../store/initrd-image.ts';
import { bzImageVersion, chooseKernel, kernelFingerprint, kernelTree } from '../store/kernel-choice.ts';
import { Store } from '../store/store.ts';
import type { LayerEntry } from '../store/types.ts';
import { runStrata } from './helpers/cli.ts';
import { findKernel } from './helpers/qemu.ts';

const f = (path: string, size = 10, extra: Partial<LayerEntry> = {}): LayerEntry => ({
  path,
  type: 'file',
  mode: 0o644,
  uid: 0,
  gid: 0,
  size,
  mtime: 1,
  ...extra,
});
const d = (path: string, extra: Partial<LayerEntry> = {}): LayerEntry => ({ ...f(path, 0), type: 'dir', mode: 0o755, ...extra });
const l = (path: string, target: string): LayerEntry => ({ ...f(path, 0), type: 'symlink', linkname: target });
const wh = (path: string): LayerEntry => ({ ...f(path, 0), type: 'char', whiteout: true });

/** A merged-/usr Debian-like base with kernel 6.1.0-54. */
const base: LayerEntry[] = [
  d(''),
  d('boot'),
  f('boot/vmlinuz-6.1.0-54-cloud-amd64'),
  l('lib', 'usr/lib'),
  d('usr'),
  d('usr/lib'),
  d('usr/lib/modules'),
  d('usr/lib/modules/6.1.0-54-cloud-amd64'),
  f('usr/lib/modules/6.1.0-54-cloud-amd64/modules.dep'),
  d('etc'),
  f('etc/hostname'),
];
const tree = (...layers: LayerEntry[][]) => kernelTree(layers.map((entries, i) => ({ digest: `${i}`.padStart(64, '0'), entries })));

describe('the kernel a tree boots (pure)', () => {
  it('finds the kernel of a merged-/usr tree through the lib -> usr/lib symlink', () => {
    const c = chooseKernel(tree(base).entries, null);
    expect(c.kernel).toEqual({
      version: '6.1.0-54-cloud-amd64',
      image: 'boot/vmlinuz-6.1.0-54-cloud-amd64',
      modulesDir: 'usr/lib/modules/6.1.0-54-cloud-amd64',
    });
  });

  it('takes the newest version with both an image and modules, unless the profile pins one', () => {
    const upgrade = [d('boot'), f('boot/vmlinuz-6.1.0-56-cloud-amd64'), d('usr/lib/modules/6.1.0-56-cloud-amd64')];
    const imageOnly = [d('boot'), f('boot/vmlinuz-6.1.0-99-cloud-amd64')];
    const t = tree(base, upgrade, imageOnly).entries;
    expect(chooseKernel(t, null).kernel?.version).toBe('6.1.0-56-cloud-amd64');
    expect(chooseKernel(t, '6.1.0-54-cloud-amd64').kernel?.version).toBe('6.1.0-54-cloud-amd64');
    const pinnedAway = chooseKernel(t, '5.10.0-1-amd64');
    expect(pinnedAway.kernel).toBeNull();
    expect(pinnedAway.why).toMatch(/pins kernel 5\.10\.0-1-amd64.*6\.1\.0-54-cloud-amd64, 6\.1\.0-56-cloud-amd64/);
  });

  it('reads the Fedora layout (lib/modules/V/vmlinuz) and sees a kernel removed by a whiteout', () => {
    const fedora = [
      d(''),
      l('lib', 'usr/lib'),
      d('usr'),
      d('usr/lib'),
      d('usr/lib/modules'),
      d('usr/lib/modules/6.5.6-300.fc39.x86_64'),
      f('usr/lib/modules/6.5.6-300.fc39.x86_64/vmlinuz'),
    ];
    expect(chooseKernel(tree(fedora).entries, null).kernel?.image).toBe('usr/lib/modules/6.5.6-300.fc39.x86_64/vmlinuz');
    const removed = chooseKernel(tree(base, [d('boot'), wh('boot/vmlinuz-6.1.0-54-cloud-amd64')]).entries, null);
    expect(removed.kernel).toBeNull();
    expect(removed.why).toMatch(/no kernel/);
  });

  it('fingerprints the kernel by its image and modules only: other paths leave it alone', () => {
    const t0 = tree(base);
    const k0 = kernelFingerprint(t0, chooseKernel(t0.entries, null).kernel!);
    const t1 = tree(base, [d('etc'), f('etc/motd'), d('usr/lib/modules')]);
    expect(kernelFingerprint(t1, chooseKernel(t1.entries, null).kernel!)).toBe(k0);
    const t2 = tree(base, [d('usr/lib/modules/6.1.0-54-cloud-amd64'), f('usr/lib/modules/6.1.0-54-cloud-amd64/extra.ko')]);
    expect(kernelFingerprint(t2, chooseKernel(t2.entries, null).kernel!)).not.toBe(k0);
  });

  it("reads a real bzImage's version from its header, and nothing from other bytes", () => {
    const k = findKernel();
    expect(bzImageVersion(readFileSync(k.path).subarray(0, 65536))).toBe(k.version);
    expect(bzImageVersion(Buffer.alloc(4096, 7))).toBeNull();
  });

  it("reads a real module's dependencies from its depends= field", () => {
    const k = findKernel();
    const dep = execFileSync('modinfo', ['-F', 'depends', '-k', k.version, 'virtio_net'], { encoding: 'utf8' }).trim();
    const path = execFileSync('modinfo', ['-n', '-k', k.version, 'virtio_net'], { encoding: 'utf8' }).trim();
    expect(modinfoDepends(readFileSync(path)).sort()).toEqual(dep.split(',').sort());
  });
});

describe('kernels in small trees made of the host kernel', () => {
  const host = findKernel();
  const hostModules = join('/lib/modules', host.version);
  let dir: string;
  let store: Store;

  /** A tree whose kernel V has the host's image and the named host modules (paths as in modules.dep). */
  function kernelDir(root: string, v: string, modules: string[], builtin: string[] = []): void {
    mkdirSync(join(root, 'boot'), { recursive: true });
    copyFileSync(host.path, join(root, `boot/vmlinuz-${v}`));
    const kdir = join(root, 'usr/lib/modules', v);
    for (const m of modules) {
      mkdirSync(dirname(join(kdir, m)), { recursive: true });
      copyFileSync(join(hostModules, m), join(kdir, m));
    }
    writeFileSync(join(kdir, 'modules.dep'), modules.map((m) => `${m}:\n`).join(''));
    writeFileSync(join(kdir, 'modules.builtin'), builtin.map((b) => `${b}\n`).join(''));
  }

  const depPath = (name: string) =>
    readFileSync(join(hostModules, 'modules.dep'), 'utf8')
      .split('\n')
      .find((x) => x.includes(`/${name}.ko:`))!
      .split(':')[0]!;

  function tarOf(root: string, name: string): string {
    const out = join(dir, `${name}.tar`);
    execFileSync('tar', ['-C', root, '--numeric-owner', '-cf', out, '.']);
    return out;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'strata-kchoice-'));
    store = await Store.open(join(dir, 'data'), { create: true });
  });
  afterAll(() => {
    store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a kernel without overlay support at import, naming what is missing', async () => {
    const root = join(dir, 'no-overlay');
    kernelDir(root, '6.1.0-1-test', [depPath('loop'), depPath('squashfs')]);
    symlinkSync('usr/lib', join(root, 'lib'));
    const e = (await store.importBase('noov', root, { level: 3 }).catch((x: unknown) => x)) as StrataError;
    expect(e.code).toBe('E_BAD_SOURCE');
    expect(e.message).toMatch(/kernel 6\.1\.0-1-test has no overlay support/);
    expect(() => store.getProfile('noov')).toThrow();
  });

  it('builds the initramfs from the tree (overlay built in), keeps it when the kernel is untouched, follows a pin', async () => {
    const root = join(dir, 'ok');
    kernelDir(root, '6.1.0-1-test', [depPath('loop'), depPath('squashfs')], ['kernel/fs/overlayfs/overlay.ko']);
    symlinkSync('usr/lib', join(root, 'lib'));
    const c1 = await store.importBase('k', root, { level: 3 });
    expect(c1.manifest.kernel?.size).toBe(readFileSync(host.path).length);
    expect(store.bootRecord(c1.id)).toMatchObject({ source: 'tree', version: '6.1.0-1-test' });
    const listing = execFileSync('sh', ['-c', 'zcat "$1" | cpio -it --quiet', 'sh', store.objectPath(c1.manifest.initrd!.digest)], {
      encoding: 'utf8',
    });
    expect(listing).toContain(`lib/modules/6.1.0-1-test/${depPath('squashfs')}`);
    expect(listing).not.toMatch(/overlay\.ko/);

    // A layer that does not touch the kernel: same kernel and initrd blobs, and a line saying so.
    const etc = join(dir, 'etc-layer');
    mkdirSync(join(etc, 'etc'), { recursive: true });
    writeFileSync(join(etc, 'etc/motd'), 'hello\n');
    const c2 = (await store.commitTar('k', tarOf(etc, 'etc'))).commit;
    expect(c2.manifest.kernel).toEqual(c1.manifest.kernel);
    expect(c2.manifest.initrd).toEqual(c1.manifest.initrd);
    expect(store.bootRecord(c2.id)?.note).toMatch(/unchanged.*kept from the parent/);

    // A newer kernel in a layer wins; pinned back, the next commit boots the old one again.
    const up = join(dir, 'up');
    kernelDir(up, '6.1.0-2-test', [depPath('loop'), depPath('squashfs'), depPath('overlay')]);
    const c3 = (await store.commitTar('k', tarOf(up, 'up'))).commit;
    expect(store.bootRecord(c3.id)).toMatchObject({ source: 'tree', version: '6.1.0-2-test' });
    expect(c3.manifest.initrd?.digest).not.toBe(c1.manifest.initrd?.digest);
    store.setKernelPin('k', '6.1.0-1-test');
    writeFileSync(join(etc, 'etc/motd'), 'pinned\n');
    const c4 = (await store.commitTar('k', tarOf(etc, 'etc2'))).commit;
    expect(store.bootRecord(c4.id)?.version).toBe('6.1.0-1-test');
    // The same modules give the same initramfs: found again by digest, not rebuilt differently.
    expect(c4.manifest.initrd).toEqual(c1.manifest.initrd);
  });

  it("the CLI shows where a commit's kernel came from, pins a version and builds an initramfs --from a commit", async () => {
    const data = join(dir, 'data');
    const show = await runStrata(['show', 'k~2'], { data });
    expect(show.stdout).toMatch(/^boot {7}parent 6\.1\.0-1-test: kernel 6\.1\.0-1-test unchanged in the tree/m);
    const pin = await runStrata(['profile', 'k', '--kernel-version', 'newest'], { data });
    expect(pin.stdout).toMatch(/^kernel-version newest in the tree$/m);
    const bad = await runStrata(['profile', 'k', '--kernel-version', 'not a version'], { data });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/not a kernel version/);
    const out = join(dir, 'from.img');
    const built = await runStrata(['initrd', 'build', '-o', out, '--from', 'k', '--kernel-version', '6.1.0-2-test'], { data });
    expect(built.stderr).toBe('');
    expect(built.stdout).toMatch(/for kernel 6\.1\.0-2-test from k's tree/);
    const listing = execFileSync('sh', ['-c', 'zcat "$1" | cpio -it --quiet', 'sh', out], { encoding: 'utf8' });
    expect(listing).toContain(`lib/modules/6.1.0-2-test/${depPath('overlay')}`);
  });

  it("a branch that starts a new profile keeps the source profile's kernel pin, and its commits boot the pinned kernel", async () => {
    store.setKernelPin('k', '6.1.0-1-test');
    store.branch('k-pinned', 'k');
    expect(store.kernelPin('k-pinned')).toBe('6.1.0-1-test');
    const shown = await runStrata(['profile', 'k-pinned'], { data: join(dir, 'data') });
    expect(shown.stdout).toMatch(/^kernel-version 6\.1\.0-1-test/m);
    const etc = join(dir, 'branch-layer');
    mkdirSync(join(etc, 'etc'), { recursive: true });
    writeFileSync(join(etc, 'etc/motd'), 'on the branch\n');
    // The tree holds 6.1.0-1-test and the newer 6.1.0-2-test: only the pin picks the older one.
    const c = (await store.commitTar('k-pinned', tarOf(etc, 'branch'))).commit;
    expect(store.bootRecord(c.id)?.version).toBe('6.1.0-1-test');
    // Unpinning the source later does not reach into the copy.
    store.setKernelPin('k', null);
    expect(store.kernelPin('k-pinned')).toBe('6.1.0-1-test');
  });

  it('gc forgets where the kernels of the commits it deletes came from', async () => {
    const keep = store.getProfile('k-pinned').head!;
    const etc = join(dir, 'gc-layer');
    mkdirSync(join(etc, 'etc'), { recursive: true });
    writeFileSync(join(etc, 'etc/motd'), 'soon gone\n');
    const gone = (await store.commitTar('k-pinned', tarOf(etc, 'gc'))).commit.id;
    expect(store.bootRecord(gone)).not.toBeNull();
    store.rollback('k-pinned', keep);
    // Long ago: the reflog no longer holds the dropped commit.
    store.db.prepare('UPDATE reflog SET time = time - ?').run(31 * 24 * 3600 * 1000);
    const r = await store.gc();
    expect(r.commits).toContain(gone);
    expect(store.bootRecord(gone)).toBeNull();
    const orphans = store.db.prepare('SELECT COUNT(*) AS n FROM commit_boot WHERE commit_id NOT IN (SELECT id FROM commits)').get() as {
      n: number;
    };
    expect(orphans.n).toBe(0);
    expect(store.bootRecord(keep)?.version).toBe('6.1.0-1-test');
    expect((await store.fsck()).problems).toEqual([]);
  });
});
