/**
 * A backup disk that boots by itself. One QEMU machine per firmware (SeaBIOS
 * and OVMF), boot order network then disk, a blank 1 GiB disk:
 *   1. it PXE-boots (QEMU's iPXE ROM) a commit with strata.backup=/dev/vda
 *      strata.backup.format=1: the initramfs partitions the disk (EFI system
 *      partition, boot partition, layer cache), caches the layers and, after
 *      the good boot, puts the commit's kernel, initrd and command line on
 *      the boot partition;
 *   2. a boot of a commit whose layer is corrupt fails and leaves the disk's
 *      boot entry alone (BIOS machine only: the rule is the firmware's no
 *      business);
 *   3. with the NIC unplugged (no DHCP, no server), the firmware's network
 *      boot gives up, it boots the disk: GRUB loads the last good kernel and
 *      initrd, the initramfs finds no network and assembles the last good
 *      chain from the cache.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildInitrd } from '../cli/initrd-build.ts';
import { missingBootloaderTools } from '../store/bootloader-images.ts';
import { type Firmware, missingFirmware, runFirmwareQemu } from './helpers/qemu-firmware.ts';
import { findKernel, proofs, strataLines } from './helpers/qemu.ts';
import { partitionTable, readPartition } from './helpers/disk-partitions.ts';
import { type Blob, makeTestChain, startStaticBootServer, type StaticBootServer, type TestChain } from './helpers/static-boot-server.ts';

async function missingPrereq(): Promise<string | null> {
  const q = spawnSync('qemu-system-x86_64', ['-accel', 'help'], { encoding: 'utf8' });
  if (q.error || q.status !== 0 || !/^tcg$/m.test(q.stdout))
    return 'qemu-system-x86_64 with TCG is not installed (apt-get install qemu-system-x86)';
  if (!existsSync('/usr/lib/ipxe/qemu/efi-virtio.rom')) return "QEMU's PXE ROM efi-virtio.rom is missing (apt-get install ipxe-qemu)";
  return missingFirmware('uefi') ?? (await missingBootloaderTools());
}

const skipReason = await missingPrereq();
if (skipReason) console.warn(`boot-backup-disk-boot: skipped: ${skipReason}`);

const kernel = findKernel();
let dir: string;
let initrd: string;
let chain: TestChain;

beforeAll(async () => {
  if (skipReason) return;
  dir = mkdtempSync(join(tmpdir(), 'strata-disk-boot-'));
  initrd = (await buildInitrd({ output: join(dir, 'initrd.img'), kernelVersion: kernel.version, withBootloader: true })).output;
  chain = await makeTestChain(dir);
}, 180_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * The iPXE script on QEMU's TFTP: kernel and initrd by digest from the
 * server. UEFI iPXE hands the initrd to the kernel's EFI stub only when the
 * command line names it (initrd=initrd.img); the BIOS path ignores the word.
 */
function writeBootScript(tftp: string, srv: StaticBootServer, commit: string, k: Blob, i: Blob): void {
  const obj = (b: Blob) => `${srv.guestUrl}/objects/sha256/${b.digest}`;
  const args = [
    'initrd=initrd.img console=ttyS0 panic=-1 quiet',
    `strata.server=${srv.guestUrl} strata.commit=${commit}`,
    'strata.backup=/dev/vda strata.backup.format=1 strata.reboot.delay=0 strata.retries=2',
  ].join(' ');
  writeFileSync(join(tftp, 'boot.ipxe'), `#!ipxe\nkernel ${obj(k)} ${args}\ninitrd --name initrd.img ${obj(i)}\nboot\n`);
}

/** GRUB draws with escape codes and wraps at 80 columns: compare without them. */
const plain = (t: string) =>
  t
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
    .replace(/\x1bc/g, '')
    .replace(/\s+/g, '');
const noErrors = (out: string) => strataLines(out).filter((l) => l.startsWith('strata: error:'));

describe.skipIf(skipReason !== null).each<Firmware>(['bios', 'uefi'])('backup disk boots by itself (%s)', (firmware) => {
  let srv: StaticBootServer;
  let tftp: string;
  let disk: string;
  let vars: string;
  let k: Blob;
  let i: Blob;
  let v1: string;
  const machine = (extra: { network?: 'user' | 'unplugged'; timeoutMs: number }) =>
    runFirmwareQemu({
      firmware,
      varsFile: vars,
      tftpDir: tftp,
      bootfile: 'boot.ipxe',
      disks: [disk],
      bootOrder: ['net', 'disk'],
      ...extra,
    });

  beforeAll(async () => {
    const d = join(dir, firmware);
    tftp = join(d, 'tftp');
    execFileSync('mkdir', ['-p', tftp]);
    disk = join(d, 'disk.img');
    vars = join(d, 'vars.fd');
    execFileSync('truncate', ['-s', '1G', disk]);
    srv = await startStaticBootServer({ dir: join(d, 'srv'), kernel: kernel.path, initrd });
    k = await srv.addObject(kernel.path);
    i = await srv.addObject(initrd);
  }, 60_000);

  afterAll(async () => {
    await srv?.close();
  });

  it('a good network boot partitions the blank disk and puts the commit on its boot partition', async () => {
    const base = await srv.addObject(chain.layers.base);
    const middle = await srv.addObject(chain.layers.middle);
    v1 = await srv.addManifest([base, middle], { kernel: k, initrd: i });
    writeBootScript(tftp, srv, v1, k, i);
    const r = await machine({ timeoutMs: 540_000 });
    const why = `console:\n${r.output.slice(-5000)}`;
    expect(r.timedOut, why).toBe(false);
    expect(proofs(r.output).commit, why).toBe(v1);
    const lines = strataLines(r.output);
    expect(lines, why).toContain('strata: partitioning backup disk /dev/vda: EFI system partition, boot partition, layer cache');
    expect(lines, why).toContain(`strata: backup disk boots commit ${v1} by itself now (kernel ${k.digest}, initrd ${i.digest})`);
    expect(noErrors(r.output)).toEqual([]);

    const t = partitionTable(disk);
    expect(t.label).toBe('dos');
    expect(t.partitions.map((p) => [p.type, p.start])).toEqual([
      ['ef', 2048],
      ['83', 18432],
      ['83', 542720],
    ]);
    expect(execFileSync('blkid', ['-o', 'export', '-p', '-O', String(2048 * 512), disk], { encoding: 'utf8' })).toMatch(/^TYPE=vfat$/m);
    // mtools reads the FAT in place (no vfat module needed on the host).
    expect(execFileSync('mdir', ['-b', '-i', `${disk}@@${2048 * 512}`, '::/EFI/BOOT'], { encoding: 'utf8' })).toContain('BOOTX64.EFI');
    readPartition(disk, 2, (root) => {
      expect(
        readdirSync(root)
          .filter((n) => /^[ki]-/.test(n))
          .sort(),
      ).toEqual([`i-${i.digest}`, `k-${k.digest}`]);
      expect(readFileSync(join(root, `k-${k.digest}`)).equals(readFileSync(kernel.path))).toBe(true);
      const cfg = readFileSync(join(root, 'grub/grub.cfg'), 'utf8');
      expect(cfg).toContain(`'strata.commit=${v1}'`);
      expect(cfg).toContain(`'strata.server=${srv.guestUrl}'`);
      expect(cfg).not.toContain('initrd=initrd.img');
    });
    readPartition(disk, 3, (root) => {
      expect(readFileSync(join(root, 'strata/last-good.id'), 'utf8').trim()).toBe(v1);
      expect(readdirSync(join(root, 'strata/objects')).sort()).toEqual([base.digest, middle.digest].sort());
    });
  }, 600_000);

  it.runIf(firmware === 'bios')(
    'a boot that fails leaves the boot partition on the last good commit',
    async () => {
      const base = await srv.addObject(chain.layers.base);
      const bad = 'f'.repeat(64);
      await srv.putObjectRaw(bad, Buffer.from('not the layer the manifest names'));
      const v2 = await srv.addManifest([base, { digest: bad, size: 32 }], { parent: v1, kernel: k, initrd: i });
      writeBootScript(tftp, srv, v2, k, i);
      const r = await machine({ timeoutMs: 400_000 });
      const why = `console:\n${r.output.slice(-4000)}`;
      expect(noErrors(r.output).join('\n'), why).toMatch(/^strata: error: layer f{64} downloaded from .* is corrupt/);
      expect(proofs(r.output).commit).toBeUndefined();
      readPartition(disk, 2, (root) => expect(readFileSync(join(root, 'commit'), 'utf8').trim()).toBe(v1));
    },
    480_000,
  );

  it('with no network at all, the same machine boots the last good chain from the disk', async () => {
    await srv.close();
    rmSync(join(tftp, 'boot.ipxe'), { force: true });
    const r = await machine({ network: 'unplugged', timeoutMs: 540_000 });
    const why = `console:\n${r.output.slice(-5000)}`;
    expect(r.timedOut, why).toBe(false);
    // GRUB from the disk says what it boots (BIOS: on the serial line its grub.cfg turns on; UEFI: the firmware's console).
    expect(plain(r.output), why).toContain(plain(`strata: booting the last good commit ${v1} from the backup disk`));
    const p = proofs(r.output);
    expect(p.commit, why).toBe(v1);
    expect(p['root-fstype']).toBe('overlay');
    expect(p.middle).toBe('middle');
    expect(p.rw).toBe('writable');
    const lines = strataLines(r.output);
    expect(lines, why).toContain('strata: warning: no network (DHCP got no lease); booting the last good commit from the backup disk');
    expect(lines).toContain(`strata: booting last good commit ${v1} from the backup disk`);
    expect(noErrors(r.output)).toEqual([]);
  }, 600_000);
});
