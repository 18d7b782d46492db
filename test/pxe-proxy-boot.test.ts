/**
 * A real network, inside namespaces this test creates (test/helpers/test-net.ts):
 * a bridge br0, a site DHCP server that hands out addresses and no boot
 * options, and `strata serve --pxe br0` answering PXE clients as proxyDHCP.
 *
 * One server, several VMs: dnsmasq is killed under it first (it must come
 * back), then a BIOS VM (SeaBIOS, the NIC's iPXE ROM: already iPXE, sent
 * straight to /v1/boot/ipxe) and a UEFI VM (OVMF's own PXE, no NIC ROM:
 * snponly.efi over TFTP, then iPXE) boot side by side to the overlay root.
 * The site's lease file holds both; strata's dnsmasq leased nothing.
 * A third VM runs Debian's undionly.kpxe from strata's TFTP on its PXE
 * stack (the ROM is told to, on its console) and boots from there.
 * Then: a second serve --pxe on br0 is refused; stopping the server stops
 * dnsmasq; `strata share` of an ISO boots a VM with nothing else configured.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildInitrd } from '../cli/initrd-build.ts';
import { Store } from '../store/store.ts';
import { type Proc, stopProc, strataInNetns } from './helpers/lan-proc.ts';
import { buildIso } from './helpers/make-iso.ts';
import { findKernel, proofs, runQemu, type QemuResult } from './helpers/qemu.ts';
import { makeTestChain, type TestChain } from './helpers/static-boot-server.ts';
import { BRIDGE, BRIDGE_ADDR, createTestNet, haveTestNetTools, ovmfArgs, SITE_RANGE, type TestNet } from './helpers/test-net.ts';

const kernel = findKernel();
const missing = haveTestNetTools();
if (missing) throw new Error(`the PXE network tests need: ${missing}`);

let dir: string;
let initrd: string;
let chain: TestChain;
let net: TestNet;

const CMDLINE = 'console=ttyS0 panic=-1 quiet strata.reboot.delay=0 strata.retries=3';
const MAC = { bios: '52:54:00:77:00:01', uefi: '52:54:00:77:00:02', share: '52:54:00:77:00:03', undionly: '52:54:00:77:00:04' };

const strataInLan = (args: string[]): Proc => strataInNetns(net.lan, args);
const stop = stopProc;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

function bootVm(mac: string, firmware: 'bios' | 'uefi'): Promise<QemuResult> {
  return runQemu({
    tap: { netns: net.lan, ifname: net.addTap(), mac, ...(firmware === 'uefi' ? { romfile: '' } : {}) },
    machineArgs: firmware === 'uefi' ? ovmfArgs(dir) : [],
    // Generous: under load (other QEMU tests on the same 2 cores) a UEFI boot took over 280 s.
    timeoutMs: 420_000,
  });
}

/**
 * The boot file names strata's dnsmasq sent to one MAC. dnsmasq's --log-dhcp
 * lines start with the transaction id; the MAC is named on the "PXE(br0) MAC"
 * line, the file on the "bootfile name:" line of the same transaction; an
 * answer from the boot service on port 4011 names both on one line.
 */
function bootfilesSent(lines: string[], mac: string): Set<string> {
  const xids = new Set<string>();
  const files = new Set<string>();
  for (const l of lines) {
    const m = /dnsmasq-dhcp: (\d+) PXE\(br0\) (\S+) proxy/.exec(l);
    if (m && m[2] === mac) xids.add(m[1]!);
    // A client that asks the boot server (port 4011) gets "PXE(br0) IP MAC FILE".
    const b = /dnsmasq-dhcp: \d+ PXE\(br0\) [\d.]+ (\S+) (\S+)$/.exec(l);
    if (b && b[1] === mac) files.add(b[2]!);
  }
  for (const l of lines) {
    const m = /dnsmasq-dhcp: (\d+) bootfile name: (\S+)/.exec(l);
    if (m && xids.has(m[1]!)) files.add(m[2]!);
  }
  return files;
}

function expectOverlayRoot(r: QemuResult, head: string): void {
  const why = `console:\n${r.output.slice(-3000)}`;
  const p = proofs(r.output);
  expect(r.timedOut, why).toBe(false);
  expect(p['root-fstype'], why).toBe('overlay');
  expect(p.base, why).toBe('base');
  expect(p.commit, why).toBe(head);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-pxe-'));
  initrd = (await buildInitrd({ output: join(dir, 'initrd.img'), kernelVersion: kernel.version })).output;
  chain = await makeTestChain(dir);
  net = await createTestNet();
}, 180_000);

afterAll(async () => {
  await net?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('strata serve --pxe br0 beside the site DHCP', () => {
  let data: string;
  let head: string;
  let server: Proc;

  beforeAll(async () => {
    data = join(dir, 'data');
    const store = await Store.open(data, { create: true });
    await store.importBase('lab', chain.layers.base, { kernel: kernel.path, initrd, message: 'busybox base' });
    store.setCmdline('lab', CMDLINE);
    store.assign('default', 'lab');
    head = store.getProfile('lab').head!;
    store.close();
    server = strataInLan(['--data', data, 'serve', '--http', '0.0.0.0:8080', '--ssh', '127.0.0.1:0', '--pxe', BRIDGE]);
    await server.waitFor(/PXE: proxyDHCP on br0/);
  }, 120_000);

  afterAll(async () => {
    await stop(server);
  });

  it('dnsmasq killed under the running server is started again', async () => {
    const first = Number((await server.waitFor(/dnsmasq running \(pid (\d+)\)/))[1]);
    const from = server.lines.length;
    process.kill(first, 'SIGKILL');
    const second = Number((await server.waitFor(/dnsmasq running \(pid (\d+)\)/, 30_000, from))[1]);
    expect(second).not.toBe(first);
    expect(alive(second)).toBe(true);
    expect(server.lines.slice(from).some((l) => /dnsmasq exited \(SIGKILL\); starting it again/.test(l))).toBe(true);
  });

  it("serves the BIOS iPXE build from Debian's ipxe package over TFTP", () => {
    // From the site's namespace, so the request arrives on br0 like a client's.
    const got = execFileSync('ip', ['netns', 'exec', net.site, 'curl', '-sS', '--max-time', '20', `tftp://${BRIDGE_ADDR}/undionly.kpxe`]);
    expect(got.equals(readFileSync('/usr/lib/ipxe/undionly.kpxe'))).toBe(true);
  });

  it('a BIOS VM and a UEFI VM PXE-boot through the proxy to the overlay root; only the site DHCP leased addresses', async () => {
    const [bios, uefi] = await Promise.all([bootVm(MAC.bios, 'bios'), bootVm(MAC.uefi, 'uefi')]);
    expectOverlayRoot(bios, head);
    expectOverlayRoot(uefi, head);
    // The UEFI firmware (no iPXE ROM) was sent snponly.efi and fetched it from strata's TFTP;
    // that iPXE, and the BIOS VM's iPXE ROM, were sent the server's URL.
    const url = `http://${BRIDGE_ADDR}:8080/v1/boot/ipxe?mac=\${netX/mac}`;
    expect(bootfilesSent(server.lines, MAC.uefi)).toEqual(new Set(['snponly.efi', url]));
    expect(bootfilesSent(server.lines, MAC.bios)).toEqual(new Set([url]));
    expect(server.lines.join('\n')).toMatch(/dnsmasq-tftp: sent \S+\/snponly\.efi to 10\.77\.0\.\d+/);
    // Addresses came from the site: its lease file holds both VMs, in its range.
    const leases = net.siteLeases();
    for (const mac of [MAC.bios, MAC.uefi]) {
      const l = leases.find((x) => x.mac === mac);
      expect(l, JSON.stringify(leases)).toBeDefined();
      expect(l!.ip).toMatch(/^10\.77\.0\.(1[0-4]\d|150)$/);
    }
    expect(SITE_RANGE[0]).toBe('10.77.0.100');
    // strata's dnsmasq handed out none.
    const own = join(data, 'pxe', BRIDGE, 'dnsmasq.leases');
    expect(existsSync(own) ? readFileSync(own, 'utf8').trim() : '').toBe('');
    expect(server.lines.join('\n')).not.toMatch(/DHCPACK|DHCPOFFER/);
  }, 450_000);

  it("undionly.kpxe from strata's TFTP runs on a BIOS PXE stack, and the iPXE it starts boots through the proxy", async () => {
    // Every QEMU NIC ROM is iPXE, which strata rightly sends straight to the URL, and
    // undionly's iPXE sends byte-identical DHCP options (user class, vendor class,
    // option 175: measured), so no DHCP rule can offer undionly.kpxe to the ROM only.
    // So the ROM is told by hand, on its console, to load undionly.kpxe from strata's
    // TFTP as a PXE program, as a non-iPXE PXE ROM would after strata's offer; from
    // there on nothing is typed: undionly's iPXE drives the NIC through the ROM's
    // UNDI API, asks DHCP, gets the URL from strata's proxy and boots.
    const from = server.lines.length;
    const r = await runQemu({
      tap: { netns: net.lan, ifname: net.addTap(), mac: MAC.undionly },
      timeoutMs: 420_000,
      respond: [
        { when: /Press Ctrl-B/, send: '\x02' },
        { when: /iPXE> ?$/, send: `dhcp && chain tftp://${BRIDGE_ADDR}/undionly.kpxe\n` },
      ],
    });
    expectOverlayRoot(r, head);
    expect(r.output).toMatch(new RegExp(`net0: ${MAC.undionly} using undionly on`));
    const since = server.lines.slice(from);
    expect(since.join('\n')).toMatch(/dnsmasq-tftp: sent \S+\/undionly\.kpxe to 10\.77\.0\.\d+/);
    // The iPXE that undionly.kpxe started identified as iPXE and was sent the server's URL.
    expect(bootfilesSent(since, MAC.undionly)).toEqual(new Set([`http://${BRIDGE_ADDR}:8080/v1/boot/ipxe?mac=\${netX/mac}`]));
  }, 450_000);

  it('a second strata serve --pxe on the same interface is refused, naming the first', async () => {
    const second = strataInLan(['--data', join(dir, 'data2'), 'serve', '--http', '0.0.0.0:8081', '--ssh', '127.0.0.1:0', '--pxe', BRIDGE]);
    const code = await second.exited;
    expect(code).not.toBe(0);
    expect(second.lines.join('\n')).toMatch(/another strata serve --pxe already answers PXE clients on br0 \(pid \d+\)/);
  });

  it('stopping the server stops dnsmasq', async () => {
    const running = server.lines.filter((l) => /dnsmasq running/.test(l));
    const pid = Number(/pid (\d+)/.exec(running.at(-1) ?? '')?.[1]);
    expect(alive(pid)).toBe(true);
    await stop(server);
    await new Promise((r) => setTimeout(r, 300));
    expect(alive(pid)).toBe(false);
  });
});

describe('strata share', () => {
  let share: Proc;
  afterAll(async () => {
    await stop(share);
  });

  it('shares an ISO: a VM on the bridge boots it with nothing else configured', async () => {
    const files = new Map<string, Buffer>([
      [`live/vmlinuz-${kernel.version}`, readFileSync(kernel.path)],
      [`live/initrd.img-${kernel.version}`, readFileSync(initrd)],
      ['live/filesystem.squashfs', readFileSync(chain.layers.base)],
    ]);
    const iso = await buildIso(dir, 'shared', files);
    const data = join(dir, 'share-data');
    share = strataInLan([
      '--data',
      data,
      'share',
      iso,
      '--interface',
      BRIDGE,
      '--http',
      '0.0.0.0:8082',
      '--ssh',
      '127.0.0.1:0',
      '--cmdline',
      CMDLINE,
      // The test's ISO root (the busybox demo tree) has no kernel modules to build an initrd from.
      '--initrd',
      initrd,
    ]);
    await share.waitFor(/PXE: proxyDHCP on br0/, 120_000);
    for (let i = 0; i < 50 && !share.stdout.includes('To stop sharing'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(share.stdout).toMatch(/sharing .*shared\.iso as profile "share-[0-9a-f]{12}" at commit/);
    expect(share.stdout).toMatch(/network boot \(PXE\)/);
    expect(share.stdout).toMatch(/To stop sharing: press Ctrl-C/);
    const head = /at commit ([0-9a-f]{64})/.exec(share.stdout)![1]!;
    const r = await bootVm(MAC.share, 'bios');
    expectOverlayRoot(r, head);
  }, 300_000);

  it('sharing the same ISO again uses what is there (same content), without a second import', async () => {
    const data = join(dir, 'share-data');
    const first = /profile "([^"]+)" at commit ([0-9a-f]{64})/.exec(share.stdout)!;
    await stop(share);
    share = strataInLan([
      '--data',
      data,
      'share',
      join(dir, 'shared.iso'),
      '--interface',
      BRIDGE,
      '--http',
      '0.0.0.0:8082',
      '--ssh',
      '127.0.0.1:0',
    ]);
    await share.waitFor(/PXE: proxyDHCP on br0/, 120_000);
    for (let i = 0; i < 50 && !share.stdout.includes('To stop sharing'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(share.stdout).toContain(`as profile "${first[1]}" at commit ${first[2]} (already imported: same content)`);
  }, 180_000);
});
