/**
 * The pure half of the backup disk's boot partition (initrd-hooks/lib/
 * bootdisk-parse.sh) under the shells the hook meets: the partition table
 * it writes is read back from a disk image, the grub.cfg
 * by GRUB's own script checker.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESP_KIB } from '../store/bootloader-images.ts';
import { partitionTable } from './helpers/disk-partitions.ts';

const LIB = fileURLToPath(new URL('../initrd-hooks/lib/bootdisk-parse.sh', import.meta.url));
const ID = 'c'.repeat(64);
const K = '1'.repeat(64);
const I = '2'.repeat(64);

const shells = (
  [
    ['busybox ash', ['/usr/bin/busybox', 'sh']],
    ['dash', ['/bin/sh']],
    ['bash', ['/bin/bash']],
  ] as [string, string[]][]
).filter(([, cmd]) => spawnSync(cmd[0]!, [...cmd.slice(1), '-c', 'true']).status === 0);

function run(shell: string[], script: string): { out: string; status: number } {
  const r = spawnSync(shell[0]!, [...shell.slice(1), '-c', `. "${LIB}"\n${script}`], { encoding: 'utf8' });
  return { out: r.stdout.trim(), status: r.status ?? -1 };
}

describe.each(shells)('bootdisk-parse.sh under %s', (_name, shell) => {
  it('lays out ESP, boot partition and cache; refuses disks under 512 MiB', () => {
    expect(run(shell, 'strata_bootdisk_layout 2097152').out).toBe('2048 16384 18432 524288 542720 1554432');
    expect(run(shell, 'strata_bootdisk_layout 1048575').status).toBe(1);
    expect(run(shell, 'strata_bootdisk_layout x').status).toBe(1);
    // MBR counts in 32 bits: an 8 TiB disk gets a 2 TiB cache, not a wrapped size.
    expect(run(shell, 'strata_bootdisk_layout 17179869184').out).toBe('2048 16384 18432 524288 542720 4294967295');
    // The ESP image store/bootloader-images.ts builds fills partition 1 exactly.
    expect(ESP_KIB * 2).toBe(16384);
  });

  it('writes an MBR partition table that reads back as that layout', () => {
    const dir = mkdtempSync(join(tmpdir(), 'strata-mbr-'));
    try {
      const img = join(dir, 'disk.img');
      execFileSync('truncate', ['-s', '1G', img]);
      const r = run(shell, `printf "$(strata_mbr_table 2097152)" | dd of="${img}" bs=1 seek=446 conv=notrunc 2>/dev/null`);
      expect(r.status).toBe(0);
      const t = partitionTable(img);
      expect(t.label).toBe('dos');
      expect(t.partitions).toEqual([
        { start: 2048, size: 16384, type: 'ef', bootable: true },
        { start: 18432, size: 524288, type: '83', bootable: false },
        { start: 542720, size: 1554432, type: '83', bootable: false },
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names partitions the way the kernel does', () => {
    expect(run(shell, 'strata_part_dev /dev/vda 3; strata_part_dev /dev/nvme0n1 2; strata_part_dev /dev/mmcblk0 1').out).toBe(
      '/dev/vda3\n/dev/nvme0n1p2\n/dev/mmcblk0p1',
    );
  });

  it("keeps the booted command line for the disk's entry, pinned to the commit, without boot loader words", () => {
    const r = run(
      shell,
      `strata_disk_cmdline "BOOT_IMAGE=/k-x initrd=initrd.img console=ttyS0 strata.server=http://h:1 strata.commit=${'d'.repeat(64)} strata.backup=/dev/vda *" ${ID}`,
    );
    expect(r.out).toBe(`strata.commit=${ID} console=ttyS0 strata.server=http://h:1 strata.backup=/dev/vda *`);
  });

  it('finds the kernel and initrd a manifest names', () => {
    const dir = mkdtempSync(join(tmpdir(), 'strata-mf-'));
    try {
      const m = join(dir, 'm');
      writeFileSync(m, `strata-manifest 1\ncommit-parent -\nkernel sha256:${K} 10\ninitrd sha256:${I} 20\nlayer sha256:${ID} 30\n`);
      expect(run(shell, `strata_manifest_boot_file ${m} kernel; strata_manifest_boot_file ${m} initrd`).out).toBe(`${K} 10\n${I} 20`);
      writeFileSync(m, `strata-manifest 1\ncommit-parent -\nlayer sha256:${ID} 30\n`);
      expect(run(shell, `strata_manifest_boot_file ${m} kernel`).out).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('renders a grub.cfg GRUB accepts, quoting every word', () => {
    const r = run(shell, `strata_disk_grub_cfg ${ID} ${K} ${I} 'strata.commit=${ID} console=ttyS0 panic=-1 odd=x;y&$z'`);
    expect(r.out).toContain(`  linux /k-${K} 'strata.commit=${ID}' 'console=ttyS0' 'panic=-1' 'odd=x;y&$z'\n  initrd /i-${I}\n}`);
    expect(run(shell, `strata_grub_quote "a'b"`).out).toBe(`'a'\\''b'`);
    expect(r.out).toContain('  serial --unit=0 --speed=115200');
    expect(r.out).toContain(`echo 'strata: booting the last good commit ${ID} from the backup disk'`);
    const dir = mkdtempSync(join(tmpdir(), 'strata-gcfg-'));
    try {
      writeFileSync(join(dir, 'grub.cfg'), `${r.out}\n`);
      const chk = spawnSync('grub-script-check', [join(dir, 'grub.cfg')], { encoding: 'utf8' });
      if (!chk.error) expect(chk.status, chk.stderr + chk.stdout).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // No serial console on the kernel line: GRUB is not told to use one either.
    expect(run(shell, `strata_disk_grub_cfg ${ID} ${K} ${I} "strata.commit=${ID} quiet"`).out).not.toContain('serial');
  });
});
