/**
 * The PXE answers strata gives, as pure text: dnsmasq's config for
 * `strata serve --pxe`, and the equivalent snippets for sites that run their
 * own dnsmasq, ISC dhcpd or Kea (`strata pxe-conf`). Nothing here does I/O:
 * the config is a function of strata's state, so it is never edited by hand.
 *
 * What a client gets, by what it says in its DHCP request:
 *   already iPXE (user class "iPXE" or option 175) -> the server's /v1/boot/ipxe URL
 *   UEFI x86-64 (client arch 7 or 9)              -> snponly.efi over TFTP (iPXE on the firmware's own NIC driver)
 *   BIOS (client arch 0)                          -> undionly.kpxe over TFTP (iPXE on the PXE ROM's UNDI driver)
 * iPXE then asks DHCP again, now with user class iPXE, and gets the URL.
 *
 * With Secure Boot (`--pxe-secure-boot`), UEFI x86-64 clients get shim
 * instead (shimx64.efi -> Debian-signed GRUB -> Debian-signed kernel): a PXE
 * client does not say in DHCP whether Secure Boot is on, so it is a choice
 * per network, and shim's chain boots with Secure Boot off too.
 */
import { StrataError } from '../../store/errors.ts';

/** The files the TFTP root holds, all from Debian's `ipxe` package. */
export const BOOT_FILES = {
  bios: 'undionly.kpxe',
  uefi: 'snponly.efi',
  /** iPXE with its own NIC drivers, for UEFI firmware whose SNP driver iPXE cannot use. */
  uefiFull: 'ipxe.efi',
} as const;

/** DHCP option 93 (client system architecture, RFC 4578) values for x86-64 UEFI. */
export const UEFI_X86_64_ARCHES = [7, 9] as const;

export type PxeMode = { kind: 'proxy' } | { kind: 'dhcp'; start: string; end: string };

export interface PxeConfInput {
  /** Base URL clients reach strata serve at (http://ADDR:PORT). */
  serverUrl: string;
  /** Interface dnsmasq answers on; omitted for a site's own dnsmasq that already picks one. */
  iface?: string;
  /** An IPv4 address on the subnet served (proxy mode answers on the subnet of this address). */
  subnet: string;
  mode: PxeMode;
  tftpRoot: string;
  leaseFile?: string;
  /** '' turns dnsmasq's pid file off (strata supervises it by its child pid). */
  pidFile?: string;
  /** User dnsmasq drops to after binding its ports. */
  user?: string;
  /** UEFI x86-64 clients get shim -> signed GRUB instead of iPXE (SECURE_BOOT_FILE). */
  secureBoot?: boolean;
}

/**
 * Measured with Debian 12's grubnetx64.efi.signed (2.06) behind a proxy: GRUB
 * takes its TFTP server from the site DHCP's answer (its siaddr), not from
 * the proxy's, so it looks for grub.cfg on the wrong server unless the site
 * DHCP names strata as next-server (test/pxe-secure-boot.test.ts).
 */
export const PROXY_NEXT_SERVER_NOTE =
  "beside a site DHCP server, Debian 12's signed GRUB reads grub.cfg from the site DHCP's next-server (siaddr), not from this proxy: set the site DHCP's next-server to this server (ISC: next-server; Kea: next-server; dnsmasq: dhcp-boot=,,ADDR)";

/** The boot file UEFI x86-64 clients get with Secure Boot on: Microsoft-signed shim (server/pxe/secure-boot-tftp.ts). */
export const SECURE_BOOT_FILE = 'shimx64.efi';

/** iPXE expands ${netX/mac} in a DHCP boot file name: the MAC of the NIC it booted from. */
export function ipxeBootUrl(serverUrl: string): string {
  return `${serverUrl.replace(/\/+$/, '')}/v1/boot/ipxe?mac=\${netX/mac}`;
}

export function parseIpv4(s: string, what: string): number[] {
  const parts = s.trim().split('.');
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) {
    throw new StrataError('E_BAD_ARGUMENT', `${what} must be an IPv4 address like 192.168.10.50, not "${s}"`);
  }
  return parts.map(Number);
}

const ipNumber = (o: number[]) => ((o[0]! << 24) | (o[1]! << 16) | (o[2]! << 8) | o[3]!) >>> 0;

/** "A,B" from --pxe-dhcp-range: two IPv4 addresses, A <= B. */
export function parseDhcpRange(s: string): { start: string; end: string } {
  const parts = s.split(',').map((p) => p.trim());
  if (parts.length !== 2) throw new StrataError('E_BAD_ARGUMENT', `--pxe-dhcp-range must be FIRST,LAST (two IPv4 addresses), not "${s}"`);
  const [a, b] = [parseIpv4(parts[0]!, '--pxe-dhcp-range'), parseIpv4(parts[1]!, '--pxe-dhcp-range')];
  if (ipNumber(a) > ipNumber(b)) throw new StrataError('E_BAD_ARGUMENT', `--pxe-dhcp-range: ${parts[0]} comes after ${parts[1]}`);
  return { start: parts[0]!, end: parts[1]! };
}

/** The network address of ADDR/PREFIX (10.99.0.1/24 -> 10.99.0.0). */
export function networkAddress(cidr: string): string {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(cidr.trim());
  if (!m || Number(m[2]) > 32) throw new StrataError('E_BAD_ARGUMENT', `not an IPv4 ADDRESS/PREFIX: "${cidr}"`);
  const prefix = Number(m[2]);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const n = (ipNumber(parseIpv4(m[1]!, 'address')) & mask) >>> 0;
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function checkServerUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new StrataError('E_BAD_ARGUMENT', `the server URL must be http://HOST[:PORT], not "${url}"`);
  }
  if (u.protocol !== 'http:' || /[\s,"]/.test(url)) {
    // Debian's iPXE build has no HTTPS; a comma would split dnsmasq's option.
    throw new StrataError('E_BAD_ARGUMENT', `the server URL must be plain http://HOST[:PORT] (iPXE here has no HTTPS), not "${url}"`);
  }
  return url.replace(/\/+$/, '');
}

export function renderDnsmasqConf(c: PxeConfInput): string {
  const url = ipxeBootUrl(checkServerUrl(c.serverUrl));
  parseIpv4(c.subnet, 'the subnet address');
  if (c.iface !== undefined && !/^[A-Za-z0-9_.:@-]{1,15}$/.test(c.iface)) {
    throw new StrataError('E_BAD_ARGUMENT', `"${c.iface}" is not a network interface name`);
  }
  const lines = [
    '# Generated by strata (strata pxe-conf / strata serve --pxe); regenerate it, do not edit it.',
    '# No DNS: this dnsmasq only answers PXE clients and serves the iPXE files over TFTP.',
    'port=0',
    'no-resolv',
    'no-hosts',
    'log-dhcp',
  ];
  if (c.iface !== undefined) lines.push(`interface=${c.iface}`, 'bind-interfaces');
  if (c.user) lines.push(`user=${c.user}`);
  if (c.leaseFile) lines.push(`dhcp-leasefile=${c.leaseFile}`);
  if (c.pidFile !== undefined) lines.push(`pid-file=${c.pidFile}`);
  if (c.mode.kind === 'proxy') {
    lines.push('# proxyDHCP: the site DHCP server hands out addresses; this one only adds the boot options.');
    lines.push(`dhcp-range=${c.subnet},proxy`);
  } else {
    const { start, end } = parseDhcpRange(`${c.mode.start},${c.mode.end}`);
    lines.push('# Full DHCP server (--pxe-dhcp-range): only for a network with no other DHCP server.');
    lines.push(`dhcp-range=${start},${end},1h`);
  }
  lines.push(
    '# Clients that already run iPXE say so in their user class (or send option 175).',
    'dhcp-userclass=set:ipxe,iPXE',
    'dhcp-match=set:ipxe,175',
    'enable-tftp',
    `tftp-root=${c.tftpRoot}`,
    // One entry per client type: the firmware boots it without a menu.
    `pxe-service=tag:ipxe,x86PC,"strata",${url}`,
    `pxe-service=tag:ipxe,BC_EFI,"strata",${url}`,
    `pxe-service=tag:ipxe,x86-64_EFI,"strata",${url}`,
    `pxe-service=tag:!ipxe,x86PC,"strata (BIOS)",${BOOT_FILES.bios}`,
    ...(c.secureBoot
      ? [
          '# Secure Boot: shim (Microsoft-signed) -> grubx64.efi (Debian-signed) -> grub/grub.cfg, kernel and initrd over TFTP.',
          '# The TFTP root must hold the files `strata serve --pxe IFACE --pxe-secure-boot` keeps current in DATA/pxe/IFACE/tftp.',
          ...(c.mode.kind === 'proxy' ? [`# ${PROXY_NEXT_SERVER_NOTE}`] : []),
          `pxe-service=tag:!ipxe,BC_EFI,"strata (UEFI, Secure Boot)",${SECURE_BOOT_FILE}`,
          `pxe-service=tag:!ipxe,x86-64_EFI,"strata (UEFI, Secure Boot)",${SECURE_BOOT_FILE}`,
        ]
      : [
          `pxe-service=tag:!ipxe,BC_EFI,"strata (UEFI)",${BOOT_FILES.uefi}`,
          `pxe-service=tag:!ipxe,x86-64_EFI,"strata (UEFI)",${BOOT_FILES.uefi}`,
        ]),
    '',
  );
  return lines.join('\n');
}

export interface SiteDhcpInput {
  serverUrl: string;
  /** The TFTP server holding undionly.kpxe and snponly.efi (next-server). */
  tftpServer: string;
  /** UEFI x86-64 clients get shim (the TFTP server must hold strata's Secure Boot files). */
  secureBoot?: boolean;
}

const SITE_SECURE_BOOT_NOTE =
  '# Secure Boot: UEFI machines get shimx64.efi; the TFTP server must hold the files `strata serve --pxe IFACE --pxe-secure-boot` keeps current in DATA/pxe/IFACE/tftp.';

/** For a site's ISC dhcpd: goes inside its subnet (or global) scope. */
export function renderIscDhcpd(c: SiteDhcpInput): string {
  const url = ipxeBootUrl(checkServerUrl(c.serverUrl));
  parseIpv4(c.tftpServer, 'the TFTP server address');
  return [
    '# strata: PXE boot options for ISC dhcpd (generated by strata pxe-conf).',
    '# Put the option line at the top level, the rest in the subnet that PXE clients are on.',
    'option strata-arch code 93 = unsigned integer 16;',
    ...(c.secureBoot ? [SITE_SECURE_BOOT_NOTE] : []),
    '',
    `next-server ${c.tftpServer};`,
    'if exists user-class and option user-class = "iPXE" {',
    `  filename "${url}";`,
    `} elsif ${UEFI_X86_64_ARCHES.map((a) => `option strata-arch = 00:${a.toString(16).padStart(2, '0')}`).join(' or ')} {`,
    `  filename "${c.secureBoot ? SECURE_BOOT_FILE : BOOT_FILES.uefi}";`,
    '} else {',
    `  filename "${BOOT_FILES.bios}";`,
    '}',
    '',
  ].join('\n');
}

/** For a site's Kea DHCPv4: the "client-classes" list of its Dhcp4 object. */
export function renderKea(c: SiteDhcpInput): string {
  const url = ipxeBootUrl(checkServerUrl(c.serverUrl));
  parseIpv4(c.tftpServer, 'the TFTP server address');
  const efi = UEFI_X86_64_ARCHES.map((a) => `option[93].hex == 0x${a.toString(16).padStart(4, '0')}`).join(' or ');
  const classes = [
    { name: 'strata-ipxe', test: "substring(option[77].hex,0,4) == 'iPXE'", 'boot-file-name': url },
    {
      name: 'strata-uefi',
      test: `not member('strata-ipxe') and (${efi})`,
      'next-server': c.tftpServer,
      'boot-file-name': c.secureBoot ? SECURE_BOOT_FILE : BOOT_FILES.uefi,
    },
    {
      name: 'strata-bios',
      test: "not member('strata-ipxe') and option[93].hex == 0x0000",
      'next-server': c.tftpServer,
      'boot-file-name': BOOT_FILES.bios,
    },
  ];
  return `${c.secureBoot ? `${SITE_SECURE_BOOT_NOTE}\n` : ''}${JSON.stringify({ 'client-classes': classes }, null, 2)}\n`;
}
