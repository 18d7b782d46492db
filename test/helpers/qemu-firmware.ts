/**
 * QEMU machines booted by their firmware as real hardware would be: SeaBIOS
 * (BIOS) or Debian's OVMF (UEFI, optionally with Secure Boot and Microsoft's
 * keys enrolled), a boot order of network and disk devices, and raw disks.
 * The console is the first serial port (OVMF mirrors its console there).
 */
import { copyFileSync, existsSync } from 'node:fs';
import { type QemuResult, spawnQemu } from './qemu.ts';

export type Firmware = 'bios' | 'uefi' | 'uefi-secure-boot';

const OVMF = '/usr/share/OVMF';
/** Code and the pristine variable store each UEFI flavour starts from (package ovmf). */
export const OVMF_FILES = {
  uefi: { code: `${OVMF}/OVMF_CODE_4M.fd`, vars: `${OVMF}/OVMF_VARS_4M.fd` },
  'uefi-secure-boot': { code: `${OVMF}/OVMF_CODE_4M.secboot.fd`, vars: `${OVMF}/OVMF_VARS_4M.ms.fd` },
} as const;

export interface FirmwareQemuOptions {
  firmware: Firmware;
  /**
   * UEFI: the machine's own copy of the variable store (NVRAM). Made from the
   * pristine file when absent, kept across boots of the same machine.
   */
  varsFile?: string;
  /** QEMU's built-in TFTP root and DHCP boot file name. */
  tftpDir?: string;
  bootfile?: string;
  /** 'unplugged': the NIC sits on an empty hub (no DHCP, no server: no network at all). Default 'user'. */
  network?: 'user' | 'unplugged';
  /** The NIC on a tap device of a test network namespace instead (test/helpers/test-net.ts). */
  tap?: { netns: string; ifname: string; mac: string };
  /** false: no option ROM on the NIC, so OVMF's own PXE (not QEMU's iPXE) boots from the network. */
  nicRom?: boolean;
  /** Raw disk images, as virtio disks (/dev/vda, ...). */
  disks?: string[];
  /** Devices the firmware tries, in order: `net` (the NIC) and `disk` (the first disk). */
  bootOrder: Array<'net' | 'disk'>;
  memoryMb?: number;
  timeoutMs?: number;
  onLine?: (line: string) => void;
  /** Stop the machine soon after a console line for which this is true. */
  stopWhen?: (line: string) => boolean;
}

/** Why this firmware cannot run here, or null. */
export function missingFirmware(firmware: Firmware): string | null {
  if (firmware === 'bios') return null;
  const f = OVMF_FILES[firmware];
  for (const p of [f.code, f.vars]) if (!existsSync(p)) return `${p} is missing (apt-get install ovmf)`;
  return null;
}

export function firmwareQemuArgs(o: FirmwareQemuOptions): string[] {
  const args = ['-accel', 'tcg', '-m', String(o.memoryMb ?? 768), '-nographic', '-no-reboot', '-nodefaults'];
  args.push('-serial', 'stdio', '-monitor', 'none', '-vga', 'none');
  if (o.firmware !== 'bios') {
    if (!o.varsFile) throw new Error('UEFI machines need a varsFile (their NVRAM)');
    const f = OVMF_FILES[o.firmware];
    if (!existsSync(o.varsFile)) copyFileSync(f.vars, o.varsFile);
    if (o.firmware === 'uefi-secure-boot') {
      // OVMF's Secure Boot build keeps its variables in SMM-protected flash.
      args.push('-machine', 'q35,smm=on', '-global', 'driver=cfi.pflash01,property=secure,value=on');
    } else {
      args.push('-machine', 'q35');
    }
    args.push('-drive', `if=pflash,format=raw,unit=0,file=${f.code},readonly=on`);
    args.push('-drive', `if=pflash,format=raw,unit=1,file=${o.varsFile}`);
  }
  const index = (d: 'net' | 'disk') => {
    const i = o.bootOrder.indexOf(d);
    return i < 0 ? '' : `,bootindex=${i + 1}`;
  };
  let net = 'user,id=n0';
  if (o.tftpDir) net += `,tftp=${o.tftpDir}`;
  if (o.bootfile) net += `,bootfile=${o.bootfile}`;
  if (o.network === 'unplugged') net = 'hubport,id=n0,hubid=0';
  if (o.tap) net = `tap,id=n0,ifname=${o.tap.ifname},script=no,downscript=no`;
  const mac = o.tap ? `,mac=${o.tap.mac}` : '';
  args.push('-netdev', net, '-device', `virtio-net-pci,netdev=n0${mac}${index('net')}${o.nicRom === false ? ',romfile=' : ''}`);
  (o.disks ?? []).forEach((d, i) => {
    args.push('-drive', `file=${d},format=raw,if=none,id=d${i}`);
    args.push('-device', `virtio-blk-pci,drive=d${i}${i === 0 ? index('disk') : ''}`);
  });
  return args;
}

export function runFirmwareQemu(o: FirmwareQemuOptions): Promise<QemuResult> {
  return spawnQemu(firmwareQemuArgs(o), {
    timeoutMs: o.timeoutMs ?? 300_000,
    onLine: o.onLine,
    stopWhen: o.stopWhen,
    tap: o.tap ? { ...o.tap, romfile: '' } : undefined,
  });
}
