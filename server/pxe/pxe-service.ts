/**
 * `strata serve --pxe IFACE`: claims the interface, writes dnsmasq's config
 * from strata's state (interface address, HTTP port, mode) and supervises
 * dnsmasq. The config and TFTP root live in DATA/pxe/IFACE/ and are
 * rewritten on every start: they are outputs, never inputs.
 */
import { writeFileSync, renameSync, mkdirSync, rmSync } from 'node:fs';
import { networkInterfaces, userInfo } from 'node:os';
import { join } from 'node:path';
import { StrataError } from '../../store/errors.ts';
import { networkAddress, parseDhcpRange, renderDnsmasqConf, type PxeMode } from './conf.ts';
import { lockInterface, type IfaceLock } from './iface-lock.ts';
import { DnsmasqSupervisor, findDnsmasq } from './supervisor.ts';
import { prepareTftpRoot } from './tftp-root.ts';

export interface PxeOptions {
  iface: string;
  /** "FIRST,LAST": a full DHCP server handing out these addresses instead of proxyDHCP. */
  dhcpRange?: string;
}

/** The interface's first IPv4 address as ADDR/PREFIX (PXE here is IPv4 only). */
export function interfaceCidr(iface: string): string {
  const all = networkInterfaces();
  const addrs = all[iface];
  if (!addrs) {
    const names = Object.keys(all).join(', ');
    throw new StrataError('E_BAD_ARGUMENT', `--pxe: there is no network interface "${iface}" here (interfaces: ${names || 'none'})`);
  }
  const v4 = addrs.find((a) => a.family === 'IPv4');
  if (!v4?.cidr) throw new StrataError('E_BAD_ARGUMENT', `--pxe: ${iface} has no IPv4 address; PXE is served over IPv4 only (docs/pxe.md)`);
  return v4.cidr;
}

export class PxeService {
  private supervisor: DnsmasqSupervisor | null = null;
  readonly mode: PxeMode;
  readonly stateDir: string;
  readonly address: string;
  /** The URL iPXE clients are sent to; set by start(). */
  serverUrl = '';

  private constructor(
    readonly iface: string,
    private readonly cidr: string,
    private readonly lock: IfaceLock,
    dataDir: string,
    dhcpRange: string | undefined,
    private readonly log: (m: string) => void,
  ) {
    this.mode = dhcpRange ? { kind: 'dhcp', ...parseDhcpRange(dhcpRange) } : { kind: 'proxy' };
    this.stateDir = join(dataDir, 'pxe', iface);
    this.address = cidr.split('/')[0]!;
  }

  /**
   * Checks everything a PXE service needs and takes the interface, before the
   * server opens any port: a second server on the same interface is refused
   * with a sentence, not a port clash.
   */
  static async claim(opts: PxeOptions & { dataDir: string; log: (m: string) => void }): Promise<PxeService> {
    if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(opts.iface))
      throw new StrataError('E_BAD_ARGUMENT', `--pxe: "${opts.iface}" is not an interface name`);
    if (opts.dhcpRange) parseDhcpRange(opts.dhcpRange);
    findDnsmasq();
    const cidr = interfaceCidr(opts.iface);
    const lock = await lockInterface(opts.iface);
    return new PxeService(opts.iface, cidr, lock, opts.dataDir, opts.dhcpRange, opts.log);
  }

  /** Writes the config for a server reachable at `serverUrl` and starts dnsmasq. */
  async start(serverUrl: string): Promise<void> {
    this.serverUrl = serverUrl;
    try {
      mkdirSync(this.stateDir, { recursive: true });
      const tftpRoot = join(this.stateDir, 'tftp');
      await prepareTftpRoot(tftpRoot);
      const leaseFile = join(this.stateDir, 'dnsmasq.leases');
      // A proxy never leases: an empty file shows it (and a full-DHCP run's old leases do not carry over).
      rmSync(leaseFile, { force: true });
      const conf = renderDnsmasqConf({
        serverUrl,
        iface: this.iface,
        subnet: networkAddress(this.cidr),
        mode: this.mode,
        tftpRoot,
        leaseFile,
        pidFile: '',
        // dnsmasq drops root after binding; strata's own user can read what strata wrote.
        user: userInfo().username,
      });
      const confFile = join(this.stateDir, 'dnsmasq.conf');
      writeFileSync(`${confFile}.tmp`, conf);
      renameSync(`${confFile}.tmp`, confFile);
      this.supervisor = new DnsmasqSupervisor({ confFile, log: this.log });
      await this.supervisor.start();
      const what =
        this.mode.kind === 'proxy'
          ? `proxyDHCP on ${this.iface} (${this.cidr}): the site's DHCP hands out addresses`
          : `DHCP server on ${this.iface} handing out ${this.mode.start}-${this.mode.end}`;
      this.log(`PXE: ${what}; TFTP serves iPXE; iPXE clients go to ${serverUrl}/v1/boot/ipxe`);
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  dnsmasqPid(): number | null {
    return this.supervisor?.pid() ?? null;
  }

  async close(): Promise<void> {
    await this.supervisor?.stop();
    await this.lock.release();
  }
}
