/**
 * The same hook packaged for the distributions' own initramfs builders,
 * built with the real tools: initramfs-tools' mkinitramfs (installed with
 * the kernel) and dracut. dracut is NOT installed on the host (on Debian it
 * replaces initramfs-tools): the test fetches the dracut-core .deb with
 * `apt-get download`, unpacks it with dpkg-deb -x and runs that copy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findKernel, proofs, runQemu } from './helpers/qemu.ts';
import { makeTestChain, startStaticBootServer, type StaticBootServer } from './helpers/static-boot-server.ts';

const HOOKS = fileURLToPath(new URL('../initrd-hooks/', import.meta.url));
const kernel = findKernel();
let dir: string;
let srv: StaticBootServer;
let commit: string;

/** Names in an initramfs image, whatever its compression (lsinitramfs handles early cpio too). */
function listImage(image: string): string[] {
  return execFileSync('lsinitramfs', [image], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).split('\n');
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-packaging-'));
  const chain = await makeTestChain(dir);
  srv = await startStaticBootServer({ dir: join(dir, 'srv'), kernel: kernel.path, initrd: '/dev/null' });
  const blobs = [];
  for (const k of ['base', 'middle', 'top'] as const) blobs.push(await srv.addObject(chain.layers[k]));
  commit = await srv.addManifest(blobs);
}, 120_000);
afterAll(async () => {
  await srv?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Boots the image with the packaging's root selector and returns what the guest proved. */
async function bootImage(image: string, selector: string): Promise<{ proof: Record<string, string>; output: string }> {
  const r = await runQemu({
    kernel: kernel.path,
    initrd: image,
    append: `console=ttyS0 panic=-1 quiet ${selector} strata.server=${srv.guestUrl} strata.commit=${commit} strata.reboot.delay=0 strata.retries=3`,
    timeoutMs: 90_000,
  });
  return { proof: proofs(r.output), output: r.output };
}

describe('initramfs-tools packaging (boot=strata)', () => {
  it('mkinitramfs with the hook makes an image holding the boot script, the hook, busybox and the modules, and it boots', async () => {
    const conf = join(dir, 'itconf');
    mkdirSync(join(conf, 'hooks'), { recursive: true });
    mkdirSync(join(conf, 'scripts'), { recursive: true });
    mkdirSync(join(conf, 'conf.d'), { recursive: true });
    writeFileSync(join(conf, 'initramfs.conf'), 'MODULES=list\nBUSYBOX=auto\nCOMPRESS=gzip\nKEYMAP=n\nRUNSIZE=10%\nFSTYPE=auto\n');
    writeFileSync(join(conf, 'modules'), '');
    // A symlink to the checkout, as docs/booting.md suggests: the hook finds strata-root.sh through it.
    symlinkSync(join(HOOKS, 'initramfs-tools/hooks/strata'), join(conf, 'hooks/strata'));
    cpSync(join(HOOKS, 'initramfs-tools/scripts/strata'), join(conf, 'scripts/strata'));
    const image = join(dir, 'initrd.img-tools');
    const r = spawnSync('mkinitramfs', ['-d', conf, '-o', image, kernel.version], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const names = listImage(image);
    const has = (suffix: string) => names.some((n) => n === suffix || n.endsWith(`/${suffix}`) || n === `usr/${suffix}`);
    expect(names).toContain('scripts/strata');
    for (const f of [
      'lib/strata/strata-root.sh',
      'lib/strata/parse-cmdline.sh',
      'lib/strata/udhcpc.script',
      'lib/strata/bin/busybox',
      'lib/strata/bin/wget',
      'lib/strata/bin/sha256sum',
    ]) {
      expect(has(f), f).toBe(true);
    }
    for (const m of ['squashfs.ko', 'overlay.ko', 'loop.ko', 'virtio_net.ko'])
      expect(
        names.some((n) => n.endsWith(`/${m}`)),
        m,
      ).toBe(true);
    // The boot script in the image is ours and defines what initramfs-tools' init calls.
    const x = join(dir, 'it-x');
    execFileSync('unmkinitramfs', [image, x]);
    const script = execFileSync('sh', ['-c', 'cat "$(find "$1" -path "*/scripts/strata" | head -1)"', 'sh', x], { encoding: 'utf8' });
    expect(script).toMatch(/^mountroot\(\) \{/m);
    expect(script).toContain('strata_boot "${rootmnt}"');

    const { proof, output } = await bootImage(image, 'boot=strata');
    expect(proof.commit, output.slice(-3000)).toBe(commit);
    expect(proof['root-fstype']).toBe('overlay');
    expect(proof.top).toBe('top');
    expect(proof.whiteout).toBe('gone');
  }, 150_000);
});

/** apt-get download, after an apt-get update when the package lists are missing or stale. */
function download(): { stderr: string } {
  const first = spawnSync('apt-get', ['download', 'dracut-core'], { cwd: join(dir, 'deb'), encoding: 'utf8', timeout: 120_000 });
  if (first.status === 0) return first;
  spawnSync('apt-get', ['update', '-q'], { encoding: 'utf8', timeout: 300_000 });
  return spawnSync('apt-get', ['download', 'dracut-core'], { cwd: join(dir, 'deb'), encoding: 'utf8', timeout: 120_000 });
}

describe('dracut packaging (90strata, root=strata)', () => {
  it('an unpacked dracut-core builds an image with the module, its hooks and the script, and it boots', async () => {
    const deb = join(dir, 'deb');
    mkdirSync(deb, { recursive: true });
    // A .deb apt already has (e.g. a CI cache) saves the download.
    const cached = readdirSync('/var/cache/apt/archives')
      .filter((f) => /^dracut-core_.*\.deb$/.test(f))
      .sort()
      .at(-1);
    let dl = { stderr: '' };
    if (cached) cpSync(join('/var/cache/apt/archives', cached), join(deb, cached));
    else dl = download();
    const debs = readdirSync(deb).filter((f) => f.endsWith('.deb'));
    expect(debs, `apt-get download dracut-core failed: ${dl.stderr}`).toHaveLength(1);
    const root = join(dir, 'dracut-root');
    execFileSync('dpkg-deb', ['-x', join(deb, debs[0]!), root]);
    const base = join(root, 'usr/lib/dracut');
    cpSync(join(HOOKS, 'dracut/90strata'), join(base, 'modules.d/90strata'), { recursive: true });
    mkdirSync(join(dir, 'dracut-conf'));
    mkdirSync(join(dir, 'dracut-tmp'));
    const image = join(dir, 'initrd.img-dracut');
    const r = spawnSync(
      join(root, 'usr/bin/dracut'),
      [
        '--force',
        '--no-hostonly',
        '--conf',
        '/dev/null',
        '--confdir',
        join(dir, 'dracut-conf'),
        '--tmpdir',
        join(dir, 'dracut-tmp'),
        '--kver',
        kernel.version,
        '--kmoddir',
        `/lib/modules/${kernel.version}`,
        '-m',
        'base strata',
        '--no-early-microcode',
        '--gzip',
        image,
      ],
      { encoding: 'utf8', env: { ...process.env, dracutbasedir: base, STRATA_HOOKS_DIR: HOOKS }, timeout: 150_000 },
    );
    expect(r.status, r.stderr + r.stdout).toBe(0);
    const names = listImage(image);
    for (const f of [
      'usr/lib/dracut/hooks/cmdline/90-parse-strata.sh',
      'usr/lib/dracut/hooks/mount/90-mount-strata.sh',
      'usr/lib/strata/strata-root.sh',
      'usr/lib/strata/parse-cmdline.sh',
      'usr/lib/strata/bin/busybox',
      'usr/lib/strata/bin/wget',
    ]) {
      expect(
        names.some((n) => n === f || n === f.replace(/^usr\//, '')),
        f,
      ).toBe(true);
    }
    for (const m of ['squashfs.ko', 'overlay.ko', 'loop.ko', 'virtio_net.ko'])
      expect(
        names.some((n) => n.endsWith(`/${m}`)),
        m,
      ).toBe(true);

    const { proof, output } = await bootImage(image, 'root=strata');
    expect(proof.commit, output.slice(-3000)).toBe(commit);
    expect(proof['root-fstype']).toBe('overlay');
    expect(proof.top).toBe('top');
    expect(proof.whiteout).toBe('gone');
  }, 300_000);
});
