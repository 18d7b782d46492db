/**
 * Decomposing live ISOs into kernel, initrd and root squashfs WITHOUT mounting
 * them: the ISO is listed and read with xorriso (user space, works as any user,
 * no loop device to leak when a test or an import dies half way).
 *
 * Why xorriso for both listing and extracting: the names a tool reports depend
 * on which directory tree it reads (Rock Ridge, Joliet or plain ISO 9660, where
 * names are upper-cased). Using the same tool for both guarantees that a name we
 * picked from the listing is a name the extractor finds. xorriso prefers Rock
 * Ridge, then Joliet, then ISO 9660, and handles multi-extent files (> 4 GiB).
 *
 * Which layout an ISO is (and the layouts recognised) is decided in iso-layout.ts;
 * here is what lists, reads and extracts.
 */
import { open, rm, lstat, stat, mkdtemp, readFile, chmod, access, statfs } from 'node:fs/promises';
import { dirname, basename, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { StrataError, wrapIoError } from './errors.ts';
import { fsyncPath, renameDurable } from '../protocol/durable.ts';
import {
  badIso,
  ISO_BLOCK,
  lc,
  Tree,
  type IsoContents,
  type IsoEntry,
  parseReportLba,
  parseXorrisoLsdl,
  pickIsoContents,
  contiguousOffset,
  findLayerfsPath,
} from './iso-layout.ts';

const XORRISO_ENV = { LC_ALL: 'C.UTF-8' };

// ---------------------------------------------------------------------------
// I/O edges
// ---------------------------------------------------------------------------

/** Refuses what is not an ISO 9660 image before xorriso sees it: xorriso treats
 *  a non-ISO (or missing) file as a blank medium and lists an empty tree. */
async function assertIsoImage(isoPath: string): Promise<void> {
  let st;
  try {
    st = await stat(isoPath); // follows symlinks: a link to an ISO is fine
  } catch (e) {
    throw badIso(`cannot read ${isoPath}: ${(e as Error).message}`);
  }
  if (!st.isFile() && !st.isBlockDevice()) throw badIso(`${isoPath} is not a file`);
  let fh;
  try {
    fh = await open(isoPath, 'r');
  } catch (e) {
    throw badIso(`cannot read ${isoPath}: ${(e as Error).message}`);
  }
  try {
    // The primary volume descriptor sits in sector 16: type byte, then "CD001".
    const buf = Buffer.alloc(5);
    const { bytesRead } = await fh.read(buf, 0, 5, 16 * ISO_BLOCK + 1);
    if (bytesRead < 5 || buf.toString('latin1') !== 'CD001') {
      throw badIso(`${isoPath} is not an ISO 9660 image (no CD001 volume descriptor at byte ${16 * ISO_BLOCK + 1})`);
    }
  } finally {
    await fh.close();
  }
}

/** Runs xorriso on an image that assertIsoImage accepted. `-no_rc` keeps site rc files out. */
async function xorriso(isoPath: string, args: string[]) {
  const r = await execa('xorriso', ['-no_rc', '-report_about', 'SORRY', '-indev', isoPath, ...args], {
    reject: false,
    stdin: 'ignore',
    env: XORRISO_ENV,
    maxBuffer: 256 * 1024 * 1024,
  });
  if ((r as { code?: string }).code === 'ENOENT' || r.exitCode === undefined) {
    throw new StrataError('E_INTERNAL', 'xorriso is not installed; run scripts/setup.sh (Debian package xorriso)');
  }
  return r;
}

/** Lists every node of the ISO (Rock Ridge names if present, else Joliet, else ISO 9660). */
export async function listIso(isoPath: string): Promise<IsoEntry[]> {
  const abs = resolve(isoPath);
  await assertIsoImage(abs);
  const r = await xorriso(abs, ['-find', '/', '-exec', 'lsdl']);
  if (r.exitCode !== 0) {
    throw badIso(`xorriso cannot read the ISO ${abs}: ${lastLines(r.stderr)}`);
  }
  return parseXorrisoLsdl(r.stdout);
}

const lastLines = (s: string, n = 3) => s.trim().split('\n').slice(-n).join(' | ');

/** Where a file's data sits in the image, when it is one contiguous run of blocks. */
async function isoFileOffset(isoPath: string, inner: string): Promise<number | undefined> {
  const r = await xorriso(isoPath, ['-iso_rr_pattern', 'off', '-find', `/${inner}`, '-exec', 'report_lba']);
  if (r.exitCode !== 0) return undefined;
  return contiguousOffset(parseReportLba(r.stdout));
}

async function readMagicAt(path: string, offset: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(4);
    const { bytesRead } = await fh.read(buf, 0, 4, offset);
    return buf.subarray(0, bytesRead).toString('latin1');
  } finally {
    await fh.close();
  }
}

/** Reads the first boot config that names a casper layer (small files only). */
async function readLayerfsPath(isoPath: string, entries: IsoEntry[]): Promise<string | undefined> {
  const t = new Tree(entries);
  const cfgs = ['boot/grub/grub.cfg', 'boot/grub/loopback.cfg', 'isolinux/txt.cfg', 'isolinux/isolinux.cfg']
    .map((p) => t.file(p))
    .filter((e): e is IsoEntry => e !== undefined && e.size < 1024 * 1024);
  if (cfgs.length === 0) return undefined;
  const dir = await mkdtemp(join(tmpdir(), 'strata-iso-cfg-'));
  try {
    for (const cfg of cfgs) {
      const out = join(dir, 'cfg');
      try {
        await extractIsoFile(isoPath, cfg.path, out);
      } catch {
        continue;
      }
      const found = findLayerfsPath(await readFile(out, 'utf8'));
      if (found) return found;
    }
    return undefined;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Lists the ISO and picks the kernel, initrd and root squashfs. For Fedora/RHEL
 * LiveOS it also looks inside squashfs.img (in place, through its byte offset in
 * the ISO; nothing is extracted) and refuses the nested rootfs.img form.
 */
export async function inspectIso(isoPath: string): Promise<IsoContents> {
  const abs = resolve(isoPath);
  const entries = await listIso(abs);
  const t = new Tree(entries);
  let layerfsPath: string | undefined;
  if (
    t.dir('casper') &&
    !t.file('casper/filesystem.squashfs') &&
    t.filesIn('casper').filter((e) => lc(e.path).endsWith('.squashfs')).length > 1
  ) {
    layerfsPath = await readLayerfsPath(abs, entries);
  }
  const picked = pickIsoContents(entries, { layerfsPath, label: abs });

  if (picked.layout === 'fedora-liveos') {
    // Only checkable in place when the data is one contiguous run that starts with
    // the squashfs magic (not zisofs-compressed). Otherwise the importer must call
    // isNestedRootfs on the extracted file.
    const offset = await isoFileOffset(abs, picked.rootfs);
    if (offset !== undefined && (await readMagicAt(abs, offset)) === 'hsqs') {
      let nested: boolean;
      try {
        nested = await isNestedRootfs(abs, offset);
      } catch (e) {
        throw badIso(`${picked.rootfs} in ${abs} is not a readable squashfs: ${(e as Error).message}`);
      }
      if (nested) throw nestedError(abs, picked);
    }
  }
  return picked;
}

/** The refusal for old-style Fedora/RHEL live media; exported so importers that check after extraction say the same. */
export function nestedError(isoPath: string, c: IsoContents): StrataError {
  return badIso(
    `${c.rootfs} in ${isoPath} only holds LiveOS/rootfs.img, an ext4 image nested inside the squashfs ` +
      `(the layout of older Fedora/RHEL live media); strata cannot import that without mounting it, so it is not supported. ` +
      `Instead, extract it (unsquashfs ${basename(c.rootfs)}), loop-mount LiveOS/rootfs.img read-only yourself, ` +
      `and import the mounted directory with --kernel and --initrd taken from ${c.kernel} and ${c.initrd}.`,
    { kernel: c.kernel, initrd: c.initrd, rootfs: c.rootfs },
  );
}

/**
 * Copies one regular file out of the ISO to `dest`: written under a temporary
 * name in dest's directory, fsynced, renamed over dest, directory fsynced, so a
 * crash leaves either the old dest or the complete new one, never a torn file.
 */
export async function extractIsoFile(isoPath: string, inner: string, dest: string): Promise<void> {
  const abs = resolve(isoPath);
  await assertIsoImage(abs);
  const innerPath = `/${inner.replace(/^\/+/, '')}`;
  const destAbs = resolve(dest);
  const tmp = join(dirname(destAbs), `.${basename(destAbs)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  // A missing destination folder is the caller's mistake, not a bad ISO: let ENOENT surface.
  await access(dirname(destAbs));
  try {
    const r = await xorriso(abs, ['-osirrox', 'on', '-iso_rr_pattern', 'off', '-extract', innerPath, tmp]);
    if (r.exitCode !== 0) {
      // xorriso reports a short write with a stale errno ("No such file or directory"),
      // so a full disk is recognised by the short write plus the free space left.
      if (
        /No space left on device|Disk quota exceeded/i.test(r.stderr) ||
        (/Cannot write all bytes/i.test(r.stderr) && (await nearlyFull(dirname(destAbs))))
      ) {
        throw new StrataError(
          'E_NO_SPACE',
          `no space left on the device while extracting ${innerPath} from ${abs} to ${destAbs}; free some space and try again`,
        );
      }
      throw badIso(`cannot extract ${innerPath} from ${abs}: ${lastLines(r.stderr)}`);
    }
    let st;
    try {
      st = await lstat(tmp);
    } catch {
      throw badIso(`cannot extract ${innerPath} from ${abs}: xorriso wrote nothing`);
    }
    if (!st.isFile()) throw badIso(`${innerPath} in ${abs} is not a regular file`);
    // xorriso restores the ISO's modes (often read-only 0444/0555); our copy is ours.
    await chmod(tmp, 0o644);
    await fsyncPath(tmp);
    await renameDurable(tmp, destAbs);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw wrapIoError(e, `extracting ${innerPath} from ${abs}`);
  }
}

/** True when the filesystem holding `dir` has (almost) no free blocks left for us. */
async function nearlyFull(dir: string): Promise<boolean> {
  try {
    const st = await statfs(dir);
    return st.bavail * st.bsize < 64 * 1024;
  } catch {
    return false;
  }
}

/**
 * True when the squashfs holds only LiveOS/rootfs.img (or the older LiveOS/ext3fs.img):
 * the nested form of older Fedora/RHEL live media, a filesystem image inside the
 * squashfs rather than a root tree. `offset` lets the squashfs be read in place
 * inside a bigger file (an ISO). Throws E_NOT_SQUASHFS when it is not readable.
 */
export async function isNestedRootfs(squashfsPath: string, offset = 0): Promise<boolean> {
  // -max-depth 2 keeps the listing to the top two levels even for a full distribution.
  const r = await execa('unsquashfs', ['-o', String(offset), '-l', '-max-depth', '2', '-d', 'R', resolve(squashfsPath)], {
    reject: false,
    stdin: 'ignore',
    env: XORRISO_ENV,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.exitCode !== 0) {
    throw new StrataError('E_NOT_SQUASHFS', `${squashfsPath} is not a readable squashfs: ${lastLines(r.stderr || r.stdout)}`);
  }
  const paths = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('R/'))
    .map((l) => l.slice(2));
  return nestedFromListing(paths);
}

/** Pure part of isNestedRootfs: `paths` are relative paths of the top two levels. */
export function nestedFromListing(paths: string[]): boolean {
  const top = new Set(paths.filter((p) => !p.includes('/')).map(lc));
  top.delete('lost+found');
  const hasImage = paths.some((p) => ['liveos/rootfs.img', 'liveos/ext3fs.img'].includes(lc(p)));
  return hasImage && top.size === 1 && top.has('liveos');
}
