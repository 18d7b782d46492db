/**
 * End to end: a real store (busybox base + two layers, one of them deleting
 * a base file by whiteout), the real HTTP server on loopback, and QEMU
 * network-booting the Debian kernel with the initrd from buildInitrd: iPXE
 * ROM -> TFTP two-line script -> /v1/boot/ipxe -> kernel + initrd over HTTP
 * -> strata-root.sh -> overlay root -> the guest's init prints proof lines.
 *
 * Then the failures a person at the console must understand: a corrupted
 * layer, a manifest whose hash is not the commit id, an unreachable server.
 * Those boot the kernel directly (as a local boot loader would) from a
 * static server that can serve wrong bytes on purpose.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { buildInitrd } from '../cli/initrd-build.ts';
import { Store } from '../store/store.ts';
import { buildServer } from '../server/build-server.ts';
import { findKernel, proofs, runQemu, strataLines, writeIpxeChain } from './helpers/qemu.ts';
import { closedPort, makeTestChain, startStaticBootServer, type StaticBootServer, type TestChain } from './helpers/static-boot-server.ts';

const kernel = findKernel();
let dir: string;
let initrd: string;
let chain: TestChain;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-boot-e2e-'));
  initrd = (await buildInitrd({ output: join(dir, 'initrd.img'), kernelVersion: kernel.version })).output;
  chain = await makeTestChain(dir);
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('PXE boot of a layer chain from strata serve', () => {
  let store: Store;
  let app: FastifyInstance;
  const requested: string[] = [];

  beforeAll(async () => {
    store = await Store.open(join(dir, 'data'), { create: true });
    await store.importBase('lab', chain.trees.base, { kernel: kernel.path, initrd, message: 'busybox base' });
    for (const k of ['middle', 'top'] as const) {
      const tar = join(dir, `${k}.tar`);
      // An upper-dir tar as a client would push it: the whiteout is a char 0:0 device.
      execFileSync('tar', ['-C', chain.trees[k], '--numeric-owner', '--xattrs', '--xattrs-include=*', '-cf', tar, '.']);
      await store.commitTar('lab', tar, { message: k });
    }
    store.setCmdline('lab', 'console=ttyS0 panic=-1 quiet strata.reboot.delay=0 strata.retries=3');
    store.assign('default', 'lab');
    app = buildServer({ store });
    app.addHook('onRequest', async (req) => {
      requested.push(req.url);
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    store?.close();
  });

  it('boots an overlay root whose top layer is visible, whiteout honoured, /.rw writable, commit recorded', async () => {
    const port = (app.server.address() as AddressInfo).port;
    const tftp = join(dir, 'tftp');
    mkdirSync(tftp, { recursive: true });
    await writeIpxeChain(tftp, port);
    const head = store.getProfile('lab').head!;

    const r = await runQemu({ tftpDir: tftp, timeoutMs: 90_000 });
    const p = proofs(r.output);
    const why = `console:\n${r.output.slice(-3000)}`;
    expect(r.timedOut, why).toBe(false);
    expect(p['root-fstype'], why).toBe('overlay');
    expect(p.top).toBe('top');
    expect(p.middle).toBe('middle');
    expect(p.base).toBe('base');
    expect(p.whiteout).toBe('gone');
    expect(p.rw).toBe('writable');
    expect(p.commit).toBe(head);
    expect(p.layers).toBe('3');
    expect(strataLines(r.output).some((l) => /^strata: switch_root at \d+\.\d+$/.test(l))).toBe(true);
    // The client went the whole way through the server: script, kernel, initrd, manifest, three layers.
    const layers = store.getCommit(head).manifest.layers.map((l) => `/objects/sha256/${l.digest}`);
    expect(requested.some((u) => u.startsWith('/v1/boot/ipxe?mac='))).toBe(true);
    expect(requested).toContain(`/v1/commits/${head}/manifest`);
    for (const l of layers) expect(requested).toContain(l);
  }, 120_000);
});

describe('boot failures say what failed on one console line', () => {
  let srv: StaticBootServer;
  let good: string;
  let blobs: { digest: string; size: number }[];

  beforeAll(async () => {
    srv = await startStaticBootServer({ dir: join(dir, 'static'), kernel: kernel.path, initrd });
    blobs = [];
    for (const k of ['base', 'middle', 'top'] as const) blobs.push(await srv.addObject(chain.layers[k]));
    good = await srv.addManifest(blobs);
  });
  afterAll(async () => {
    await srv?.close();
  });

  const boot = (server: string, commit: string, extra = '') =>
    runQemu({
      kernel: kernel.path,
      initrd,
      append: `console=ttyS0 panic=-1 quiet strata.server=${server} strata.commit=${commit} strata.reboot.delay=0 strata.retries=2 ${extra}`,
      timeoutMs: 75_000,
    });

  const errorLines = (out: string) => strataLines(out).filter((l) => l.startsWith('strata: error:'));

  it('a corrupted layer (digest mismatch) stops the boot and names the layer', async () => {
    // Same chain as `good` but its middle layer is served with flipped bytes.
    const middle = blobs[1]!;
    const bad = Buffer.from(readFileSync(chain.layers.middle));
    bad[100] = bad[100]! ^ 0xff;
    const fakeDigest = createHash('sha256').update('not the middle layer').digest('hex');
    await srv.putObjectRaw(fakeDigest, bad);
    const commit = await srv.addManifest([blobs[0]!, { digest: fakeDigest, size: middle.size }, blobs[2]!]);
    const r = await boot(srv.guestUrl, commit);
    const errs = errorLines(r.output);
    expect(r.timedOut, r.output.slice(-2000)).toBe(false);
    expect(errs, r.output.slice(-2000)).toHaveLength(1);
    expect(errs[0]).toMatch(new RegExp(`layer ${fakeDigest} downloaded from .* is corrupt \\(digest mismatch`));
    expect(errs[0]).toMatch(/check the server's store/);
    expect(proofs(r.output)).toEqual({});
  }, 100_000);

  it('a manifest whose sha256 is not the commit id stops the boot', async () => {
    const liar = createHash('sha256').update('some other commit').digest('hex');
    await srv.putManifestRaw(liar, readFileSync(join(dir, 'static/manifests', good), 'utf8'));
    const before = srv.log.length;
    const r = await boot(srv.guestUrl, liar);
    const errs = errorLines(r.output);
    expect(errs, r.output.slice(-2000)).toHaveLength(1);
    expect(errs[0]).toMatch(new RegExp(`manifest of commit ${liar} from .* hashes to ${good}, not to the commit id`));
    expect(proofs(r.output)).toEqual({});
    // It never went on to download layers for a manifest it could not trust.
    const after = srv.log.slice(before);
    expect(after.map((e) => e.url)).toEqual([`/v1/commits/${liar}/manifest`]);
  }, 100_000);

  it('an unreachable server without a backup disk says so', async () => {
    const port = await closedPort();
    const r = await boot(`http://10.0.2.2:${port}`, good);
    const errs = errorLines(r.output);
    expect(r.timedOut, r.output.slice(-2000)).toBe(false);
    expect(errs, r.output.slice(-2000)).toHaveLength(1);
    expect(errs[0]).toMatch(new RegExp(`cannot fetch the manifest of commit ${good} from http://10.0.2.2:${port} after 2 attempts`));
    expect(errs[0]).toMatch(/no backup disk to fall back on/);
    expect(proofs(r.output)).toEqual({});
  }, 100_000);
});
