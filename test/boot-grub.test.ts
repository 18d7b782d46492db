/**
 * A real GRUB network boot against the real strata server: QEMU (TCG) PXE
 * loads GRUB's BIOS network image (grub-mknetdir, Debian 12's GRUB 2.06) over
 * TFTP; GRUB reads the grub.cfg that `strata grub-cfg` prints, fetches
 * GET /v1/boot/grub over HTTP from the fastify app on a non-80 port, loads the
 * kernel and initrd named there over HTTP, and the strata initramfs assembles
 * the chain; the guest's init prints proof lines on the serial console.
 *
 * The machine's MAC is pinned to an older commit while the default follows
 * the profile's head, so "booted the assigned commit" cannot pass by luck.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildInitrd } from '../cli/initrd-build.ts';
import { buildServer } from '../server/build-server.ts';
import { Store } from '../store/store.ts';
import { renderGrubCfg } from '../cli/grub-cfg.ts';
import { runStrata } from './helpers/cli.ts';
import { makeGrubNetDir, missingGrubNetboot } from './helpers/grub.ts';
import { findKernel, proofs, runQemu, strataLines } from './helpers/qemu.ts';
import { makeTestChain } from './helpers/static-boot-server.ts';

/** Why this boot cannot run here, or null: only a missing GRUB image maker, QEMU or kernel skips. */
function missingPrereq(): string | null {
  const grub = missingGrubNetboot();
  if (grub) return grub;
  const q = spawnSync('qemu-system-x86_64', ['-accel', 'help'], { encoding: 'utf8' });
  if (q.error || q.status !== 0 || !/^tcg$/m.test(q.stdout))
    return 'qemu-system-x86_64 with TCG is not installed (apt-get install qemu-system-x86)';
  if (!['/usr/lib/ipxe/qemu/efi-virtio.rom', '/usr/share/qemu/efi-virtio.rom'].some((p) => existsSync(p)))
    return "QEMU's PXE ROM efi-virtio.rom is missing (apt-get install ipxe-qemu)";
  try {
    const k = findKernel();
    if (!existsSync(`/lib/modules/${k.version}`)) return `the kernel ${k.path} has no /lib/modules/${k.version} to build an initrd from`;
  } catch (e) {
    return (e as Error).message;
  }
  return null;
}

const skipReason = missingPrereq();
if (skipReason) console.warn(`boot-grub: skipped: ${skipReason}`);

/** QEMU's default NIC address. */
const GUEST_MAC = '52:54:00:12:34:56';
const PROFILE = 'lab';

interface Access {
  url: string;
  agent: string;
  status: number;
}

describe.skipIf(skipReason !== null)('GRUB network boot from strata serve', () => {
  let dir: string;
  let store: Store;
  let app: FastifyInstance;
  let port: number;
  let pinned: string;
  let head: string;
  const log: Access[] = [];
  const configs: string[] = [];

  beforeAll(async () => {
    const kernel = findKernel();
    dir = mkdtempSync(join(tmpdir(), 'strata-boot-grub-'));
    const initrd = (await buildInitrd({ output: join(dir, 'initrd.img'), kernelVersion: kernel.version })).output;
    const chain = await makeTestChain(dir);
    store = await Store.open(join(dir, 'data'), { create: true });
    await store.importBase(PROFILE, chain.trees.base, {
      kernel: kernel.path,
      initrd,
      message: 'busybox base',
      compressor: 'zstd',
      level: 3,
    });
    const ids: string[] = [];
    for (const k of ['middle', 'top'] as const) {
      const tar = join(dir, `${k}.tar`);
      // An upper-dir tar as a client pushes it: the whiteout is a char 0:0 device.
      execFileSync('tar', ['-C', chain.trees[k], '--numeric-owner', '--xattrs', '--xattrs-include=*', '-cf', tar, '.']);
      ids.push((await store.commitTar(PROFILE, tar, { message: k })).commit.id);
    }
    [pinned, head] = ids as [string, string];
    store.setCmdline(PROFILE, 'console=ttyS0 panic=-1 quiet strata.reboot.delay=0 strata.retries=3');
    store.assign('default', PROFILE);
    store.assign(GUEST_MAC, `${PROFILE}@${pinned}`);

    app = buildServer({ store });
    app.addHook('onResponse', async (req, reply) => {
      log.push({ url: req.url, agent: String(req.headers['user-agent'] ?? ''), status: reply.statusCode });
    });
    app.addHook('onSend', async (req, _reply, payload) => {
      if (req.url.startsWith('/v1/boot/grub')) configs.push(String(payload));
      return payload;
    });
    // Port 0: never 80, so the test proves GRUB reaches a server on another port.
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as AddressInfo).port;
  }, 180_000);

  afterAll(async () => {
    await app?.close();
    store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('GRUB fetches the config, loads kernel and initrd over HTTP, and the machine runs the commit its assignment pins', async () => {
    // The grub.cfg an admin would put on the TFTP server, as strata prints it.
    const printed = await runStrata(['grub-cfg', '--server', `http://10.0.2.2:${port}`, '--serial'], { data: join(dir, 'data') });
    expect(printed.code, printed.stderr).toBe(0);
    const tftp = join(dir, 'tftp');
    const bootfile = await makeGrubNetDir(tftp, printed.stdout);

    const r = await runQemu({ tftpDir: tftp, bootfile, timeoutMs: 90_000 });
    const p = proofs(r.output);
    const why = `console:\n${r.output.slice(-4000)}\naccess log:\n${log.map((a) => `${a.status} ${a.url} (${a.agent})`).join('\n')}`;
    expect(r.timedOut, why).toBe(false);
    expect(p.commit, why).toBe(pinned);
    expect(pinned).not.toBe(head);
    expect(p['root-fstype']).toBe('overlay');
    expect(p.base).toBe('base');
    expect(p.middle).toBe('middle');
    expect(p.top).toBe('missing');
    expect(p.rw).toBe('writable');
    expect(strataLines(r.output).filter((l) => l.startsWith('strata: error:') || l.startsWith('strata: warning:'))).toEqual([]);

    // GRUB asked with the MAC and IP it got from DHCP, and got a config that
    // points back at this very port.
    const ask = log.find((a) => a.url.startsWith('/v1/boot/grub'));
    expect(ask, why).toMatchObject({ url: `/v1/boot/grub?mac=${GUEST_MAC}&ip=10.0.2.15`, status: 200 });
    expect(ask!.agent).toMatch(/^GRUB /);
    expect(configs[0]).toContain(`strata.commit=${pinned}`);
    expect(configs[0]).toContain(`strata.server=http://10.0.2.2:${port} `);

    // GRUB downloaded the kernel and initrd; the initramfs the manifest and each layer of the pinned chain.
    const commit = store.getCommit(pinned);
    const got = (path: string, agent: RegExp) => log.some((a) => a.url === path && a.status < 300 && agent.test(a.agent));
    const objectOf = (word: string) =>
      new RegExp(`^  ${word} \\(http,10\\.0\\.2\\.2:${port}\\)(/objects/sha256/[0-9a-f]{64})\\b`, 'm').exec(configs[0] ?? '')?.[1];
    const kernelPath = objectOf('linux');
    const initrdPath = objectOf('initrd');
    expect(kernelPath, configs[0]).toBeDefined();
    expect(initrdPath, configs[0]).toBeDefined();
    expect(got(kernelPath!, /^GRUB /), why).toBe(true);
    expect(got(initrdPath!, /^GRUB /), why).toBe(true);
    expect(got(`/v1/commits/${pinned}/manifest`, /./), why).toBe(true);
    for (const l of commit.manifest.layers) expect(got(`/objects/sha256/${l.digest}`, /./), why).toBe(true);
    expect(commit.manifest.layers).toHaveLength(2);

    // And the server knows what the machine runs.
    expect(store.listClients().find((c) => c.mac === GUEST_MAC)?.commit).toBe(pinned);
  }, 150_000);

  it('when the kernel cannot be downloaded, GRUB falls back, says so, waits and reboots to ask again', async () => {
    const printed = await runStrata(['grub-cfg', '--server', `http://10.0.2.2:${port}`, '--serial'], { data: join(dir, 'data') });
    const tftp = join(dir, 'tftp-fail');
    const bootfile = await makeGrubNetDir(tftp, printed.stdout);
    // The server loses the kernel file (a broken disk, an admin's mistake): GET answers 404.
    const kernelFile = store.objects.pathOf(store.getCommit(pinned).manifest.kernel!.digest);
    renameSync(kernelFile, `${kernelFile}.away`);
    let r: Awaited<ReturnType<typeof runQemu>>;
    try {
      // QEMU runs with -no-reboot: the guest's reboot ends the run.
      // GRUB 2.06 needs ~30 s to give up on a 404 (its HTTP client never finishes
      // parsing a non-200 answer and times out), then falls back and sleeps 30 s.
      r = await runQemu({ tftpDir: tftp, bootfile, timeoutMs: 220_000 });
    } finally {
      renameSync(`${kernelFile}.away`, kernelFile);
    }
    const why = `console:\n${r.output.slice(-3000)}`;
    expect(r.timedOut, why).toBe(false);
    // GRUB draws on the serial line with escape codes and wraps at 80 columns: compare without them.
    const plain = (t: string) =>
      t
        .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
        .replace(/\x1bc/g, '')
        .replace(/\s+/g, '');
    expect(plain(r.output), why).toContain(plain('Falling back to `strata: the kernel or initrd did not load'));
    expect(plain(r.output), why).toContain(
      plain(`strata: could not load the kernel or initrd from http://10.0.2.2:${port}; rebooting in 30 s to ask again`),
    );
    expect(proofs(r.output).commit).toBeUndefined();
  }, 260_000);
});

describe('strata grub-cfg', () => {
  it('asks strata for this machine with the MAC and IP GRUB got, retrying while the server is away', () => {
    const cfg = renderGrubCfg({ server: 'http://boot.example:8080/' });
    expect(cfg).toContain('  configfile "(http,boot.example:8080)/v1/boot/grub?mac=${net_default_mac}&ip=${net_default_ip}"\n');
    expect(cfg).toMatch(/^while true; do$/m);
    expect(cfg).toContain('  sleep 30\n');
    expect(cfg).not.toContain('serial');
    expect(renderGrubCfg({ server: 'http://10.0.0.1', serial: true })).toContain('(http,10.0.0.1:80)/v1/boot/grub?');
    expect(renderGrubCfg({ server: 'http://10.0.0.1', serial: true })).toMatch(/^terminal_output serial console$/m);
  });

  it('refuses a server GRUB cannot reach as written', async () => {
    for (const bad of [
      'https://boot.example',
      'http://boot.example/strata',
      'boot.example:8080',
      'http://u:p@boot.example',
      'http://boot.example/?x=1',
    ]) {
      expect(() => renderGrubCfg({ server: bad }), bad).toThrow(/--server must be http:\/\/HOST\[:PORT\]/);
    }
    const r = await runStrata(['grub-cfg', '--server', 'https://boot.example'], { data: tmpdir() });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('--server must be http://HOST[:PORT]');
  });
});
