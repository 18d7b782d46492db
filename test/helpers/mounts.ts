/**
 * Real mounts for tests: loop-mounted squashfs layers and overlayfs stacks.
 * Every mount is recorded and undone by cleanup(), newest first, so a failed
 * test does not leave loop devices behind.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export class Mounts {
  private mounted: string[] = [];
  readonly base: string;
  private n = 0;
  constructor(prefix = 'strata-mnt-') {
    this.base = mkdtempSync(join(tmpdir(), prefix));
  }
  dir(name = `d${this.n++}`): string {
    const d = join(this.base, name);
    mkdirSync(d, { recursive: true });
    return d;
  }
  squashfs(image: string): string {
    const d = this.dir();
    execFileSync('mount', ['-t', 'squashfs', '-o', 'loop,ro', image, d]);
    this.mounted.push(d);
    return d;
  }
  /** lowers: top first, as overlayfs wants them. Read-only when no upper is given. */
  overlay(lowers: string[], upper?: { upper: string; work: string }): string {
    const d = this.dir();
    const opts = upper ? `lowerdir=${lowers.join(':')},upperdir=${upper.upper},workdir=${upper.work}` : `lowerdir=${lowers.join(':')}`;
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', opts, d]);
    this.mounted.push(d);
    return d;
  }
  unmount(d: string): void {
    execFileSync('umount', [d]);
    this.mounted = this.mounted.filter((x) => x !== d);
  }
  cleanup(): void {
    for (const d of this.mounted.reverse()) {
      try {
        execFileSync('umount', ['-l', d]);
      } catch {
        /* already gone */
      }
    }
    this.mounted = [];
    // A lazily unmounted overlay, or a test's background agent finishing its last write, can still
    // add a file while rm walks the tree (ENOTEMPTY): retry instead of failing the file's cleanup.
    rmSync(this.base, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  }
}

/**
 * Mount options reaching a backup disk's layer cache: the whole disk, or on a
 * disk strata partitioned (a boot partition fits) its partition 3, found
 * from the MBR entry (initrd-hooks/lib/bootdisk-parse.sh has the layout).
 */
function cacheMountOptions(image: string): string {
  const mbr = Buffer.alloc(512);
  const fd = openSync(image, 'r');
  try {
    readSync(fd, mbr, 0, 512, 0);
  } finally {
    closeSync(fd);
  }
  const entry = 446 + 2 * 16;
  if (mbr.readUInt16LE(510) !== 0xaa55 || mbr[entry + 4] === 0) return 'loop';
  const start = mbr.readUInt32LE(entry + 8) * 512;
  const size = mbr.readUInt32LE(entry + 12) * 512;
  return `loop,offset=${start},sizelimit=${size}`;
}

/**
 * Reads a QEMU guest's disk image from the host. The guest powers off without
 * unmounting, so the ext4 journal needs replaying: mount a copy read-write
 * (a read-only mount would refuse, and noload could show stale metadata).
 */
export function readDiskImage<T>(image: string, read: (root: string) => T): T {
  const mnt = mkdtempSync(join(tmpdir(), 'strata-disk-'));
  const copy = `${mnt}.img`;
  execFileSync('cp', ['--sparse=always', image, copy]);
  try {
    execFileSync('mount', ['-o', cacheMountOptions(copy), copy, mnt]);
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
