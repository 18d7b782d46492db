/**
 * CLI glue for the network boot commands: `strata pxe-conf` (the config a
 * site's own DHCP needs) and `strata share`. The logic lives in server/pxe/
 * and cli/share.ts; this file only reads options.
 */
import type { Command } from 'commander';
import { StrataError } from '../store/errors.ts';

const FORMATS = ['dnsmasq', 'isc', 'kea'] as const;
type Format = (typeof FORMATS)[number];

interface PxeConfOpts {
  server: string;
  interface?: string;
  tftpServer?: string;
  tftpRoot: string;
  pxeDhcpRange?: string;
  format?: string;
  secureBoot?: boolean;
}

export function registerPxeCommands(program: Command): void {
  program
    .command('pxe-conf')
    .description("print PXE boot config for a site's own dnsmasq, ISC dhcpd or Kea (what serve --pxe runs itself; docs/pxe.md)")
    .requiredOption('--server <url>', 'http://HOST:PORT of strata serve as the clients reach it')
    .option('--interface <iface>', 'dnsmasq: the interface to answer on (its subnet is served)')
    .option('--tftp-server <addr>', 'ISC/Kea: the TFTP server holding undionly.kpxe and snponly.efi (default: the --server host)')
    .option('--tftp-root <dir>', "dnsmasq: the TFTP root (default: Debian's ipxe package files)", '/usr/lib/ipxe')
    .option('--pxe-dhcp-range <first,last>', 'dnsmasq: be the DHCP server for these addresses instead of proxyDHCP')
    .option('--format <f>', `only one of: ${FORMATS.join(', ')} (default: all three)`)
    .option('--secure-boot', 'UEFI machines get shimx64.efi (shim -> Debian-signed GRUB) instead of snponly.efi (docs/pxe.md)')
    .action(async (o: PxeConfOpts) => {
      const conf = await import('../server/pxe/conf.ts');
      if (o.format !== undefined && !FORMATS.includes(o.format as Format)) {
        throw new StrataError('E_BAD_ARGUMENT', `--format must be one of ${FORMATS.join(', ')}, not "${o.format}"`);
      }
      let host: string;
      try {
        host = new URL(o.server).hostname;
      } catch {
        throw new StrataError('E_BAD_ARGUMENT', `--server must be http://HOST:PORT, not "${o.server}"`);
      }
      const tftpServer = o.tftpServer ?? host;
      let subnet = host;
      if (o.interface) {
        const { interfaceCidr } = await import('../server/pxe/pxe-service.ts');
        subnet = conf.networkAddress(interfaceCidr(o.interface));
      }
      const mode = o.pxeDhcpRange ? { kind: 'dhcp' as const, ...conf.parseDhcpRange(o.pxeDhcpRange) } : { kind: 'proxy' as const };
      const render: Record<Format, () => string> = {
        dnsmasq: () =>
          conf.renderDnsmasqConf({ serverUrl: o.server, iface: o.interface, subnet, mode, tftpRoot: o.tftpRoot, secureBoot: o.secureBoot }),
        isc: () => conf.renderIscDhcpd({ serverUrl: o.server, tftpServer, secureBoot: o.secureBoot }),
        kea: () => conf.renderKea({ serverUrl: o.server, tftpServer, secureBoot: o.secureBoot }),
      };
      if (o.format) {
        process.stdout.write(render[o.format as Format]());
        return;
      }
      const titles: Record<Format, string> = {
        dnsmasq: '# ==== dnsmasq (a file in /etc/dnsmasq.d/) ====',
        isc: '# ==== ISC dhcpd (dhcpd.conf) ====',
        kea: '# ==== Kea DHCPv4 ("client-classes" in the Dhcp4 object; Kea accepts # comments) ====',
      };
      process.stdout.write(FORMATS.map((f) => `${titles[f]}\n${render[f]()}`).join('\n'));
    });

  program
    .command('share')
    .description('share an ISO, CD/USB device or this live system with the network: import, make default, serve with PXE')
    .argument('[source]', 'ISO file or block device (default: the medium this live system booted from)')
    .requiredOption('--interface <iface>', 'the network interface machines boot on')
    .option('--http <host:port>', 'HTTP listen address', '0.0.0.0:8080')
    .option('--ssh <host:port>', 'SSH (pushes) listen address', '127.0.0.1:2222')
    .option('--name <profile>', 'profile name on first import (default: share-<content hash>)')
    .option('--cmdline <words>', 'kernel command line for the shared system (e.g. "console=ttyS0")')
    .option('--initrd <file>', "an initramfs to boot instead of one built from the medium's own kernel modules")
    .action(
      async (
        source: string | undefined,
        o: { interface: string; http: string; ssh: string; name?: string; cmdline?: string; initrd?: string },
        cmd: Command,
      ) => {
        const { resolveDataDir } = await import('./service-commands.ts');
        const dataDir = await resolveDataDir(cmd.optsWithGlobals() as { data?: string; config?: string });
        const { share } = await import('./share.ts');
        await share({
          dataDir,
          source,
          iface: o.interface,
          http: o.http,
          ssh: o.ssh,
          name: o.name,
          cmdline: o.cmdline,
          initrd: o.initrd,
          print: (t) => process.stdout.write(t),
        });
      },
    );
}
