/**
 * A test network nothing outside can see: two network namespaces created
 * for the run and deleted after it.
 *
 *   NS "lan":  bridge br0 (10.77.0.1/24, where strata serves), the VMs' tap devices
 *   NS "site": veth 10.77.0.2/24 on br0, the site DHCP server: a dnsmasq that
 *              hands out 10.77.0.100-150 and no boot options at all
 *
 * Each role has its own namespace because two DHCP servers cannot both bind
 * port 67 in one. No address outside these namespaces is ever used.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BRIDGE = 'br0';
export const BRIDGE_ADDR = '10.77.0.1';
export const SITE_ADDR = '10.77.0.2';
export const SITE_RANGE = ['10.77.0.100', '10.77.0.150'] as const;

export interface TestNet {
  /** The namespace holding br0, the taps, strata serve and QEMU. */
  lan: string;
  site: string;
  dir: string;
  /** The site DHCP's lease file: "EXPIRY MAC IP HOST CLIENTID" lines. */
  siteLeaseFile: string;
  siteLog: string[];
  /** Creates a tap device on br0 for a VM; returns its name. */
  addTap(): string;
  /** argv prefix that runs a command inside the lan namespace. */
  inLan(cmd: string[]): string[];
  siteLeases(): { mac: string; ip: string }[];
  close(): Promise<void>;
}

const sh = (args: string[]) => execFileSync(args[0]!, args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

export function ovmfArgs(dir: string): string[] {
  const vars = join(dir, `OVMF_VARS_4M.${Math.random().toString(36).slice(2)}.fd`);
  copyFileSync('/usr/share/OVMF/OVMF_VARS_4M.fd', vars);
  return [
    '-drive',
    'if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd',
    '-drive',
    `if=pflash,format=raw,unit=1,file=${vars}`,
  ];
}

export function haveTestNetTools(): string | null {
  if (!existsSync('/dev/net/tun')) return 'no /dev/net/tun';
  if (!existsSync('/usr/sbin/dnsmasq')) return 'dnsmasq missing (scripts/setup.sh installs it)';
  if (!existsSync('/usr/share/OVMF/OVMF_CODE_4M.fd')) return 'ovmf missing (scripts/setup.sh installs it)';
  return null;
}

/** siteArgs: extra dnsmasq arguments for the site DHCP server (e.g. a next-server for some MACs). */
export async function createTestNet(opts: { siteArgs?: string[] } = {}): Promise<TestNet> {
  const tag = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const lan = `strata-lan-${tag}`;
  const site = `strata-site-${tag}`;
  const dir = mkdtempSync(join(tmpdir(), 'strata-testnet-'));
  const siteLeaseFile = join(dir, 'site.leases');
  const siteLog: string[] = [];
  let siteDhcp: ChildProcess | null = null;
  let taps = 0;

  const close = async () => {
    if (siteDhcp && siteDhcp.exitCode === null) {
      const exited = new Promise((r) => siteDhcp!.once('exit', r));
      siteDhcp.kill('SIGTERM');
      await exited;
    }
    // Deleting a namespace deletes the bridge, veths and taps in it.
    for (const ns of [lan, site]) {
      try {
        sh(['ip', 'netns', 'del', ns]);
      } catch {}
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    sh(['ip', 'netns', 'add', lan]);
    sh(['ip', 'netns', 'add', site]);
    const L = ['ip', 'netns', 'exec', lan];
    sh([...L, 'ip', 'link', 'set', 'lo', 'up']);
    sh([...L, 'ip', 'link', 'add', BRIDGE, 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0']);
    sh([...L, 'ip', 'addr', 'add', `${BRIDGE_ADDR}/24`, 'dev', BRIDGE]);
    sh([...L, 'ip', 'link', 'set', BRIDGE, 'up']);
    // The veth is created in lan and one end moved into site.
    sh([...L, 'ip', 'link', 'add', 'to-site', 'type', 'veth', 'peer', 'name', 'site0']);
    sh([...L, 'ip', 'link', 'set', 'site0', 'netns', site]);
    sh([...L, 'ip', 'link', 'set', 'to-site', 'master', BRIDGE, 'up']);
    const S = ['ip', 'netns', 'exec', site];
    sh([...S, 'ip', 'link', 'set', 'lo', 'up']);
    sh([...S, 'ip', 'addr', 'add', `${SITE_ADDR}/24`, 'dev', 'site0']);
    sh([...S, 'ip', 'link', 'set', 'site0', 'up']);

    siteDhcp = spawn(
      'ip',
      [
        ...S.slice(1),
        '/usr/sbin/dnsmasq',
        '--keep-in-foreground',
        '--conf-file=/dev/null',
        '--log-facility=-',
        '--pid-file=',
        '--port=0',
        '--no-resolv',
        '--no-hosts',
        '--user=root',
        '--interface=site0',
        '--bind-interfaces',
        `--dhcp-range=${SITE_RANGE[0]},${SITE_RANGE[1]},1h`,
        `--dhcp-leasefile=${siteLeaseFile}`,
        '--log-dhcp',
        ...(opts.siteArgs ?? []),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    await new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer) => {
        for (const l of d.toString().split('\n')) if (l.trim()) siteLog.push(l);
        if (siteLog.some((l) => /started, version/.test(l))) resolve();
      };
      siteDhcp!.stdout!.on('data', onData);
      siteDhcp!.stderr!.on('data', onData);
      siteDhcp!.once('exit', (c) => reject(new Error(`site dnsmasq exited ${c}: ${siteLog.join('\n')}`)));
    });
  } catch (e) {
    await close();
    throw e;
  }

  return {
    lan,
    site,
    dir,
    siteLeaseFile,
    siteLog,
    addTap() {
      const name = `tap${taps++}`;
      sh(['ip', 'netns', 'exec', lan, 'ip', 'tuntap', 'add', name, 'mode', 'tap']);
      sh(['ip', 'netns', 'exec', lan, 'ip', 'link', 'set', name, 'master', BRIDGE, 'up']);
      return name;
    },
    inLan: (cmd) => ['ip', 'netns', 'exec', lan, ...cmd],
    siteLeases() {
      if (!existsSync(siteLeaseFile)) return [];
      return readFileSync(siteLeaseFile, 'utf8')
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => {
          const f = l.split(' ');
          return { mac: f[1]!, ip: f[2]! };
        });
    },
    close,
  };
}
