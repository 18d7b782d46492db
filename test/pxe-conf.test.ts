/**
 * The PXE config strata generates (server/pxe/conf.ts) and `strata pxe-conf`:
 * what each kind of client is sent, proxy vs full DHCP, bad input refused
 * with a sentence, and dnsmasq itself accepting the generated file.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { networkAddress, parseDhcpRange, renderDnsmasqConf, renderIscDhcpd, renderKea, type PxeConfInput } from '../server/pxe/conf.ts';
import { cidrRegexp } from '../server/pxe/secure-boot-tftp.ts';
import { runStrata } from './helpers/cli.ts';

const base: PxeConfInput = {
  serverUrl: 'http://10.77.0.1:8080',
  iface: 'br0',
  subnet: '10.77.0.0',
  mode: { kind: 'proxy' },
  tftpRoot: '/srv/strata/pxe/br0/tftp',
  leaseFile: '/srv/strata/pxe/br0/dnsmasq.leases',
};
const URL_LINE = 'http://10.77.0.1:8080/v1/boot/ipxe?mac=${netX/mac}';

/** dnsmasq's own syntax check of a config. */
function dnsmasqAccepts(conf: string): string {
  const d = mkdtempSync(join(tmpdir(), 'strata-pxeconf-'));
  try {
    writeFileSync(join(d, 'c.conf'), conf);
    const r = spawnSync('/usr/sbin/dnsmasq', ['--test', `--conf-file=${join(d, 'c.conf')}`], { encoding: 'utf8' });
    // It says "syntax check OK" on stderr, or names the bad line and exits non-zero.
    return `${r.stdout}${r.stderr}exit ${r.status}`;
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
}

describe('dnsmasq config for strata serve --pxe', () => {
  it('proxyDHCP: no address range, boot file by client type, iPXE clients straight to the server', () => {
    const c = renderDnsmasqConf(base);
    const lines = c.split('\n');
    expect(lines).toContain('dhcp-range=10.77.0.0,proxy');
    expect(lines.filter((l) => l.startsWith('dhcp-range='))).toHaveLength(1);
    expect(lines).toContain('port=0');
    expect(lines).toContain('interface=br0');
    expect(lines).toContain('tftp-root=/srv/strata/pxe/br0/tftp');
    expect(lines).toContain(`pxe-service=tag:ipxe,x86PC,"strata",${URL_LINE}`);
    expect(lines).toContain(`pxe-service=tag:ipxe,x86-64_EFI,"strata",${URL_LINE}`);
    expect(lines).toContain('pxe-service=tag:!ipxe,x86PC,"strata (BIOS)",undionly.kpxe');
    expect(lines).toContain('pxe-service=tag:!ipxe,BC_EFI,"strata (UEFI)",snponly.efi');
    expect(lines).toContain('pxe-service=tag:!ipxe,x86-64_EFI,"strata (UEFI)",snponly.efi');
    expect(c).toMatch(/do not edit/);
    expect(dnsmasqAccepts(c)).toMatch(/syntax check OK.*\s*exit 0$/s);
  });

  it('--pxe-dhcp-range: a full DHCP server for exactly that range', () => {
    const c = renderDnsmasqConf({ ...base, mode: { kind: 'dhcp', start: '10.77.0.50', end: '10.77.0.60' } });
    expect(c.split('\n').filter((l) => l.startsWith('dhcp-range='))).toEqual(['dhcp-range=10.77.0.50,10.77.0.60,1h']);
    expect(c).not.toMatch(/proxy$/m);
    expect(dnsmasqAccepts(c)).toMatch(/syntax check OK.*\s*exit 0$/s);
  });

  it('is a pure function of its input', () => {
    expect(renderDnsmasqConf(base)).toBe(renderDnsmasqConf({ ...base }));
  });

  it('refuses what would break the file or the clients, with a sentence', () => {
    expect(() => renderDnsmasqConf({ ...base, serverUrl: 'https://10.77.0.1' })).toThrow(/plain http:\/\/.*no HTTPS/);
    expect(() => renderDnsmasqConf({ ...base, serverUrl: 'http://a,b:80' })).toThrow(/plain http/);
    expect(() => renderDnsmasqConf({ ...base, iface: 'br0\nport=53' })).toThrow(/not a network interface name/);
    expect(() => renderDnsmasqConf({ ...base, subnet: '10.77.0' })).toThrow(/IPv4 address/);
    expect(() => parseDhcpRange('10.0.0.9,10.0.0.1')).toThrow(/comes after/);
    expect(() => parseDhcpRange('10.0.0.1')).toThrow(/FIRST,LAST/);
    expect(() => parseDhcpRange('10.0.0.1,10.0.0.300')).toThrow(/IPv4/);
    expect(parseDhcpRange(' 10.0.0.1 , 10.0.0.9 ')).toEqual({ start: '10.0.0.1', end: '10.0.0.9' });
  });

  it('network address of an interface address', () => {
    expect(networkAddress('10.77.0.1/24')).toBe('10.77.0.0');
    expect(networkAddress('192.168.13.200/20')).toBe('192.168.0.0');
    expect(networkAddress('10.1.2.3/32')).toBe('10.1.2.3');
    expect(networkAddress('10.1.2.3/0')).toBe('0.0.0.0');
    expect(() => networkAddress('10.1.2.3/33')).toThrow(/ADDRESS\/PREFIX/);
  });
});

describe("snippets for a site's own DHCP server", () => {
  const site = { serverUrl: 'http://10.77.0.1:8080', tftpServer: '10.77.0.1' };

  it('ISC dhcpd: iPXE gets the URL, UEFI snponly.efi, BIOS undionly.kpxe, from the TFTP server', () => {
    const c = renderIscDhcpd(site);
    expect(c).toContain('option strata-arch code 93 = unsigned integer 16;');
    expect(c).toContain('next-server 10.77.0.1;');
    expect(c).toMatch(
      /if exists user-class and option user-class = "iPXE" \{\n {2}filename "http:\/\/10\.77\.0\.1:8080\/v1\/boot\/ipxe\?mac=\$\{netX\/mac\}";/,
    );
    expect(c).toMatch(/elsif option strata-arch = 00:07 or option strata-arch = 00:09 \{\n {2}filename "snponly\.efi";/);
    expect(c).toMatch(/else \{\n {2}filename "undionly\.kpxe";/);
  });

  it('Kea: client classes in that order, valid JSON', () => {
    const k = JSON.parse(renderKea(site)) as { 'client-classes': Record<string, string>[] };
    const cls = k['client-classes'];
    expect(cls.map((c) => c.name)).toEqual(['strata-ipxe', 'strata-uefi', 'strata-bios']);
    expect(cls[0]!['boot-file-name']).toBe(URL_LINE);
    expect(cls[1]!['boot-file-name']).toBe('snponly.efi');
    expect(cls[1]!.test).toContain('0x0007');
    expect(cls[2]!['boot-file-name']).toBe('undionly.kpxe');
    expect(cls[2]!['next-server']).toBe('10.77.0.1');
  });
});

describe('Secure Boot: CIDR rules as GRUB regular expressions', () => {
  const matches = (cidr: string, ip: string) => new RegExp(cidrRegexp(cidr)).test(ip);
  it('matches exactly the addresses inside the prefix, at any prefix length', () => {
    expect(cidrRegexp('10.77.0.0/24')).toBe('^10\\.77\\.0\\.[0-9]+$');
    expect(cidrRegexp('10.77.4.0/22')).toBe('^10\\.77\\.(4|5|6|7)\\.[0-9]+$');
    expect(cidrRegexp('10.77.0.9/32')).toBe('^10\\.77\\.0\\.9$');
    expect(cidrRegexp('0.0.0.0/0')).toBe('^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$');
    for (const [cidr, inside, outside] of [
      ['10.77.4.0/22', '10.77.7.200', '10.77.8.1'],
      ['10.77.0.128/25', '10.77.0.128', '10.77.0.127'],
      ['10.77.0.9/32', '10.77.0.9', '10.77.0.90'],
      ['172.16.0.0/12', '172.31.255.1', '172.32.0.1'],
    ] as const) {
      expect(matches(cidr, inside), `${inside} in ${cidr}`).toBe(true);
      expect(matches(cidr, outside), `${outside} in ${cidr}`).toBe(false);
    }
  });
});

describe('strata pxe-conf', () => {
  const data = join(tmpdir(), 'strata-pxeconf-unused');

  it('prints dnsmasq, ISC and Kea config for the server', async () => {
    const r = await runStrata(['pxe-conf', '--server', 'http://10.77.0.1:8080'], { data });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/==== dnsmasq/);
    expect(r.stdout).toMatch(/==== ISC dhcpd/);
    expect(r.stdout).toMatch(/==== Kea/);
    expect(r.stdout).toContain('dhcp-range=10.77.0.1,proxy');
    expect(r.stdout).toContain('tftp-root=/usr/lib/ipxe');
  });

  it('--format dnsmasq prints a file dnsmasq accepts', async () => {
    const r = await runStrata(['pxe-conf', '--server', 'http://10.77.0.1:8080', '--format', 'dnsmasq'], { data });
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/====/);
    expect(dnsmasqAccepts(r.stdout)).toMatch(/syntax check OK.*\s*exit 0$/s);
  });

  it('--secure-boot: UEFI machines get shim in all three, BIOS and iPXE clients keep iPXE, and the proxy note names next-server', async () => {
    const r = await runStrata(['pxe-conf', '--server', 'http://10.77.0.1:8080', '--secure-boot'], { data });
    expect(r.code, r.stderr).toBe(0);
    const [dnsmasq, isc, kea] = r.stdout.split(/^# ==== .*$/m).slice(1);
    expect(dnsmasq).toContain('pxe-service=tag:!ipxe,x86-64_EFI,"strata (UEFI, Secure Boot)",shimx64.efi');
    expect(dnsmasq).toContain('pxe-service=tag:!ipxe,x86PC,"strata (BIOS)",undionly.kpxe');
    expect(dnsmasq).toContain(`pxe-service=tag:ipxe,x86-64_EFI,"strata",${URL_LINE}`);
    expect(dnsmasq).not.toContain('snponly.efi');
    expect(dnsmasq).toMatch(/^# beside a site DHCP server, Debian 12's signed GRUB reads grub\.cfg from the site DHCP's next-server/m);
    expect(dnsmasqAccepts(dnsmasq!)).toMatch(/syntax check OK.*\s*exit 0$/s);
    expect(isc).toContain('  filename "shimx64.efi";');
    expect(isc).toContain('  filename "undionly.kpxe";');
    expect(kea).toContain('"boot-file-name": "shimx64.efi"');
    const plain = await runStrata(['pxe-conf', '--server', 'http://10.77.0.1:8080', '--format', 'dnsmasq'], { data });
    expect(plain.stdout).not.toContain('shimx64.efi');
  });

  it('bad input: a sentence and a non-zero exit', async () => {
    const r = await runStrata(['pxe-conf', '--server', 'http://10.77.0.1:8080', '--format', 'yaml'], { data });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--format must be one of dnsmasq, isc, kea/);
    const r2 = await runStrata(['pxe-conf', '--server', 'http://10.77.0.1:8080', '--interface', 'no-such-if0'], { data });
    expect(r2.code).not.toBe(0);
    expect(r2.stderr).toMatch(/there is no network interface "no-such-if0"/);
  });

  it('strata serve --pxe refuses an unknown interface or a range without --pxe before opening any port', async () => {
    const r = await runStrata(['serve', '--http', '127.0.0.1:0', '--ssh', '127.0.0.1:0', '--pxe', 'no-such-if0'], { data });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--pxe: there is no network interface "no-such-if0"/);
    const r2 = await runStrata(['serve', '--http', '127.0.0.1:0', '--ssh', '127.0.0.1:0', '--pxe-dhcp-range', '10.0.0.1,10.0.0.9'], {
      data,
    });
    expect(r2.code).not.toBe(0);
    expect(r2.stderr).toMatch(/--pxe-dhcp-range needs --pxe IFACE/);
    const r3 = await runStrata(['serve', '--http', '127.0.0.1:0', '--ssh', '127.0.0.1:0', '--pxe', 'lo', '--pxe-dhcp-range', '10.0.0.9'], {
      data,
    });
    expect(r3.code).not.toBe(0);
    expect(r3.stderr).toMatch(/--pxe-dhcp-range must be FIRST,LAST/);
  });
});
