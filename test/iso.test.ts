/**
 * ISO import without mounting: ISOs built here with xorriso in each layout
 * strata knows (Debian live, Ubuntu casper classic and layered, Fedora LiveOS,
 * ALT), plus the ones it must refuse with a clear error.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtemp, rm, readFile, writeFile, stat, readdir } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { execa } from 'execa';
import { inspectIso, extractIsoFile, isNestedRootfs } from '../store/iso.ts';
import {
  chooseCasperLayers,
  pickKernelPair,
  parseXorrisoLsdl,
  parseReportLba,
  contiguousOffset,
  type IsoContents,
} from '../store/iso-layout.ts';
import { StrataError } from '../store/errors.ts';
import { makeIso, makeSquashfs, buildIso, type BuiltIso, type IsoFixture } from './helpers/make-iso.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-iso-test-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Resolves to the StrataError a promise rejects with (fails the test if it resolves). */
async function refusal(p: Promise<unknown>): Promise<StrataError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(StrataError);
    return e as StrataError;
  }
  throw new Error('expected a StrataError, got success');
}

/** Extracts `inner` and returns its bytes; also checks nothing but dest was left in the dir. */
async function extract(built: BuiltIso, inner: string): Promise<Buffer> {
  const dir = await mkdtemp(join(work, 'x-'));
  const dest = join(dir, 'out');
  await extractIsoFile(built.iso, inner, dest);
  expect(await readdir(dir)).toEqual(['out']); // no temp file left behind
  return readFile(dest);
}

/** The marker file inside an extracted squashfs, read with squashfs-tools-ng (no mount). */
async function markerOf(squashfsBytes: Buffer): Promise<string> {
  const f = join(await mkdtemp(join(work, 'sq-')), 'root.sqfs');
  await writeFile(f, squashfsBytes);
  const r = await execa('rdsquashfs', ['-c', '/etc/strata-marker', f]);
  return `${r.stdout}\n`;
}

describe('inspectIso + extractIsoFile on each layout', () => {
  const good: IsoFixture[] = [
    'debian-live',
    'ubuntu-casper',
    'ubuntu-casper-layered',
    'ubuntu-casper-layered-nohint',
    'fedora-liveos',
    'fedora-liveos-loader',
    'alt',
    'alt-altinst',
  ];
  for (const fixture of good) {
    it(`${fixture}: picks kernel, initrd and root squashfs, and extracts them byte for byte`, async () => {
      const built = await makeIso(work, fixture);
      const got = await inspectIso(built.iso);
      expect(got).toEqual(built.expected);
      const want = built.expected as IsoContents;
      for (const inner of [want.kernel, want.initrd, want.rootfs, ...(want.layers ?? [])]) {
        const bytes = await extract(built, inner);
        expect(sha(bytes), inner).toBe(sha(built.files.get(inner) as Buffer));
      }
      // The extracted root squashfs is a real one holding this fixture's marker.
      expect(await markerOf(await extract(built, want.rootfs))).toBe(built.marker);
    });
  }

  it('plain ISO 9660 (no Rock Ridge, no Joliet): upper-cased names are matched case-insensitively', async () => {
    const built = await makeIso(work, 'debian-live-iso9660');
    const got = await inspectIso(built.iso);
    expect(got.layout).toBe('debian-live');
    // Names come back as the ISO spells them (upper case), so they can be extracted.
    expect(got.kernel).toMatch(/^LIVE\/VMLINUZ/);
    expect(got.rootfs).toBe('LIVE/FILESYSTEM.SQUASHFS');
    expect(sha(await extract(built, got.kernel))).toBe(sha(built.files.get('live/vmlinuz-6.1.0-18-amd64') as Buffer));
    expect(sha(await extract(built, got.initrd))).toBe(sha(built.files.get('live/initrd.img-6.1.0-18-amd64') as Buffer));
    expect(await markerOf(await extract(built, got.rootfs))).toBe(built.marker);
  });
});

describe('refusals', () => {
  it('Fedora nested LiveOS/rootfs.img is detected and refused with what to do instead', async () => {
    const built = await makeIso(work, 'fedora-nested');
    const err = await refusal(inspectIso(built.iso));
    expect(err.code).toBe('E_BAD_ISO');
    expect(err.message).toMatch(/LiveOS\/rootfs\.img/);
    expect(err.message).toMatch(/not supported/);
    expect(err.message).toMatch(/loop-mount LiveOS\/rootfs\.img/);
    expect(err.details).toMatchObject({ kernel: 'images/pxeboot/vmlinuz', initrd: 'images/pxeboot/initrd.img' });
  });

  it('an unknown layout is refused with a list of what was found', async () => {
    const built = await makeIso(work, 'unknown');
    const err = await refusal(inspectIso(built.iso));
    expect(err.code).toBe('E_BAD_ISO');
    for (const seen of [
      'arch/',
      'EFI/',
      'boot/',
      'arch/x86_64/airootfs.sfs',
      'arch/boot/x86_64/vmlinuz-linux',
      'arch/boot/x86_64/initramfs-linux.img',
    ]) {
      expect(err.message).toContain(seen);
    }
  });

  it('the list of what was found is capped', async () => {
    const files = new Map<string, Buffer>();
    for (let i = 0; i < 40; i++) files.set(`dir${String(i).padStart(2, '0')}/x.img`, Buffer.from('x'));
    const iso = await buildIso(work, 'many', files);
    const err = await refusal(inspectIso(iso));
    expect(err.code).toBe('E_BAD_ISO');
    expect(err.message).toContain('dir00/');
    expect(err.message).not.toContain('dir39/x.img');
    expect(err.message).toMatch(/\(and \d+ more\)/);
  });

  it('random bytes named .iso, an empty file and a missing file are E_BAD_ISO', async () => {
    const random = join(work, 'random.iso');
    await writeFile(random, randomBytes(200 * 1024));
    const empty = join(work, 'empty.iso');
    await writeFile(empty, '');
    for (const p of [random, empty, join(work, 'missing.iso')]) {
      const err = await refusal(inspectIso(p));
      expect(err.code).toBe('E_BAD_ISO');
      const err2 = await refusal(extractIsoFile(p, 'live/vmlinuz', join(work, 'never')));
      expect(err2.code).toBe('E_BAD_ISO');
    }
    await expect(stat(join(work, 'missing.iso'))).rejects.toThrow(); // nothing was created
    await expect(stat(join(work, 'never'))).rejects.toThrow();
  });

  it('extracting a missing path or a directory is refused and leaves nothing behind', async () => {
    const built = await makeIso(work, 'ubuntu-casper');
    const dir = await mkdtemp(join(work, 'bad-'));
    for (const inner of ['casper/nope', 'casper']) {
      const err = await refusal(extractIsoFile(built.iso, inner, join(dir, 'out')));
      expect(err.code).toBe('E_BAD_ISO');
    }
    expect(await readdir(dir)).toEqual([]);
  });

  it('extracting over an existing dest replaces it completely', async () => {
    const built = await makeIso(work, 'alt-altinst');
    const dest = join(await mkdtemp(join(work, 'over-')), 'k');
    await writeFile(dest, Buffer.alloc(100_000, 7)); // longer than the kernel: no stale tail may stay
    await extractIsoFile(built.iso, 'syslinux/alt0/vmlinuz', dest);
    expect(sha(await readFile(dest))).toBe(sha(built.files.get('syslinux/alt0/vmlinuz') as Buffer));
  });
});

describe('disk full', () => {
  it('extracting onto a full filesystem is E_NO_SPACE and leaves no partial file', async () => {
    const big = randomBytes(256 * 1024); // incompressible, and 16x the room below
    const iso = await buildIso(work, 'big', new Map([['LiveOS/squashfs.img', big]]));
    const small = await mkdtemp(join(work, 'tmpfs-'));
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'strata-iso-test', small]);
    try {
      const err = await refusal(extractIsoFile(iso, 'LiveOS/squashfs.img', join(small, 'rootfs.sqfs')));
      expect(err.code).toBe('E_NO_SPACE');
      expect(await readdir(small)).toEqual([]);
    } finally {
      await execa('umount', [small]);
    }
  });
});

describe('isNestedRootfs', () => {
  it('tells a nested LiveOS/rootfs.img squashfs from a root tree, and refuses non-squashfs', async () => {
    const nested = join(work, 'nested.sqfs');
    await writeFile(nested, await makeSquashfs({ 'LiveOS/rootfs.img': Buffer.alloc(4096) }));
    const tree = join(work, 'tree.sqfs');
    await writeFile(tree, await makeSquashfs({ 'etc/hostname': 'x\n', 'LiveOS/rootfs.img': 'a root tree that happens to have this\n' }));
    expect(await isNestedRootfs(nested)).toBe(true);
    expect(await isNestedRootfs(tree)).toBe(false);
    const junk = join(work, 'junk.sqfs');
    await writeFile(junk, randomBytes(8192));
    expect((await refusal(isNestedRootfs(junk))).code).toBe('E_NOT_SQUASHFS');
  });
});

describe('pure decisions', () => {
  it('pickKernelPair pairs kernel and initrd by version, newest first, plain names win', () => {
    expect(
      pickKernelPair([
        'live/vmlinuz-6.1.0-9-amd64',
        'live/initrd.img-6.1.0-9-amd64',
        'live/vmlinuz-6.1.0-18-amd64',
        'live/initrd.img-6.1.0-18-amd64',
      ]),
    ).toEqual({ kernel: 'live/vmlinuz-6.1.0-18-amd64', initrd: 'live/initrd.img-6.1.0-18-amd64' });
    expect(pickKernelPair(['casper/vmlinuz.efi', 'casper/initrd.lz'])).toEqual({
      kernel: 'casper/vmlinuz.efi',
      initrd: 'casper/initrd.lz',
    });
    expect(pickKernelPair(['casper/vmlinuz-x', 'casper/vmlinuz', 'casper/initrd.gz', 'casper/initrd'])).toEqual({
      kernel: 'casper/vmlinuz',
      initrd: 'casper/initrd',
    });
    expect(pickKernelPair(['LIVE/VMLINUZ_6_1_0_18', 'LIVE/INITRD_IMG_6_1_0_18', 'LIVE/INITRD_IMG_6_1_0_9'])).toEqual({
      kernel: 'LIVE/VMLINUZ_6_1_0_18',
      initrd: 'LIVE/INITRD_IMG_6_1_0_18',
    });
    expect(pickKernelPair(['live/filesystem.squashfs'])).toBeUndefined();
  });

  it('chooseCasperLayers follows layerfs-path, else the longest chain without side layers', () => {
    const server = [
      'ubuntu-server-minimal.squashfs',
      'ubuntu-server-minimal.ubuntu-server.squashfs',
      'ubuntu-server-minimal.ubuntu-server.installer.squashfs',
      'ubuntu-server-minimal.ubuntu-server.installer.generic.squashfs',
      'ubuntu-server-minimal.ubuntu-server.installer.generic-hwe.squashfs',
    ];
    expect(chooseCasperLayers(server)).toEqual(server.slice(0, 4));
    expect(chooseCasperLayers(server, 'ubuntu-server-minimal.ubuntu-server.installer.generic-hwe.squashfs')).toEqual([
      ...server.slice(0, 3),
      server[4],
    ]);
    // A hint naming a layer whose chain is broken falls back to the heuristic.
    expect(chooseCasperLayers(['a.squashfs', 'a.b.squashfs'], '/casper/a.x.b.squashfs')).toEqual(['a.squashfs', 'a.b.squashfs']);
    expect(chooseCasperLayers(['x.y.squashfs', 'z.w.squashfs'])).toBeUndefined();
  });

  it('report_lba extents give an in-place offset only when contiguous', () => {
    const out = [
      'Report layout: xt , Startlba ,   Blocks , Filesize , ISO image path',
      "File data lba:  0 ,       35 ,  2097151 , 4294965248 , '/LiveOS/squashfs.img'",
      "File data lba:  1 ,  2097186 ,       10 ,     20480 , '/LiveOS/squashfs.img'",
    ].join('\n');
    const ext = parseReportLba(out);
    expect(ext).toEqual([
      { lba: 35, blocks: 2097151, size: 4294965248 },
      { lba: 2097186, blocks: 10, size: 20480 },
    ]);
    expect(contiguousOffset(ext)).toBe(35 * 2048);
    expect(contiguousOffset([ext[0], { ...ext[1], lba: 9_999_999 }])).toBeUndefined();
    expect(contiguousOffset([])).toBeUndefined();
  });

  it('parseXorrisoLsdl reads quoted names, types and sizes', () => {
    const out = [
      "drwxr-xr-x    1 0        0               0 Nov 21 23:54 '/'",
      "drwxr-xr-x    1 0        0               0 Nov 21 23:54 '/a'\"'\"'b'",
      "-rw-r--r--    1 0        0            4096 Nov 21  2020 '/a'\"'\"'b/x'\"'\"'y z'",
      "lrwxrwxrwx    1 0        0               0 Nov 21 23:54 '/lnk' -> 'x'",
    ].join('\n');
    expect(parseXorrisoLsdl(out)).toEqual([
      { path: "a'b", type: 'dir', size: 0 },
      { path: "a'b/x'y z", type: 'file', size: 4096 },
      { path: 'lnk', type: 'symlink', size: 0 },
    ]);
  });
});
