/**
 * Baking with the real tools: GNU tar of a real upper directory -> bakeTar ->
 * tar2sqfs image, loop-mounted and compared with the source; and every kind of
 * bad input refused with its code, leaving no temp file behind.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { PassThrough } from 'node:stream';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bakeTar, isBakeTempName, type BakeOptions } from '../store/bake.ts';
import { isStrataError } from '../store/errors.ts';
import { listSquashfs } from '../store/squashfs.ts';
import { packTar, paxEntry, rawEntry, rawTar, sh, snapshotTree, tempDir, withSquashfsMount } from './helpers/bake-util.ts';

let work: string;
let tmp: string;
let upper: string;
let upperTar: string;

const opts = (extra: Partial<BakeOptions> = {}): BakeOptions => ({
  tmpDir: tmp,
  compressor: 'zstd',
  level: 3,
  maxUncompressedBytes: 1 << 30,
  maxEntries: 100_000,
  ...extra,
});

/** Bakes and expects a StrataError with `code`; also checks no temp image is left. */
async function expectRefused(input: Buffer | string, code: string, extra: Partial<BakeOptions> = {}, message?: RegExp) {
  const path = typeof input === 'string' ? input : join(work, `in-${randomBytes(4).toString('hex')}`);
  if (typeof input !== 'string') await writeFile(path, input);
  const err = await bakeTar(path, opts(extra)).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, 'bake should have been refused').not.toBeNull();
  expect(isStrataError(err) ? err.code : String(err)).toBe(code);
  if (message) expect((err as Error).message).toMatch(message);
  expect(await readdir(extra.tmpDir ?? tmp)).toEqual([]);
  return err as Error;
}

beforeAll(async () => {
  work = await tempDir();
  tmp = join(work, 'tmp');
  upper = join(work, 'upper');
  await sh(`mkdir -p ${tmp} ${upper}`);
  // A real overlay upper directory with everything overlayfs and a root fs use.
  await sh(
    `
    mkdir -p etc usr/bin opaque/sub var/empty "long/${'d'.repeat(60)}/${'e'.repeat(60)}"
    echo hostname-1 > etc/hostname
    printf 'root:x:0:0::/root:/bin/sh\\n' > etc/passwd
    chmod 0640 etc/passwd; chown 0:42 etc/passwd
    head -c 3000000 /dev/urandom > usr/bin/big
    seq 1 100000 > usr/bin/text
    : > usr/bin/empty
    chown 1234:5678 usr/bin/text; chmod 0751 usr/bin/text
    cp /bin/true usr/bin/suid; chmod 4755 usr/bin/suid
    ln usr/bin/text usr/bin/text-hardlink
    ln -s /etc/hostname etc/abs-link
    ln -s ../usr/bin/text etc/rel-link
    mknod etc/deleted c 0 0
    mkfifo var/fifo
    setfattr -n trusted.overlay.opaque -v y opaque
    echo inside > opaque/sub/file
    setfattr -n user.comment -v 'hello world' etc/hostname
    setfattr -n user.bin -v 0x00ff10 usr/bin/empty
    echo long > "long/${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(80)}"
    echo utf > "etc/grüße-файл"
    chmod 2775 var/empty
    touch -h -d @1500000000 etc/abs-link
    touch -d @1600000000 etc/hostname usr/bin/big var/fifo
    touch -d @1700000000 opaque/sub opaque etc usr/bin usr var .
  `,
    upper,
  );
  upperTar = join(work, 'upper.tar');
  await execa('tar', ['--xattrs', '--xattrs-include=*', '-C', upper, '-cf', upperTar, '.']);
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('bakeTar with a real upper directory', () => {
  it('keeps types, modes, owners, mtimes, contents, links, xattrs, whiteouts and opaque dirs', async () => {
    const img = await bakeTar(upperTar, opts());
    try {
      expect(img.path.startsWith(`${tmp}/`)).toBe(true);
      expect(isBakeTempName(basename(img.path))).toBe(true);
      expect(img.digest).toMatch(/^[0-9a-f]{64}$/);
      expect(img.size).toBe((await stat(img.path)).size);
      expect(img.uncompressedBytes).toBe((await stat(upperTar)).size);
      expect((await readFile(img.path)).subarray(0, 4).toString('latin1')).toBe('hsqs');

      const source = await snapshotTree(upper);
      const baked = await withSquashfsMount(img.path, (dir) => snapshotTree(dir));
      expect(baked).toEqual(source);

      // Spot checks of what the overlay needs, so a failure says what broke.
      expect(baked['etc/deleted']).toMatchObject({ type: 'char', rdev: '0:0' });
      expect(baked.opaque!.xattrs['trusted.overlay.opaque']).toBe('0x79');
      expect(baked['usr/bin/text']).toMatchObject({ uid: 1234, gid: 5678, mode: 0o751, links: ['usr/bin/text', 'usr/bin/text-hardlink'] });
      expect(baked['usr/bin/suid']!.mode).toBe(0o4755);
      expect(baked['etc/abs-link']).toMatchObject({ type: 'symlink', target: '/etc/hostname', mtime: 1500000000 });
      expect(baked['etc/hostname']!.xattrs['user.comment']).toBe('0x68656c6c6f20776f726c64');
      expect(baked['var/fifo']!.type).toBe('fifo');

      // The entry list says the same.
      const byPath = new Map(img.entries.map((e) => [e.path, e]));
      expect(byPath.size).toBe(Object.keys(source).length);
      expect(byPath.get('etc/deleted')).toMatchObject({ type: 'char', whiteout: true, devmajor: 0, devminor: 0 });
      expect(byPath.get('opaque')).toMatchObject({ type: 'dir', opaque: true });
      expect(byPath.get('usr/bin/text-hardlink')).toMatchObject({ type: 'hardlink', linkname: 'usr/bin/text' });
      expect(byPath.get('usr/bin/empty')!.xattrs).toEqual({ 'user.bin': '0sAP8Q' });
      expect(byPath.get('')).toMatchObject({ type: 'dir', mtime: 1700000000 });
      expect(byPath.has('etc/grüße-файл')).toBe(true);
      expect(img.warnings).toEqual([]);
    } finally {
      await rm(img.path, { force: true });
    }
  });

  it('gives the same digest for the same content: twice, any thread count, gnu or pax tar, any compression', async () => {
    const paths: string[] = [];
    try {
      const bake = async (input: string | NodeJS.ReadableStream, extra: Partial<BakeOptions> = {}) => {
        const r = await bakeTar(input, opts(extra));
        paths.push(r.path);
        return r.digest;
      };
      const first = await bake(upperTar);
      expect(await bake(upperTar)).toBe(first);
      expect(await bake(upperTar, { jobs: 1 })).toBe(first);
      expect(await bake(upperTar, { jobs: 4 })).toBe(first);

      const paxTar = join(work, 'upper-pax.tar');
      await execa('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '-C', upper, '-cf', paxTar, '.']);
      expect(await bake(paxTar)).toBe(first);

      for (const [cmd, ext] of [
        ['zstd', 'zst'],
        ['gzip', 'gz'],
        ['xz', 'xz'],
      ] as const) {
        const out = `${upperTar}.${ext}`;
        await sh(`${cmd} -c ${upperTar} > ${out}`);
        expect(await bake(out), ext).toBe(first);
      }
      // gzip with trailing zeros (tape blocking): gzip warns, the stream is complete.
      await sh(`(gzip -c ${upperTar}; head -c 4096 /dev/zero) > ${upperTar}.z.gz`);
      expect(await bake(`${upperTar}.z.gz`)).toBe(first);
      // A stream instead of a path.
      expect(await bake(createReadStream(`${upperTar}.zst`))).toBe(first);

      // A different level is a different image; the file names do not matter.
      expect(await bake(upperTar, { level: 1 })).not.toBe(first);
      expect(new Set(paths).size).toBe(paths.length);
    } finally {
      for (const p of paths) await rm(p, { force: true });
    }
  });

  it('uses the asked compressor and tar2sqfs defaults when no level is given', async () => {
    for (const compressor of ['gzip', 'lz4', 'xz', 'zstd'] as const) {
      const img = await bakeTar(upperTar, opts({ compressor, level: null }));
      try {
        const r = await execa('unsquashfs', ['-s', img.path]);
        expect(r.stdout).toContain(`Compression ${compressor}`);
      } finally {
        await rm(img.path, { force: true });
      }
    }
  });

  it('warns that POSIX ACLs are lost and still bakes', async () => {
    const tar = rawTar(
      rawEntry({ name: './', type: '5', mode: 0o755 }),
      paxEntry({ 'SCHILY.xattr.system.posix_acl_access': Buffer.from([2, 0, 0, 0, 1, 0, 6, 0]), 'SCHILY.xattr.user.k': 'v' }),
      rawEntry({ name: 'a', data: Buffer.from('x\n') }),
    );
    const path = join(work, 'acl.tar');
    await writeFile(path, tar);
    const img = await bakeTar(path, opts());
    try {
      expect(img.warnings).toEqual(['squashfs cannot store POSIX ACLs: 1 entries lose them']);
      expect(img.entries.find((e) => e.path === 'a')!.xattrs).toEqual({ 'user.k': 'v' });
    } finally {
      await rm(img.path, { force: true });
    }
  });
});

describe('bakeTar accepts odd but valid tars', () => {
  it('GNU long names, PAX overrides, base-256 ids, fractional and negative mtimes, non-UTF-8 names, hardlink chains', async () => {
    const base256 = (n: number) => {
      const b = Buffer.alloc(8);
      b[0] = 0x80;
      b.writeUInt32BE(n, 4);
      return b;
    };
    const uidHeader = rawEntry({ name: 'big-uid', data: Buffer.from('u') });
    base256(3_000_000_000).copy(uidHeader, 108);
    // Re-checksum after patching the uid field.
    uidHeader.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += uidHeader[i]!;
    uidHeader.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
    const long = 'x'.repeat(150);
    const tar = rawTar(
      rawEntry({ name: './', type: '5', mode: 0o755, mtime: 1_234_567_890 }),
      rawEntry({ name: '././@LongLink', type: 'L', data: Buffer.from(`${long}\0`), format: 'gnu' }),
      rawEntry({ name: long.slice(0, 99), data: Buffer.from('long\n'), format: 'gnu' }),
      paxEntry({ path: 'pax-name', mtime: '1600000000.75', 'SCHILY.xattr.user.a': 'b' }),
      rawEntry({ name: 'header-name', data: Buffer.from('p') }),
      paxEntry({ mtime: '-5' }),
      rawEntry({ name: 'old', data: Buffer.from('o') }),
      uidHeader,
      rawEntry({ name: Buffer.from([0x63, 0x61, 0x66, 0xe9]), data: Buffer.from('latin1') }),
      rawEntry({ name: 'h1', type: '1', linkname: 'pax-name' }),
      rawEntry({ name: 'h2', type: '1', linkname: './h1' }),
    );
    const path = join(work, 'odd.tar');
    await writeFile(path, tar);
    const img = await bakeTar(path, opts());
    try {
      const listed = await listSquashfs(img.path);
      const m = new Map(listed.map((e) => [e.path, e]));
      expect(m.get('')).toMatchObject({ type: 'dir', mtime: 1_234_567_890 });
      expect(m.get(long)).toMatchObject({ type: 'file', size: 5 });
      // sqfs2tar lists names sorted, so the first name of a hardlink group
      // (here 'h1') carries the inode and the others link to it.
      expect(m.get('h1')).toMatchObject({ type: 'file', mtime: 1_600_000_000, xattrs: { 'user.a': 'b' } });
      expect(m.get('pax-name')).toMatchObject({ type: 'hardlink', linkname: 'h1' });
      expect(img.entries.find((e) => e.path === 'pax-name')).toMatchObject({ type: 'file', mtime: 1_600_000_000 });
      expect(m.has('header-name')).toBe(false);
      expect(m.get('old')!.mtime).toBe(0);
      expect(m.get('big-uid')!.uid).toBe(3_000_000_000);
      expect(m.get('caf\uFFFD')).toMatchObject({ type: 'file', size: 6 });
      expect(img.warnings).toEqual(['1 paths are not valid UTF-8; they are listed with replacement characters']);
      await withSquashfsMount(img.path, async (dir) => {
        const a = await stat(join(dir, 'pax-name'));
        expect((await stat(join(dir, 'h2'))).ino).toBe(a.ino);
        expect(a.nlink).toBe(3);
        expect((await readdir(dir)).some((n) => Buffer.from(n, 'latin1').length > 0 && n.startsWith('caf'))).toBe(true);
      });
    } finally {
      await rm(img.path, { force: true });
    }
  });
});

describe('bakeTar refuses bad input', () => {
  it('random bytes: not a tar archive', async () => {
    await expectRefused(randomBytes(1 << 20), 'E_BAD_TAR', {}, /not a tar archive/);
  });

  it('empty input', async () => {
    await expectRefused(Buffer.alloc(0), 'E_BAD_TAR', {}, /empty/);
  });

  it('a truncated zstd stream', async () => {
    const zst = join(work, 'trunc.tar.zst');
    await sh(`zstd -q -c ${upperTar} > ${zst}`);
    const whole = await readFile(zst);
    await expectRefused(whole.subarray(0, Math.floor(whole.length / 2)), 'E_BAD_COMPRESSION');
  });

  it('a truncated tar', async () => {
    const whole = await readFile(upperTar);
    await expectRefused(whole.subarray(0, 1_000_000), 'E_BAD_TAR', {}, /truncated/);
  });

  it("a '../' path", async () => {
    const tar = await packTar([
      { name: 'ok', data: 'x' },
      { name: 'a/../../escape.txt', data: 'evil' },
    ]);
    await expectRefused(tar, 'E_UNSAFE_PATH', {}, /'\.\.'/);
  });

  it('an absolute path', async () => {
    await expectRefused(await packTar([{ name: '/etc/cron.d/evil', data: 'x' }]), 'E_UNSAFE_PATH', {}, /absolute/);
  });

  it('a hardlink to ../../etc/passwd (tar2sqfs would double-free)', async () => {
    const tar = await packTar([{ name: 'x', type: 'link', linkname: '../../etc/passwd' }]);
    await expectRefused(tar, 'E_UNSAFE_PATH', {}, /hardlink/);
  });

  it('hardlinks that are absolute, to nothing earlier, or to a directory', async () => {
    await expectRefused(await packTar([{ name: 'x', type: 'link', linkname: '/etc/passwd' }]), 'E_UNSAFE_PATH');
    await expectRefused(
      await packTar([
        { name: 'x', type: 'link', linkname: 'later' },
        { name: 'later', data: 'x' },
      ]),
      'E_UNSAFE_PATH',
      {},
      /earlier/,
    );
    await expectRefused(
      await packTar([
        { name: 'd', type: 'directory' },
        { name: 'x', type: 'link', linkname: 'd' },
      ]),
      'E_UNSAFE_PATH',
      {},
      /directory/,
    );
  });

  it('a directory header carrying data (a parser-differential smuggling attempt)', async () => {
    // Other readers skip 512 bytes of "data"; tar2sqfs would parse them as the next header.
    const hidden = rawEntry({ name: 'etc/shadow', data: Buffer.from('owned\n') });
    const tar = rawTar(rawEntry({ name: 'd', type: '5', size: hidden.length, data: hidden }));
    await expectRefused(tar, 'E_BAD_TAR', {}, /dir entry with \d+ bytes of data/);
  });

  it('duplicate paths, NUL bytes, over-long paths, global headers, sparse files, unknown types', async () => {
    await expectRefused(
      await packTar([
        { name: 'a', data: '1' },
        { name: './a', data: '2' },
      ]),
      'E_BAD_TAR',
      {},
      /duplicate/,
    );
    await expectRefused(rawTar(paxEntry({ path: Buffer.from('ok\0../../x') }), rawEntry({ name: 'a' })), 'E_UNSAFE_PATH', {}, /NUL/);
    await expectRefused(
      rawTar(paxEntry({ path: `${'a/'.repeat(2100)}b` }), rawEntry({ name: 'a' })),
      'E_UNSAFE_PATH',
      {},
      /longer than 4096/,
    );
    await expectRefused(rawTar(paxEntry({ path: '../x' }, 'g'), rawEntry({ name: 'a' })), 'E_BAD_TAR', {}, /global/);
    await expectRefused(
      rawTar(paxEntry({ 'GNU.sparse.name': '../x', 'GNU.sparse.major': '1' }), rawEntry({ name: 'a' })),
      'E_BAD_TAR',
      {},
      /sparse/,
    );
    await expectRefused(rawTar(rawEntry({ name: 'a', type: 'V' })), 'E_BAD_TAR', {}, /unsupported/);
    await expectRefused(
      rawTar(rawEntry({ name: 'f', data: Buffer.from('x') }), rawEntry({ name: 'f/g', data: Buffer.from('y') })),
      'E_BAD_TAR',
      {},
      /not a directory/,
    );
  });

  it('a zstd bomb beyond the size limit', async () => {
    const bomb = join(work, 'bomb.tar.zst');
    await sh(`mkdir -p bomb && head -c 50000000 /dev/zero > bomb/zeros && tar -C bomb -cf - . | zstd -q -c > ${bomb}`, work);
    expect((await stat(bomb)).size).toBeLessThan(100_000);
    await expectRefused(bomb, 'E_TOO_LARGE', { maxUncompressedBytes: 10_000_000 }, /more than 10000000 bytes/);
  });

  it('more entries than allowed', async () => {
    await expectRefused(upperTar, 'E_TOO_LARGE', { maxEntries: 5 }, /more than 5 entries/);
  });

  it('a full disk (small tmpfs as tmpDir): E_NO_SPACE and no temp file left', async () => {
    const small = await tempDir('strata-bake-full-');
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', small]);
    try {
      const src = join(work, 'random');
      await sh(`mkdir -p ${src} && head -c 20000000 /dev/urandom > ${src}/noise`);
      const tar = join(work, 'random.tar');
      await execa('tar', ['-C', src, '-cf', tar, '.']);
      await expectRefused(tar, 'E_NO_SPACE', { tmpDir: small });
    } finally {
      await execa('umount', [small]);
      await rm(small, { recursive: true, force: true });
    }
  });

  it('device nodes, setuid files and capabilities under a strict policy; whiteouts pass', async () => {
    // A policy a profile could choose: no device nodes, setuid files or capabilities.
    const strict = { policy: { allowDevices: false, allowSetuid: false, allowCapabilities: false } };
    await expectRefused(
      await packTar([{ name: 'dev/mem', type: 'character-device', devmajor: 1, devminor: 1 }]),
      'E_FORBIDDEN',
      strict,
      /device node/,
    );
    await expectRefused(await packTar([{ name: 'sda', type: 'block-device', devmajor: 8, devminor: 0 }]), 'E_FORBIDDEN', strict);
    await expectRefused(await packTar([{ name: 'sh', data: 'x', mode: 0o4755 }]), 'E_FORBIDDEN', strict, /setuid/);
    await expectRefused(
      await packTar([{ name: 'ping', data: 'x', pax: { 'SCHILY.xattr.security.capability': 'caps' } }]),
      'E_FORBIDDEN',
      strict,
      /capabilities/,
    );
    // The real upper dir has a setuid binary: refused for a push, fine for an admin import (tested above).
    await expectRefused(upperTar, 'E_FORBIDDEN', strict);

    const ok = join(work, 'whiteout.tar');
    await writeFile(
      ok,
      await packTar([
        { name: 'gone', type: 'character-device', devmajor: 0, devminor: 0 },
        { name: 'dir', type: 'directory', mode: 0o2775 },
      ]),
    );
    const img = await bakeTar(ok, opts(strict));
    await rm(img.path, { force: true });
    expect(img.entries.map((e) => [e.path, !!e.whiteout])).toEqual([
      ['gone', true],
      ['dir', false],
    ]);
  });

  it('an abort in the middle of a bake kills tar2sqfs and removes the temp image', async () => {
    const input = new PassThrough();
    const ac = new AbortController();
    const whole = await readFile(upperTar);
    input.write(whole.subarray(0, 2_000_000));
    const p = bakeTar(input, opts({ signal: ac.signal }));
    await new Promise((r) => setTimeout(r, 300));
    ac.abort(new Error('stop now'));
    await expect(p).rejects.toThrow('stop now');
    expect(await readdir(tmp)).toEqual([]);
    const ps = await execa('pgrep', ['-f', `tar2sqfs.*${tmp}`], { reject: false });
    expect(ps.stdout).toBe('');
  });

  it('a missing input file', async () => {
    await expectRefused(join(work, 'does-not-exist.tar'), 'E_BAD_SOURCE');
  });
});
