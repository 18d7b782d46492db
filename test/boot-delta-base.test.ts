/**
 * A delta update reaching a client (issue 15's acceptance): a new base for a
 * profile stored as the old base's chain plus one delta layer, and a client
 * with a warm backup disk fetching only that layer on its next boot. The real
 * store and the fastify app from server/build-server.ts on loopback, with an
 * access log of every request (an onRequest hook); one QEMU machine (TCG)
 * with a blank 64 MB virtio disk (`strata.backup=/dev/vda
 * strata.backup.format=1`), as test/boot-backup-real-server.test.ts. The
 * busybox demo tree keeps the boots fast. Two boots:
 *
 *   1. PXE boot of the first base: the disk is formatted and caches it.
 *   2. `store.newBase` with the same tree plus /etc/delta-proof and minus
 *      /etc/base-deleted: a delta commit (old chain + one layer); the next PXE
 *      boot downloads only the delta layer (the server's log shows no request
 *      for the base layer), takes the base from the disk, and the guest sees
 *      the new file and not the removed one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { buildInitrd } from '../cli/initrd-build.ts';
import { Store } from '../store/store.ts';
import { buildServer } from '../server/build-server.ts';
import { findKernel, proofs, runQemu, strataLines, writeIpxeChain, type QemuResult } from './helpers/qemu.ts';
import { makeBusyboxRootTree, PROOF_INIT } from './helpers/static-boot-server.ts';
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
if (skipReason) console.warn(`boot-delta-base: skipped: ${skipReason}`);

const PROFILE = 'lab';
const CMDLINE = 'console=ttyS0 panic=-1 quiet strata.reboot.delay=0 strata.retries=2 strata.backup=/dev/vda strata.backup.format=1';
const DELTA_PROOF = 'shipped by the delta layer';
/** The demo init, plus one line telling whether the new base's file is there. */
const INIT = PROOF_INIT.replace(
  'echo "PROOF end"',
  'echo "PROOF delta=$(cat /etc/delta-proof 2>/dev/null || echo missing)"\necho "PROOF end"',
);

/** The digests of the objects (layers, kernel, initrd) requested in these URLs, in order; both URL forms the server answers. */
const objectDigests = (urls: string[]) =>
  urls.flatMap((u) => {
    const m = /^(?:\/v1)?\/objects\/sha256\/([0-9a-f]{64})(?:\?|$)/.exec(u);
    return m ? [m[1]!] : [];
  });

describe.skipIf(skipReason !== null)('a new base stored as a delta, booted by a client with a warm backup disk', () => {
  let dir: string;
  let tree: string;
  let tftp: string;
  let disk: string;
  let store: Store;
  let app: FastifyInstance | null = null;
  let v1: string;
  /** Every request URL the server saw, in order: its access log. */
  const requested: string[] = [];
  const why = (r: QemuResult) => `console:\n${r.output.slice(-3000)}`;
  const pxeBoot = () => runQemu({ tftpDir: tftp, disks: [disk], timeoutMs: 120_000 });
  const layersOf = (id: string) => store.getCommit(id).manifest.layers.map((l) => l.digest);

  beforeAll(async () => {
    const kernel = findKernel();
    dir = mkdtempSync(join(tmpdir(), 'strata-boot-delta-'));
    tftp = join(dir, 'tftp');
    mkdirSync(tftp);
    disk = join(dir, 'backup.img');
    execFileSync('truncate', ['-s', '64M', disk]);
    const initrd = (await buildInitrd({ output: join(dir, 'initrd.img'), kernelVersion: kernel.version })).output;
    tree = join(dir, 'tree');
    await makeBusyboxRootTree(tree);
    writeFileSync(join(tree, 'sbin/init'), INIT, { mode: 0o755 });
    store = await Store.open(join(dir, 'data'), { create: true });
    v1 = (await store.importBase(PROFILE, tree, { kernel: kernel.path, initrd, message: 'busybox base', compressor: 'zstd', level: 3 })).id;
    store.setCmdline(PROFILE, CMDLINE);
    store.assign('default', PROFILE);
    app = buildServer({ store });
    app.addHook('onRequest', async (req) => {
      requested.push(req.url);
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    await writeIpxeChain(tftp, (app.server.address() as AddressInfo).port);
  }, 180_000);

  afterAll(async () => {
    await app?.close();
    store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the first PXE boot fetches the base layer and leaves it on the blank backup disk', async () => {
    const before = requested.length;
    const r = await pxeBoot();
    const p = proofs(r.output);
    expect(r.timedOut, why(r)).toBe(false);
    expect(p.commit, why(r)).toBe(v1);
    expect(p.base).toBe('base');
    expect(p.delta).toBe('missing');
    expect(p.whiteout).toBe('present');
    const lines = strataLines(r.output);
    expect(lines, why(r)).toContain('strata: formatting backup disk /dev/vda as ext4 (strata.backup.format=1)');
    expect(lines).toContain('strata: layers ready: 1 downloaded, 0 from the backup disk');
    const [baseLayer] = layersOf(v1);
    expect(objectDigests(requested.slice(before))).toContain(baseLayer);
    const cached = readDiskImage(disk, (root) => readdirSync(join(root, 'strata/objects')));
    expect(cached).toEqual([baseLayer]);
  }, 180_000);

  it('after a new base stored as a delta, the next boot downloads only the delta layer and runs the new tree', async () => {
    // The rebuilt image: the same tree with one file added and one removed.
    writeFileSync(join(tree, 'etc/delta-proof'), `${DELTA_PROOF}\n`);
    rmSync(join(tree, 'etc/base-deleted'));
    const nb = await store.newBase(PROFILE, tree, { message: 'busybox base, rebuilt' });
    expect(nb.mode).toBe('delta');
    expect(nb.branch).toBeNull();
    const v2 = nb.commit.id;
    const oldLayers = layersOf(v1);
    const newLayers = layersOf(v2);
    // The new base's chain is the old one plus one layer, far smaller than the full image.
    expect(newLayers).toHaveLength(oldLayers.length + 1);
    expect(newLayers.slice(0, oldLayers.length)).toEqual(oldLayers);
    const deltaLayer = newLayers.at(-1)!;
    const deltaSize = nb.commit.manifest.layers.at(-1)!.size;
    expect(deltaSize).toBe(nb.deltaBytes);
    expect(deltaSize).toBeLessThan(nb.fullBytes / 2);
    // The boot files stay the old base's, so nothing else about the boot changes.
    expect(nb.commit.manifest.kernel).toEqual(store.getCommit(v1).manifest.kernel);
    expect(nb.commit.manifest.initrd).toEqual(store.getCommit(v1).manifest.initrd);

    const before = requested.length;
    const r = await pxeBoot();
    const p = proofs(r.output);
    expect(r.timedOut, why(r)).toBe(false);
    expect(p.commit, why(r)).toBe(v2);
    expect(p.delta).toBe(DELTA_PROOF);
    expect(p.whiteout).toBe('gone');
    expect(p.base).toBe('base');
    expect(p.layers).toBe('2');
    const lines = strataLines(r.output);
    expect(lines, why(r)).toContain('strata: layers ready: 1 downloaded, 1 from the backup disk');
    expect(lines.filter((l) => l.startsWith('strata: error:'))).toEqual([]);

    // The server's log of this boot: the new manifest, and of the objects only the
    // boot files iPXE loads each time and the delta layer, never the old base layer.
    const after = requested.slice(before);
    expect(after).toContain(`/v1/commits/${v2}/manifest`);
    const fetched = objectDigests(after);
    const bootFiles = [nb.commit.manifest.kernel?.digest, nb.commit.manifest.initrd?.digest];
    expect(fetched.filter((d) => !bootFiles.includes(d))).toEqual([deltaLayer]);
    for (const d of oldLayers) expect(fetched).not.toContain(d);
    console.log(
      `boot-delta-base: update fetched ${deltaSize} bytes of layers (delta) instead of ${nb.fullBytes} (full image), ${((100 * deltaSize) / nb.fullBytes).toFixed(1)}%`,
    );

    // And the disk now caches the new chain, with the delta layer carrying the file.
    const view = readDiskImage(disk, (root) => ({
      objects: readdirSync(join(root, 'strata/objects')).sort(),
      lastGood: readFileSync(join(root, 'strata/last-good.id'), 'utf8').trim(),
      proof: spawnSync('rdsquashfs', ['-c', '/etc/delta-proof', join(root, 'strata/objects', deltaLayer)], { encoding: 'utf8' }).stdout,
    }));
    expect(view).toEqual({ objects: [...newLayers].sort(), lastGood: v2, proof: `${DELTA_PROOF}\n` });
  }, 180_000);
});
