/**
 * Reading squashfs images without mounting: the superblock check, the
 * listing (through sqfs2tar) and the tar stream.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bakeTar } from '../store/bake.ts';
import { isStrataError } from '../store/errors.ts';
import { assertSquashfs, listSquashfs, squashfsToTar } from '../store/squashfs.ts';
import type { LayerEntry } from '../store/types.ts';
import { sh, tempDir } from './helpers/bake-util.ts';

let work: string;
let upperTar: string;
let image: string;
let bakedEntries: LayerEntry[];

async function codeOf(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, 'should have failed').not.toBeNull();
  return { code: isStrataError(e) ? e.code : String(e), message: (e as Error).message };
}

const byPath = (a: LayerEntry, b: LayerEntry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

beforeAll(async () => {
  work = await tempDir('strata-sqfs-');
  await sh(
    `
    mkdir -p up/etc up/opaque/x up/usr/lib
    echo one > up/etc/a
    ln up/etc/a up/etc/a-link
    ln -s a up/etc/sym
    mknod up/etc/gone c 0 0
    setfattr -n trusted.overlay.opaque -v y up/opaque
    setfattr -n user.note -v text up/etc/a
    head -c 500000 /dev/urandom > up/usr/lib/blob
    chown 7:8 up/usr/lib/blob; chmod 0600 up/usr/lib/blob
    touch -d @1650000000 up/etc/a up/usr/lib/blob up/etc up/opaque/x up/opaque up/usr/lib up/usr up
  `,
    work,
  );
  upperTar = join(work, 'up.tar');
  await execa('tar', ['--xattrs', '--xattrs-include=*', '-C', join(work, 'up'), '-cf', upperTar, '.']);
  const img = await bakeTar(upperTar, { tmpDir: work, compressor: 'zstd', level: 3, maxUncompressedBytes: 1 << 30, maxEntries: 1000 });
  image = join(work, 'layer.sqfs');
  await execa('mv', [img.path, image]);
  bakedEntries = img.entries;
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('assertSquashfs', () => {
  it('accepts a baked image', async () => {
    await expect(assertSquashfs(image)).resolves.toBeUndefined();
  });

  it('refuses anything else with E_NOT_SQUASHFS and says why', async () => {
    const notSqfs = join(work, 'not.sqfs');
    await writeFile(notSqfs, randomBytes(4096));
    let r = await codeOf(assertSquashfs(notSqfs));
    expect(r.code).toBe('E_NOT_SQUASHFS');
    expect(r.message).toMatch(/not a squashfs image.*magic 'hsqs'/);

    r = await codeOf(assertSquashfs(upperTar));
    expect(r.code).toBe('E_NOT_SQUASHFS');

    const empty = join(work, 'empty');
    await writeFile(empty, '');
    expect((await codeOf(assertSquashfs(empty))).message).toMatch(/too short/);

    expect((await codeOf(assertSquashfs(work))).message).toMatch(/not a regular file/);
    expect((await codeOf(assertSquashfs(join(work, 'missing')))).code).toBe('E_NOT_SQUASHFS');

    const half = join(work, 'half.sqfs');
    const whole = await readFile(image);
    await writeFile(half, whole.subarray(0, whole.length >> 1));
    expect((await codeOf(assertSquashfs(half))).message).toMatch(/truncated/);
  });
});

describe('listSquashfs', () => {
  it("lists a baked layer exactly as the bake listed the tar's entries", async () => {
    const listed = await listSquashfs(image);
    expect([...listed].sort(byPath)).toEqual([...bakedEntries].sort(byPath));
    const m = new Map(listed.map((e) => [e.path, e]));
    expect(m.get('')).toMatchObject({ type: 'dir', mtime: 1650000000 });
    expect(m.get('etc/gone')).toMatchObject({ type: 'char', whiteout: true });
    expect(m.get('opaque')).toMatchObject({ type: 'dir', opaque: true, xattrs: { 'trusted.overlay.opaque': 'y' } });
    expect(m.get('etc/a')).toMatchObject({ type: 'file', size: 4, xattrs: { 'user.note': 'text' } });
    expect(m.get('etc/a-link')).toMatchObject({ type: 'hardlink', linkname: 'etc/a' });
    expect(m.get('etc/sym')).toMatchObject({ type: 'symlink', linkname: 'a' });
    expect(m.get('usr/lib/blob')).toMatchObject({ type: 'file', size: 500000, uid: 7, gid: 8, mode: 0o600, mtime: 1650000000 });
  });

  it('marks whiteouts and opaque dirs in an image made by mksquashfs too', async () => {
    const other = join(work, 'mk.sqfs');
    await execa('mksquashfs', [join(work, 'up'), other, '-quiet', '-noappend', '-comp', 'gzip']);
    const m = new Map((await listSquashfs(other)).map((e) => [e.path, e]));
    expect(m.get('etc/gone')?.whiteout).toBe(true);
    expect(m.get('opaque')?.opaque).toBe(true);
    expect(m.get('etc/a')?.whiteout).toBeUndefined();
  });

  it('fails with E_CORRUPT on a damaged image instead of returning a short list', async () => {
    const bad = join(work, 'damaged.sqfs');
    const buf = await readFile(image);
    // Keep the superblock, garble everything after it.
    randomBytes(buf.length - 96).copy(buf, 96);
    await writeFile(bad, buf);
    const r = await codeOf(listSquashfs(bad));
    expect(r.code).toBe('E_CORRUPT');
  });
});

describe('squashfsToTar', () => {
  it('streams a tar that bakes back into the same image', async () => {
    const tarPath = join(work, 'roundtrip.tar');
    const fh = await open(tarPath, 'w');
    for await (const chunk of squashfsToTar(image)) await fh.write(chunk as Buffer);
    await fh.close();
    const again = await bakeTar(tarPath, { tmpDir: work, compressor: 'zstd', level: 3, maxUncompressedBytes: 1 << 30, maxEntries: 1000 });
    try {
      expect(again.digest).toBe((await execa('sha256sum', [image])).stdout.split(' ')[0]);
    } finally {
      await rm(again.path, { force: true });
    }
  });

  it('errors the stream when the image cannot be read', async () => {
    const s = squashfsToTar(join(work, 'missing.sqfs'));
    const r = await codeOf(
      (async () => {
        for await (const _ of s) {
          /* drain */
        }
      })(),
    );
    expect(r.code).toBe('E_CORRUPT');
  });
});
