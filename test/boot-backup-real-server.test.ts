/**
 * The local backup disk ("caches the chain on a local disk and boots from
 * that disk when the server is down") against the REAL strata server: a real
 * store in a temp dir with a small demo-like profile (busybox base + one
 * commit), the fastify app from server/build-server.ts on loopback, and one
 * QEMU machine (TCG) with a blank 64 MB virtio disk whose profile command line
 * says `strata.backup=/dev/vda strata.backup.format=1`. Three boots:
 *
 *   1. PXE through the server: the disk is formatted and filled; read from
 *      the host afterwards it holds the chain's layers (each one a squashfs
 *      with the committed files) and the last good manifest.
 *   2. The server stopped: the machine starts its kernel locally (as a boot
 *      loader on that disk would, with the command line the server gave it
 *      last time; PXE cannot work without the server) and boots the last good
 *      commit from the disk.
 *   3. A new commit on the profile, the server back: the next PXE boot gets
 *      the new head (the iPXE script resolves the profile's ref at boot
 *      time, docs/design.md), downloads only the new layer and the disk follows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { buildInitrd } from '../cli/initrd-build.ts';
import { Store } from '../store/store.ts';
import { buildServer } from '../server/build-server.ts';
import { findKernel, proofs, runQemu, strataLines, writeIpxeChain, type QemuResult } from './helpers/qemu.ts';
import { makeTestChain, type TestChain } from './helpers/static-boot-server.ts';
import { readDiskImage } from './helpers/mounts.ts';

/** Why these boots cannot run on this machine, or null. Only missing QEMU (TCG), its iPXE ROM or a kernel skip. */
function missingBootPrereq(): string | null {
  const q = spawnSync('qemu-system-x86_64', ['-accel', 'help'], { encoding: 'utf8' });
  if (q.error || q.status !== 0 || !/^tcg$/m.test(q.stdout))
    return 'qemu-system-x86_64 with TCG is not installed (apt-get install qemu-system-x86)';
  if (!['/usr/lib/ipxe/qemu/efi-virtio.rom', '/usr/share/qemu/efi-virtio.rom'].some((p) => existsSync(p)))
    return "QEMU's iPXE ROM efi-virtio.rom is missing (apt-get install ipxe-qemu)";
  let k: { path: string; version: string };
  try {
    k = findKernel();
  } catch (e) {
    return (e as Error).message;
  }
  if (!existsSync(`/lib/modules/${k.version}`)) return `the kernel ${k.path} has no /lib/modules/${k.version} to build an initrd from`;
  return null;
}

const skipReason = missingBootPrereq();
if (skipReason) console.warn(`boot-backup-real-server: skipped: ${skipReason}`);

/** QEMU's default NIC address: what the server records the client under. */
const GUEST_MAC = '52:54:00:12:34:56';
const PROFILE = 'lab';
const CMDLINE = 'console=ttyS0 panic=-1 quiet strata.reboot.delay=0 strata.retries=2 strata.backup=/dev/vda strata.backup.format=1';

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** What the backup disk holds, as a user would look at it. */
interface DiskView {
  objects: string[];
  /** Objects whose sha256 is not their name (a damaged cache). */
  damaged: string[];
  lastGoodId: string;
  lastGoodManifest: string;
  /** `rdsquashfs -c PATH` of each cached layer that has PATH, by digest. */
  files: Record<string, Record<string, string>>;
}

function readBackupDisk(image: string, paths: string[]): DiskView {
  return readDiskImage(image, (root) => {
    const dir = join(root, 'strata');
    const objects = readdirSync(join(dir, 'objects')).sort();
    const files: DiskView['files'] = {};
    for (const o of objects) {
      for (const p of paths) {
        const r = spawnSync('rdsquashfs', ['-c', p, join(dir, 'objects', o)], { encoding: 'utf8' });
        if (r.status === 0) (files[o] ??= {})[p] = r.stdout;
      }
    }
    return {
      objects,
      damaged: objects.filter((o) => sha256(join(dir, 'objects', o)) !== o),
      lastGoodId: readFileSync(join(dir, 'last-good.id'), 'utf8').trim(),
      lastGoodManifest: readFileSync(join(dir, 'last-good.manifest'), 'utf8'),
      files,
    };
  });
}

/** The words after the kernel URL on the `kernel` line of an iPXE script from /v1/boot/ipxe. */
function kernelArgs(script: string): string {
  const line = script.split('\n').find((l) => l.startsWith('kernel '));
  if (!line) throw new Error(`no kernel line in the boot script:\n${script}`);
  return line.replace(/^kernel \S+ /, '').replace(/ \|\| goto failed$/, '');
}

describe.skipIf(skipReason !== null)('backup disk with the real strata server', () => {
  let dir: string;
  let data: string;
  let tftp: string;
  let disk: string;
  let kernel: { path: string; version: string };
  let initrd: string;
  let chain: TestChain;
  let topTar: string;
  let store: Store | null = null;
  let app: FastifyInstance | null = null;
  let port = 0;
  /** Every request the server saw, and every boot script it answered, in order. */
  const requested: string[] = [];
  const scripts: string[] = [];
  let v1: string;

  /** The real app over the store, with an access log of every request and boot script. */
  const listen = async (s: Store, at: number): Promise<FastifyInstance> => {
    const a = buildServer({ store: s });
    a.addHook('onRequest', async (req) => {
      requested.push(req.url);
    });
    a.addHook('onSend', async (req, _reply, payload) => {
      if (req.url.startsWith('/v1/boot/ipxe')) scripts.push(String(payload));
      return payload;
    });
    try {
      await a.listen({ host: '127.0.0.1', port: at });
      return a;
    } catch (e) {
      await a.close();
      throw e;
    }
  };
  /** `strata serve` in-process: the store from the data dir and the real app on loopback. */
  const serve = async (): Promise<void> => {
    store = await Store.open(data);
    // The same port after a restart, as a restarted `strata serve` would have;
    // should another process have taken it meanwhile, any port does (the TFTP
    // script is rewritten and each PXE boot gets a fresh command line).
    try {
      app = await listen(store, port);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
      app = await listen(store, 0);
    }
    port = (app.server.address() as AddressInfo).port;
    await writeIpxeChain(tftp, port);
  };
  const stop = async (): Promise<void> => {
    await app?.close();
    app = null;
    store?.close();
    store = null;
  };
  const layersOf = (s: Store, id: string) => s.getCommit(id).manifest.layers.map((l) => l.digest);
  const layerRequests = (urls: string[], digests: string[]) => urls.filter((u) => digests.some((d) => u === `/objects/sha256/${d}`));
  const why = (r: QemuResult) => `console:\n${r.output.slice(-3000)}`;
  const pxeBoot = () => runQemu({ tftpDir: tftp, disks: [disk], timeoutMs: 90_000 });

  beforeAll(async () => {
    kernel = findKernel();
    dir = mkdtempSync(join(tmpdir(), 'strata-boot-backup-real-'));
    data = join(dir, 'data');
    tftp = join(dir, 'tftp');
    mkdirSync(tftp);
    disk = join(dir, 'backup.img');
    execFileSync('truncate', ['-s', '64M', disk]);
    initrd = (await buildInitrd({ output: join(dir, 'initrd.img'), kernelVersion: kernel.version })).output;
    chain = await makeTestChain(dir);
    // A demo-like profile (cli/demo.ts): busybox base at zstd level 3 with the
    // kernel and initrd, one commit on top, assigned as the default.
    const s = await Store.open(data, { create: true });
    try {
      await s.importBase(PROFILE, chain.trees.base, { kernel: kernel.path, initrd, message: 'busybox base', compressor: 'zstd', level: 3 });
      const mid = join(dir, 'middle.tar');
      execFileSync('tar', ['-C', chain.trees.middle, '--numeric-owner', '--xattrs', '--xattrs-include=*', '-cf', mid, '.']);
      v1 = (await s.commitTar(PROFILE, mid, { message: 'add /etc/middle-file' })).commit.id;
      s.setCmdline(PROFILE, CMDLINE);
      s.assign('default', PROFILE);
    } finally {
      s.close();
    }
    // The next commit's upper-dir tar, as a client would push it: the whiteout is a char 0:0 device.
    topTar = join(dir, 'top.tar');
    execFileSync('tar', ['-C', chain.trees.top, '--numeric-owner', '--xattrs', '--xattrs-include=*', '-cf', topTar, '.']);
    await serve();
  }, 180_000);

  afterAll(async () => {
    await stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('first PXE boot formats the blank disk and caches the chain on it', async () => {
    const before = requested.length;
    const r = await pxeBoot();
    const p = proofs(r.output);
    expect(r.timedOut, why(r)).toBe(false);
    expect(p.commit, why(r)).toBe(v1);
    expect(p['root-fstype']).toBe('overlay');
    expect(p.middle).toBe('middle');
    expect(p.top).toBe('missing');
    const lines = strataLines(r.output);
    expect(lines, why(r)).toContain('strata: formatting backup disk /dev/vda as ext4 (strata.backup.format=1)');
    expect(lines).toContain('strata: layers ready: 2 downloaded, 0 from the backup disk');
    // This disk is a small cache on purpose: the one warning says it gets no boot partition (that layout is
    // test/boot-backup-disk-boot.test.ts's); anything else is a fault.
    const smallDisk = /^strata: warning: backup disk \/dev\/vda is smaller than 512 MiB/;
    expect(lines.filter((l) => (l.startsWith('strata: error:') || l.startsWith('strata: warning:')) && !smallDisk.test(l))).toEqual([]);
    expect(lines.filter((l) => smallDisk.test(l))).toHaveLength(1);

    // The server handed out its head and served every layer of it once.
    const layers = layersOf(store!, v1);
    expect(scripts.at(-1)).toContain(`strata.commit=${v1}`);
    expect(layerRequests(requested.slice(before), layers).sort()).toEqual(layers.map((d) => `/objects/sha256/${d}`).sort());

    // From the host: an ext4 disk with the layers by digest, each intact, the
    // top one carrying the committed file, and the last good manifest.
    const blk = execFileSync('blkid', ['-o', 'export', disk], { encoding: 'utf8' });
    expect(blk).toMatch(/^TYPE=ext4$/m);
    expect(blk).toMatch(/^LABEL=strata-backup$/m);
    const view = readBackupDisk(disk, ['/etc/middle-file', '/etc/base-file']);
    expect(view.objects).toEqual([...layers].sort());
    expect(view.damaged).toEqual([]);
    expect(view.files[layers[1]!]).toEqual({ '/etc/middle-file': 'middle\n' });
    expect(view.files[layers[0]!]?.['/etc/base-file']).toBe('base\n');
    expect(view.lastGoodId).toBe(v1);
    expect(view.lastGoodManifest).toBe(store!.manifestText(v1));
  }, 150_000);

  it('with the server stopped, the same machine boots the committed chain from the disk', async () => {
    const args = kernelArgs(scripts.at(-1)!);
    expect(args).toContain(`strata.server=http://10.0.2.2:${port}`);
    await stop();
    const r = await runQemu({ kernel: kernel.path, initrd, append: args, disks: [disk], timeoutMs: 90_000 });
    const p = proofs(r.output);
    expect(r.timedOut, why(r)).toBe(false);
    expect(p.commit, why(r)).toBe(v1);
    expect(p['root-fstype']).toBe('overlay');
    expect(p.base).toBe('base');
    expect(p.middle).toBe('middle');
    expect(p.top).toBe('missing');
    expect(p.rw).toBe('writable');
    const lines = strataLines(r.output);
    expect(
      lines.some((l) =>
        new RegExp(
          `^strata: warning: server http://10\\.0\\.2\\.2:${port} unreachable after 2 attempts .*booting the last good commit from the backup disk$`,
        ).test(l),
      ),
      lines.join('\n'),
    ).toBe(true);
    expect(lines).toContain(`strata: booting last good commit ${v1} from the backup disk`);
    expect(lines).toContain('strata: layers ready: 0 downloaded, 2 from the backup disk');
    expect(lines.filter((l) => l.startsWith('strata: error:'))).toEqual([]);
  }, 150_000);

  it('after a new commit and a revert, with the server back, the next PXE boot runs the new head and the disk holds only its chain', async () => {
    // `strata commit` while the server is down, then `strata serve` again.
    const s = await Store.open(data);
    let v2: string;
    let oldLayers: string[];
    let newLayers: string[];
    try {
      await s.commitTar(PROFILE, topTar, { message: 'add /etc/top-file, delete /etc/base-deleted' });
      // Drop the middle layer: the disk still caches it, and must let it go.
      v2 = (await s.revert(PROFILE, v1)).commit.id;
      oldLayers = layersOf(s, v1);
      newLayers = layersOf(s, v2);
    } finally {
      s.close();
    }
    const added = newLayers.filter((d) => !oldLayers.includes(d));
    expect(added).toHaveLength(1);
    await serve();

    const before = requested.length;
    const r = await pxeBoot();
    const p = proofs(r.output);
    expect(r.timedOut, why(r)).toBe(false);
    expect(p.commit, why(r)).toBe(v2);
    expect(p.top).toBe('top');
    expect(p.middle).toBe('missing');
    expect(p.whiteout).toBe('gone');
    expect(p.layers).toBe('2');
    const lines = strataLines(r.output);
    expect(lines, why(r)).toContain('strata: layers ready: 1 downloaded, 1 from the backup disk');
    expect(lines, why(r)).toContain(`strata: backup disk: removed 1 cached layers commit ${v2} does not use`);
    expect(lines.filter((l) => l.startsWith('strata: error:') || l.startsWith('strata: warning:'))).toEqual([]);
    // The server saw the client fetch the new manifest and only the new layer.
    const after = requested.slice(before);
    expect(after).toContain(`/v1/commits/${v2}/manifest`);
    expect(layerRequests(after, newLayers)).toEqual([`/objects/sha256/${added[0]}`]);
    // And it knows what the client runs now.
    expect(store!.listClients().find((c) => c.mac === GUEST_MAC)?.commit).toBe(v2);

    const view = readBackupDisk(disk, ['/etc/top-file']);
    expect(view.objects).toEqual([...newLayers].sort());
    expect(view.damaged).toEqual([]);
    expect(view.files[added[0]!]).toEqual({ '/etc/top-file': 'top\n' });
    expect(view.lastGoodId).toBe(v2);
    expect(view.lastGoodManifest).toBe(store!.manifestText(v2));
  }, 150_000);
});
