/**
 * `strata serve --pxe IFACE`: claims the interface, writes dnsmasq's config
 * from strata's state (interface address, HTTP port, mode) and supervises
 * dnsmasq. The config and TFTP root live in DATA/pxe/IFACE/ and are
 * rewritten on every start: they are outputs, never inputs. With
 * `secureBoot`, the TFTP root also holds shim, signed GRUB and the GRUB
 * configs of every assignment, recomputed from the store every
 * SECURE_BOOT_REFRESH_MS (a poll, not a hook: assignments and refs also move
 * from other processes, e.g. `strata assign` on the same data directory).
 */
import { writeFileSync, renameSync, mkdirSync, rmSync } from 'node:fs';
import { networkInterfaces, userInfo } from 'node:os';
import { join } from 'node:path';
import { StrataError } from '../../store/errors.ts';
import type { Store } from '../../store/store.ts';
import { linkSecureBootLoaders, missingSecureBootFiles, secureBootTree, syncSecureBootTftp } from './secure-boot-tftp.ts';
import { networkAddress, PROXY_NEXT_SERVER_NOTE, parseDhcpRange, renderDnsmasqConf, type PxeMode } from './conf.ts';
import { lockInterface, type IfaceLock } from './iface-lock.ts';
import { DnsmasqSupervisor, findDnsmasq } from './supervisor.ts';
import { prepareTftpRoot } from './tftp-root.ts';

export interface PxeOptions {
  iface: string;
  /** "FIRST,LAST": a full DHCP server handing out these addresses instead of proxyDHCP. */
  dhcpRange?: string;
  /** UEFI x86-64 clients get shim -> Debian-signed GRUB -> the commit's kernel over TFTP, not iPXE. */
  secureBoot?: boolean;
}

export const SECURE_BOOT_REFRESH_MS = 2000;

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
  private refreshTimer: NodeJS.Timeout | null = null;
  private lastRefreshError = '';
  private refreshing = false;
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
    readonly secureBoot: boolean,
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
    if (opts.secureBoot) {
      const why = await missingSecureBootFiles();
      if (why) throw new StrataError('E_BAD_ARGUMENT', `--pxe-secure-boot: ${why}`);
    }
    const cidr = interfaceCidr(opts.iface);
    const lock = await lockInterface(opts.iface);
    return new PxeService(opts.iface, cidr, lock, opts.dataDir, opts.dhcpRange, opts.secureBoot === true, opts.log);
  }

  /** Writes the config for a server reachable at `serverUrl` and starts dnsmasq; `store` feeds the Secure Boot configs. */
  async start(serverUrl: string, store?: Store): Promise<void> {
    this.serverUrl = serverUrl;
    try {
      mkdirSync(this.stateDir, { recursive: true });
      const tftpRoot = join(this.stateDir, 'tftp');
      await prepareTftpRoot(tftpRoot);
      if (this.secureBoot) {
        if (!store) throw new Error('PxeService.start: Secure Boot needs the store');
        await linkSecureBootLoaders(tftpRoot);
        await this.refreshSecureBoot(tftpRoot, store);
        this.refreshTimer = setInterval(() => void this.refreshSecureBoot(tftpRoot, store), SECURE_BOOT_REFRESH_MS);
        this.refreshTimer.unref();
      }
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
        secureBoot: this.secureBoot,
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
      if (this.secureBoot) {
        this.log('PXE: Secure Boot: UEFI x86-64 clients get shimx64.efi -> grubx64.efi (Debian-signed) -> kernel and initrd over TFTP');
        if (this.mode.kind === 'proxy') this.log(`PXE: Secure Boot: ${PROXY_NEXT_SERVER_NOTE.replace('this server', this.address)}`);
      }
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  /** Brings the Secure Boot files in line with the store; a failure is logged (once per reason) and tried again. */
  private async refreshSecureBoot(tftpRoot: string, store: Store): Promise<void> {
    // A slow copy (objects on another file system) must not overlap the next tick.
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      if (await syncSecureBootTftp(tftpRoot, secureBootTree(store, this.serverUrl)))
        this.log(`PXE: Secure Boot: GRUB configs in ${tftpRoot} follow the assignments and heads now`);
      this.lastRefreshError = '';
    } catch (e) {
      const m = (e as Error).message;
      if (m !== this.lastRefreshError) this.log(`PXE: Secure Boot: could not update the GRUB configs: ${m}`);
      this.lastRefreshError = m;
    } finally {
      this.refreshing = false;
    }
  }

  dnsmasqPid(): number | null {
    return this.supervisor?.pid() ?? null;
  }

  async close(): Promise<void> {
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.refreshTimer = null;
    await this.supervisor?.stop();
    await this.lock.release();
  }
}
