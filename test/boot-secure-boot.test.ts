/**
 * Secure Boot, end to end: a UEFI machine (Debian's OVMF Secure Boot build,
 * Microsoft's keys enrolled) PXE-boots with its own network stack (no iPXE
 * ROM): the firmware verifies shim (Microsoft-signed, shim-signed), shim
 * verifies GRUB's network image (Debian-signed, grub-efi-amd64-signed), GRUB
 * reads the boot config strata wrote where that signed image looks
 * (<TFTP root>/grub/grub.cfg; it has no http module, so it cannot ask
 * /v1/boot/grub), loads kernel and initrd over TFTP and verifies the
 * Debian-signed kernel through shim; the kernel runs in Secure Boot
 * (lockdown) mode, loads Debian's signed modules from strata's initrd, and
 * the initramfs fetches the manifest and layers from the real strata server
 * over HTTP and assembles the overlay root.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildInitrd } from '../cli/initrd-build.ts';
import {
  GRUBNET_SIGNED,
  missingSecureBootFiles,
  SECURE_BOOT_TFTP,
  secureBootConfig,
  writeSecureBootTftp,
} from '../server/pxe/secure-boot-tftp.ts';
import { buildServer } from '../server/build-server.ts';
import { Store } from '../store/store.ts';
import { missingFirmware, runFirmwareQemu } from './helpers/qemu-firmware.ts';
import { findKernel, proofs, strataLines } from './helpers/qemu.ts';
import { makeTestChain } from './helpers/static-boot-server.ts';

async function missingPrereq(): Promise<string | null> {
  const q = spawnSync('qemu-system-x86_64', ['-accel', 'help'], { encoding: 'utf8' });
  if (q.error || q.status !== 0 || !/^tcg$/m.test(q.stdout))
    return 'qemu-system-x86_64 with TCG is not installed (apt-get install qemu-system-x86)';
  return missingFirmware('uefi-secure-boot') ?? (await missingSecureBootFiles());
}

const skipReason = await missingPrereq();
if (skipReason) console.warn(`boot-secure-boot: skipped: ${skipReason}`);

const PROFILE = 'lab';
/** What Debian's kernel prints when the firmware booted it with Secure Boot on. */
const SECURE_BOOT_ON = /secureboot: Secure boot enabled/;

describe.skipIf(skipReason !== null)('Secure Boot: shim -> signed GRUB -> signed kernel -> strata', () => {
  let dir: string;
  let store: Store;
  let app: FastifyInstance;
  let port: number;
  let head: string;
  const log: Array<{ url: string; agent: string; status: number }> = [];

  beforeAll(async () => {
    const kernel = findKernel();
    dir = mkdtempSync(join(tmpdir(), 'strata-secure-boot-'));
    const initrd = (await buildInitrd({ output: join(dir, 'initrd.img'), kernelVersion: kernel.version })).output;
    const chain = await makeTestChain(dir);
    store = await Store.open(join(dir, 'data'), { create: true });
    await store.importBase(PROFILE, chain.trees.base, { kernel: kernel.path, initrd, message: 'base', compressor: 'zstd', level: 3 });
    const tar = join(dir, 'middle.tar');
    execFileSync('tar', ['-C', chain.trees.middle, '--numeric-owner', '--xattrs', '--xattrs-include=*', '-cf', tar, '.']);
    head = (await store.commitTar(PROFILE, tar, { message: 'middle' })).commit.id;
    // No `quiet`: the kernel's Secure Boot line is part of the proof.
    store.setCmdline(PROFILE, 'console=ttyS0 panic=-1 strata.reboot.delay=0 strata.retries=3');
    store.assign('default', PROFILE);
    app = buildServer({ store });
    app.addHook('onResponse', async (req, reply) => {
      log.push({ url: req.url, agent: String(req.headers['user-agent'] ?? ''), status: reply.statusCode });
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as AddressInfo).port;
  }, 180_000);

  afterAll(async () => {
    await app?.close();
    store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the config GRUB reads from TFTP loads kernel and initrd over TFTP (the signed GRUB has no http) with the commit pinned', () => {
    const boot = secureBootConfig(store, `http://10.0.2.2:${port}`);
    const m = store.getCommit(head).manifest;
    expect(boot!.grubCfg).toContain(
      `  linux /strata/objects/${m.kernel!.digest} strata.server=http://10.0.2.2:${port} strata.commit=${head} `,
    );
    expect(boot!.grubCfg).toContain(`  initrd /strata/objects/${m.initrd!.digest}\n`);
    expect(boot!.grubCfg).not.toContain('(http,');
    expect(boot!.objects.map((o) => o.digest)).toEqual([m.kernel!.digest, m.initrd!.digest]);
  });

  it('boots the commit to the overlay root with Secure Boot enforced all the way to the kernel', async () => {
    const tftp = join(dir, 'tftp');
    const boot = secureBootConfig(store, `http://10.0.2.2:${port}`);
    expect(boot).not.toBeNull();
    const bootfile = await writeSecureBootTftp(tftp, boot!);
    const r = await runFirmwareQemu({
      firmware: 'uefi-secure-boot',
      varsFile: join(dir, 'vars.fd'),
      tftpDir: tftp,
      bootfile,
      nicRom: false,
      bootOrder: ['net'],
      timeoutMs: 480_000,
    });
    const why = `console:\n${r.output.slice(-5000)}\naccess log:\n${log.map((a) => `${a.status} ${a.url} (${a.agent})`).join('\n')}`;
    expect(r.timedOut, why).toBe(false);
    const p = proofs(r.output);
    expect(p.commit, why).toBe(head);
    expect(p['root-fstype']).toBe('overlay');
    expect(p.middle).toBe('middle');
    expect(p.rw).toBe('writable');
    expect(r.output, why).toMatch(SECURE_BOOT_ON);
    expect(strataLines(r.output).filter((l) => l.startsWith('strata: error:'))).toEqual([]);
    // The firmware's own PXE fetched shim; shim, GRUB, kernel and initrd came
    // over TFTP; the initramfs fetched the manifest and layers over HTTP.
    expect(r.output).toContain(`NBP filename is ${SECURE_BOOT_TFTP.shim}`);
    expect(log.filter((a) => a.agent.startsWith('GRUB '))).toEqual([]);
    const manifest = store.getCommit(head).manifest;
    const got = log.filter((a) => a.status === 200).map((a) => a.url);
    expect(got, why).toContain(`/v1/commits/${head}/manifest`);
    for (const l of manifest.layers) expect(got).toContain(`/objects/sha256/${l.digest}`);
  }, 560_000);

  it("shim refuses a GRUB Debian did not sign, so nothing of strata's is fetched", async () => {
    const unsigned = '/usr/lib/grub/x86_64-efi/monolithic/grubnetx64.efi';
    if (!existsSync(unsigned)) return expect.fail(`${unsigned} is missing (apt-get install grub-efi-amd64-bin)`);
    expect(existsSync(GRUBNET_SIGNED)).toBe(true);
    const tftp = join(dir, 'tftp-unsigned');
    const bootfile = await writeSecureBootTftp(tftp, secureBootConfig(store, `http://10.0.2.2:${port}`)!);
    // The same GRUB build, without Debian's signature.
    execFileSync('cp', [unsigned, join(tftp, SECURE_BOOT_TFTP.grub)]);
    const before = log.length;
    const r = await runFirmwareQemu({
      firmware: 'uefi-secure-boot',
      varsFile: join(dir, 'vars-unsigned.fd'),
      tftpDir: tftp,
      bootfile,
      nicRom: false,
      bootOrder: ['net'],
      timeoutMs: 240_000,
      stopWhen: (l) => /Security Violation|Access Denied/.test(l),
    });
    const why = `console:\n${r.output.slice(-4000)}`;
    expect(r.output, why).toMatch(/Verification failed: \(0x1A\) Security Violation/);
    expect(r.output).not.toContain('Welcome to GRUB');
    expect(log.slice(before)).toEqual([]);
  }, 300_000);
});
