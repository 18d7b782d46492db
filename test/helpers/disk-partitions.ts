/**
 * Reads a partitioned guest disk image from the host: its MBR partition
 * table and the files of one partition, mounted from a sparse copy (the
 * guest powers off without unmounting; see readDiskImage).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Partition {
  start: number;
  size: number;
  /** MBR type as sfdisk prints it: "ef", "83". */
  type: string;
  bootable: boolean;
}

/** The MBR partition table of a disk image, read from its first sector. */
export function partitionTable(image: string): { label: string; partitions: Partition[] } {
  const fd = openSync(image, 'r');
  const mbr = Buffer.alloc(512);
  try {
    readSync(fd, mbr, 0, 512, 0);
  } finally {
    closeSync(fd);
  }
  if (mbr[510] !== 0x55 || mbr[511] !== 0xaa) return { label: 'none', partitions: [] };
  const partitions: Partition[] = [];
  for (let i = 0; i < 4; i++) {
    const e = 446 + 16 * i;
    const type = mbr[e + 4]!;
    if (type === 0) continue;
    partitions.push({
      start: mbr.readUInt32LE(e + 8),
      size: mbr.readUInt32LE(e + 12),
      type: type.toString(16).padStart(2, '0'),
      bootable: mbr[e] === 0x80,
    });
  }
  return { label: 'dos', partitions };
}

/** Mounts partition n (1-based) of a copy of image and calls read with its root. */
export function readPartition<T>(image: string, n: number, read: (root: string) => T): T {
  const p = partitionTable(image).partitions[n - 1];
  if (!p) throw new Error(`${image} has no partition ${n}`);
  const mnt = mkdtempSync(join(tmpdir(), 'strata-part-'));
  const copy = `${mnt}.img`;
  execFileSync('cp', ['--sparse=always', image, copy]);
  try {
    execFileSync('mount', ['-o', `loop,offset=${p.start * 512},sizelimit=${p.size * 512}`, copy, mnt]);
    try {
      return read(mnt);
    } finally {
      execFileSync('umount', [mnt]);
    }
  } finally {
    rmSync(mnt, { recursive: true, force: true });
    rmSync(copy, { force: true });
  }
}
