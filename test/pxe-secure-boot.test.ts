/**
 * Secure Boot on a real network: `strata serve --pxe br0 --pxe-secure-boot`
 * beside the site's DHCP server (test/helpers/test-net.ts), and UEFI VMs
 * with Debian's OVMF Secure Boot build and Microsoft's keys enrolled, NIC
 * without iPXE ROM (the firmware's own PXE).
 *
 * strata's proxy offers shimx64.efi; shim (Microsoft-signed) loads
 * grubx64.efi (Debian-signed GRUB) from strata's TFTP; GRUB reads the
 * dispatcher grub.cfg strata keeps current, picks this MAC's config, loads
 * the Debian-signed kernel and the initrd over TFTP; the initramfs assembles
 * the overlay root over HTTP. The MAC's assignment is made with the CLI
 * while the server runs, so the TFTP root following the store is part of
 * the proof.
 *
 * Debian 12's signed GRUB (2.06) takes its TFTP server from the site DHCP's
 * answer, not from the proxy's (measured): for the VM that boots, the site
 * DHCP names strata as next-server (one setting, still no boot file); a
 * second VM, whose site answer names the site server itself (the default),
 * shows where GRUB then ends: at its prompt, never having read strata's
 * config. docs/pxe.md says so.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildInitrd } from '../cli/initrd-build.ts';
import { missingSecureBootFiles } from '../server/pxe/secure-boot-tftp.ts';
import { Store } from '../store/store.ts';
import { runStrata } from './helpers/cli.ts';
import { type Proc, stopProc, strataInNetns } from './helpers/lan-proc.ts';
import { missingFirmware, runFirmwareQemu } from './helpers/qemu-firmware.ts';
import { findKernel, proofs, strataLines } from './helpers/qemu.ts';
import { makeTestChain } from './helpers/static-boot-server.ts';
import { BRIDGE, BRIDGE_ADDR, createTestNet, haveTestNetTools, SITE_ADDR, type TestNet } from './helpers/test-net.ts';

const missing = haveTestNetTools() ?? missingFirmware('uefi-secure-boot') ?? (await missingSecureBootFiles());
if (missing) throw new Error(`the Secure Boot PXE test needs: ${missing}`);

/** The VM that boots: the site DHCP names strata as its next-server. */
const MAC_SB = '52:54:00:77:00:11';
/** The VM whose site answer keeps the default next-server (the site DHCP itself). */
const MAC_PLAIN = '52:54:00:77:00:12';
/** What Debian's kernel says when the firmware started it with Secure Boot on (its EFI stub, then lockdown). */
const SECURE_BOOT_ON = [/EFI stub: UEFI Secure Boot is enabled/, /Kernel is locked down from EFI Secure Boot/];

let dir: string;
let net: TestNet;
let server: Proc;
let data: string;
let base: string;
let head: string;

beforeAll(async () => {
  const kernel = findKernel();
  dir = mkdtempSync(join(tmpdir(), 'strata-pxe-sb-'));
  const initrd = (await buildInitrd({ output: join(dir, 'initrd.img'), kernelVersion: kernel.version })).output;
  const chain = await makeTestChain(dir);
  data = join(dir, 'data');
  const store = await Store.open(data, { create: true });
  base = (await store.importBase('lab', chain.trees.base, { kernel: kernel.path, initrd, message: 'base', compressor: 'zstd', level: 3 }))
    .id;
  const tar = join(dir, 'middle.tar');
  execFileSync('tar', ['-C', chain.trees.middle, '--numeric-owner', '--xattrs', '--xattrs-include=*', '-cf', tar, '.']);
  head = (await store.commitTar('lab', tar, { message: 'middle' })).commit.id;
  // No `quiet`: the kernel's Secure Boot line is part of the proof.
  store.setCmdline('lab', 'console=ttyS0 panic=-1 strata.reboot.delay=0 strata.retries=3');
  store.assign('default', 'lab');
  store.close();
  net = await createTestNet({
    // Only for MAC_SB: next-server = strata; no file name, no other boot option.
    siteArgs: [`--dhcp-mac=set:strata-next,${MAC_SB}`, `--dhcp-boot=tag:strata-next,,,${BRIDGE_ADDR}`],
  });
  server = strataInNetns(net.lan, [
    '--data',
    data,
    'serve',
    '--http',
    '0.0.0.0:8080',
    '--ssh',
    '127.0.0.1:0',
    '--pxe',
    BRIDGE,
    '--pxe-secure-boot',
  ]);
  // The last line start() logs: dnsmasq runs and the TFTP root is ready.
  await server.waitFor(/PXE: Secure Boot: beside a site DHCP server/, 120_000);
}, 400_000);

afterAll(async () => {
  await stopProc(server);
  await net?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const tftpRoot = () => join(data, 'pxe', BRIDGE, 'tftp');

describe('strata serve --pxe br0 --pxe-secure-boot', () => {
  it('says what the site DHCP must do, and the TFTP root follows an assignment made meanwhile by another process', async () => {
    expect(server.lines.join('\n')).toContain(
      `set the site DHCP's next-server to ${BRIDGE_ADDR} (ISC: next-server; Kea: next-server; dnsmasq: dhcp-boot=,,ADDR)`,
    );
    const from = server.lines.length;
    const r = await runStrata(['assign', MAC_SB, `lab@${base}`], { data });
    expect(r.code, r.stderr).toBe(0);
    await server.waitFor(/PXE: Secure Boot: GRUB configs .* follow the assignments/, 30_000, from);
    const dispatcher = readFileSync(join(tftpRoot(), 'grub/grub.cfg'), 'utf8');
    const cfgFor = (m: RegExp) => readFileSync(join(tftpRoot(), m.exec(dispatcher)![1]!), 'utf8');
    expect(
      cfgFor(new RegExp(`if \\[ "\\$net_default_mac" = '?${MAC_SB}'? \\]; then\\n  configfile /(strata/cfg/[0-9a-f]{16}\\.cfg)`)),
    ).toContain(`strata.commit=${base} `);
    expect(cfgFor(/else\n {2}configfile \/(strata\/cfg\/[0-9a-f]{16}\.cfg)/)).toContain(`strata.commit=${head} `);
    // shim and GRUB are Debian's signed files, served as they are.
    const tftp = (f: string) =>
      execFileSync('ip', ['netns', 'exec', net.site, 'curl', '-sS', '--max-time', '30', `tftp://${BRIDGE_ADDR}/${f}`], {
        maxBuffer: 64 << 20,
      });
    expect(tftp('shimx64.efi').equals(readFileSync('/usr/lib/shim/shimx64.efi.signed'))).toBe(true);
    expect(tftp('grubx64.efi').equals(readFileSync('/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed'))).toBe(true);
  }, 60_000);

  it("a Secure Boot VM boots shim -> signed GRUB -> signed kernel -> its assigned commit; without strata as next-server, GRUB never finds strata's config", async () => {
    const vm = (mac: string, timeoutMs: number, stopWhen?: (l: string) => boolean) =>
      runFirmwareQemu({
        firmware: 'uefi-secure-boot',
        varsFile: join(dir, `vars-${mac.replaceAll(':', '')}.fd`),
        tap: { netns: net.lan, ifname: net.addTap(), mac },
        nicRom: false,
        bootOrder: ['net'],
        timeoutMs,
        stopWhen,
      });
    const [sb, plain] = await Promise.all([vm(MAC_SB, 560_000), vm(MAC_PLAIN, 400_000, (l) => /grub> ?$/.test(l))]);

    const why = `console:\n${sb.output.slice(-5000)}\nserver:\n${server.lines.slice(-60).join('\n')}`;
    expect(sb.timedOut, why).toBe(false);
    const p = proofs(sb.output);
    expect(p.commit, why).toBe(base);
    expect(p['root-fstype']).toBe('overlay');
    expect(p.middle).toBe('missing');
    for (const re of SECURE_BOOT_ON) expect(sb.output, why).toMatch(re);
    expect(sb.output).toContain('NBP filename is shimx64.efi');
    expect(strataLines(sb.output).filter((l) => l.startsWith('strata: error:'))).toEqual([]);
    // Everything up to the kernel came from strata's TFTP.
    const log = server.lines.join('\n');
    for (const f of ['shimx64.efi', 'grubx64.efi', 'grub/grub.cfg', 'strata/cfg/'])
      expect(log).toMatch(new RegExp(`dnsmasq-tftp: sent \\S+/${f.replace('.', '\\.')}\\S* to 10\\.77\\.0\\.\\d+`));
    // The address came from the site DHCP; strata's dnsmasq leased nothing.
    expect(net.siteLeases().map((l) => l.mac)).toContain(MAC_SB);
    expect(log).not.toMatch(/DHCPACK|DHCPOFFER/);

    // The other VM: same proxy answer, shim and GRUB from strata, but GRUB asks the site DHCP's server for grub.cfg.
    const plainWhy = `console:\n${plain.output.slice(-3000)}`;
    expect(plain.output, plainWhy).toContain('NBP filename is shimx64.efi');
    expect(plain.output, plainWhy).toContain('Welcome to GRUB');
    expect(plain.output, plainWhy).toMatch(/grub> ?$/m);
    expect(proofs(plain.output).commit).toBeUndefined();
    expect(net.siteLog.join('\n')).toContain(`next server: ${SITE_ADDR}`);
  }, 600_000);
});
