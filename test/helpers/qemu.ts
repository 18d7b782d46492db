/**
 * Boots QEMU (TCG; KVM is unusable on these machines, see docs/design.md) with
 * the serial console on stdout, and collects what the guest prints. Every run
 * has a hard timeout that SIGKILLs QEMU, so a hung guest never hangs a test.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Between two keys typed on a guest's serial console (respond). */
const TYPE_DELAY_MS = 80;

export interface QemuOptions {
  /** Network boot: QEMU's iPXE ROM fetches boot.ipxe from this dir over the built-in TFTP. */
  tftpDir?: string;
  /** The file in tftpDir the PXE ROM loads (DHCP's boot file name); default boot.ipxe. */
  bootfile?: string;
  /** Direct kernel boot (as from a local boot loader) instead of PXE. */
  kernel?: string;
  initrd?: string;
  append?: string;
  /** Raw disk images, attached as virtio disks (/dev/vda, /dev/vdb, ...). */
  disks?: string[];
  memoryMb?: number;
  timeoutMs?: number;
  /**
   * Network boot on a tap device instead of user networking (the test
   * network of test/helpers/test-net.ts): QEMU runs inside that namespace.
   */
  tap?: { netns: string; ifname: string; mac: string /** '' drops the NIC's iPXE ROM (firmware's own PXE) */; romfile?: string };
  /** Extra machine arguments, e.g. UEFI firmware (test/helpers/test-net.ts ovmfArgs). */
  machineArgs?: string[];
  /** Called with each console line as it arrives. */
  onLine?: (line: string) => void;
  /**
   * Typed on the serial console, in order, each once: `send` as soon as the
   * console shows `when` (a prompt often has no newline yet, so the
   * unfinished line counts).
   */
  respond?: Array<{ when: RegExp; send: string }>;
}

export interface QemuResult {
  output: string;
  lines: string[];
  exitCode: number | null;
  timedOut: boolean;
  ms: number;
}

/** The newest Debian cloud kernel (or any -amd64 kernel) in /boot. */
export function findKernel(): { path: string; version: string } {
  const names = readdirSync('/boot')
    .filter((n) => /^vmlinuz-.*-amd64$/.test(n))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const cloud = names.filter((n) => n.includes('-cloud-'));
  const pick = (cloud.length ? cloud : names).at(-1);
  if (!pick) throw new Error('no /boot/vmlinuz-*-amd64: apt-get install linux-image-cloud-amd64');
  return { path: join('/boot', pick), version: pick.slice('vmlinuz-'.length) };
}

/** The two-line iPXE script QEMU's ROM gets over TFTP: chain to the server's boot route. */
export async function writeIpxeChain(tftpDir: string, port: number): Promise<void> {
  await writeFile(join(tftpDir, 'boot.ipxe'), `#!ipxe\nchain http://10.0.2.2:${port}/v1/boot/ipxe?mac=\${net0/mac}\n`);
}

export function runQemu(opts: QemuOptions): Promise<QemuResult> {
  const args = [
    '-accel',
    'tcg',
    '-m',
    String(opts.memoryMb ?? 512),
    '-nographic',
    '-no-reboot',
    '-nodefaults',
    '-serial',
    'stdio',
    '-monitor',
    'none',
  ];
  if (opts.tap) {
    const t = opts.tap;
    const rom = t.romfile === undefined ? '' : `,romfile=${t.romfile}`;
    args.push(
      '-netdev',
      `tap,id=n0,ifname=${t.ifname},script=no,downscript=no`,
      '-device',
      `virtio-net-pci,netdev=n0,mac=${t.mac}${rom}`,
      '-boot',
      'n',
    );
  } else if (opts.tftpDir) {
    args.push(
      '-netdev',
      `user,id=n0,tftp=${opts.tftpDir},bootfile=${opts.bootfile ?? 'boot.ipxe'}`,
      '-device',
      'virtio-net-pci,netdev=n0',
      '-boot',
      'n',
    );
  } else {
    if (!opts.kernel) throw new Error('runQemu needs tftpDir or kernel');
    args.push('-netdev', 'user,id=n0', '-device', 'virtio-net-pci,netdev=n0', '-kernel', opts.kernel);
    if (opts.initrd) args.push('-initrd', opts.initrd);
    args.push('-append', opts.append ?? 'console=ttyS0');
  }
  args.push(...(opts.machineArgs ?? []));
  for (const d of opts.disks ?? []) args.push('-drive', `file=${d},format=raw,if=virtio`);
  // -nodefaults drops the VGA card too; iPXE still prints to serial.
  args.push('-vga', 'none');

  return spawnQemu(args, opts);
}

/** Runs qemu-system-x86_64 with these arguments, collecting the console until it exits or times out. */
export function spawnQemu(
  args: string[],
  opts: Pick<QemuOptions, 'timeoutMs' | 'onLine' | 'tap' | 'respond'> & { stopWhen?: (line: string) => boolean } = {},
): Promise<QemuResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const cmd = opts.tap ? ['ip', 'netns', 'exec', opts.tap.netns, 'qemu-system-x86_64'] : ['qemu-system-x86_64'];
    const child = spawn(cmd[0]!, [...cmd.slice(1), ...args], { stdio: [opts.respond ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const answers = [...(opts.respond ?? [])];
    let answeredUpTo = 0;
    let output = '';
    let partial = '';
    let timedOut = false;
    let stopping = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    const onData = (buf: Buffer) => {
      const text = buf.toString('utf8').replace(/\r/g, '');
      output += text;
      partial += text;
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const l of parts) opts.onLine?.(l);
      // Each prompt is looked for only in what came after the previous answer.
      if (answers.length && answers[0]!.when.test(output.slice(answeredUpTo))) {
        // One key at a time, as a person types: the guest's UART holds only a few
        // characters, and firmware that polls it slowly (TCG) drops the rest.
        [...answers.shift()!.send].forEach((ch, i) => {
          setTimeout(() => child.stdin?.write(ch), i * TYPE_DELAY_MS);
        });
        answeredUpTo = output.length;
      }
      // Seen what the test waits for (a guest that would otherwise hang): stop it shortly after.
      // The unfinished last line counts too: firmware often prints a message and no newline.
      if (!stopping && opts.stopWhen && [...parts, partial].some((l) => opts.stopWhen!(l))) {
        stopping = true;
        setTimeout(() => child.kill('SIGKILL'), 2000);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (partial) opts.onLine?.(partial);
      resolve({ output, lines: output.split('\n'), exitCode: code, timedOut, ms: Date.now() - started });
    });
  });
}

/**
 * The console without terminal control sequences and carriage returns:
 * systemd's status animation ("[*     ] Job ... running") writes ESC[K and
 * \r around its line, and a proof line printed meanwhile starts after them.
 */
const plainConsole = (output: string) => output.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r(?!\n)/g, '\n');

/** "PROOF key=value" lines printed by the guest's init, as a record. */
export function proofs(output: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of plainConsole(output).matchAll(/^PROOF ([\w-]+)=(.*)$/gm)) out[m[1]!] = m[2]!.trim();
  return out;
}

/** The hook's lines ("strata: ..."), for assertions and for failure messages. */
export function strataLines(output: string): string[] {
  return plainConsole(output)
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l.startsWith('strata: '));
}
