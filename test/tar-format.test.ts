// The byte-level tar format shared by the checker of pushed tars and flatten:
// numbers (octal, GNU base-256), checksums, PAX records, paths, the canonical
// header encoder. Round trips through our own readers and through real GNU tar.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TarParser, type TarHeader } from '../store/tar-parser.ts';
import { TarChecker } from '../store/tar-check.ts';
import { ALLOW_ALL } from '../store/tar-rules.ts';
import { BlockCollector, checksumMatches, decodeHeader, normalizeTarPath, parseNumberField, parsePax } from '../store/tar-format.ts';
import { encodeEntryHeader, paxRecord, ustarBlock, type EntryFields, type HeaderStyle } from '../protocol/tar-encode.ts';

const CHECKER: HeaderStyle = { dirSlash: false, longNameMarker: true, paxHeaderCopiesEntry: false };
const FLATTEN: HeaderStyle = { dirSlash: true, longNameMarker: false, paxHeaderCopiesEntry: true };

let tmp = '';
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'strata-tarfmt-'));
});
afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

const field = (bytes: number[] | string): Buffer => (typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : Buffer.from(bytes));

function entry(over: Partial<EntryFields>): EntryFields {
  return {
    path: Buffer.from('etc/hostname'),
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 1_600_000_000,
    linkname: Buffer.alloc(0),
    devmajor: 0,
    devminor: 0,
    xattrs: [],
    ...over,
  };
}

/** Header bytes + data + end-of-archive: a complete tar. */
function tarOf(parts: { header: Buffer; data?: Buffer }[]): Buffer {
  const out: Buffer[] = [];
  for (const p of parts) {
    out.push(p.header);
    if (p.data) out.push(p.data, Buffer.alloc((512 - (p.data.length % 512)) % 512));
  }
  out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

/** The headers TarParser (flatten's reader) sees in a tar. */
function parseAll(tar: Buffer): TarHeader[] {
  const seen: TarHeader[] = [];
  const p = new TarParser({
    entry: (h) => {
      seen.push(h);
      return false;
    },
    data: () => {},
    bodyEnd: () => {},
  });
  p.push(tar);
  p.finish();
  return seen;
}

describe('collecting blocks from chunks of any size', () => {
  it('gives a block inside one chunk as a view, one split over chunks assembled, and says where to go on', () => {
    const data = Buffer.from(Array.from({ length: 1500 }, (_, i) => i % 251));
    const c = new BlockCollector();
    const whole = c.take(data, 100, 512)!;
    expect(whole.equals(data.subarray(100, 612))).toBe(true);
    expect(whole.buffer).toBe(data.buffer); // no copy
    expect(c.next).toBe(612);
    // The next block arrives one byte at a time.
    let got: Buffer | null = null;
    for (let i = 612; i < 1124; i++) {
      expect(got).toBeNull();
      got = c.take(data.subarray(i, i + 1), 0, 512);
      expect(c.next).toBe(1);
      expect(c.partial).toBe(got ? 0 : i - 611);
    }
    expect(got!.equals(data.subarray(612, 1124))).toBe(true);
    // A tail too short for a block is kept until the rest comes.
    expect(c.take(data, 1124, 512)).toBeNull();
    expect(c.partial).toBe(376);
    expect(
      c
        .take(Buffer.alloc(200, 7), 0, 512)!
        .subarray(370, 382)
        .equals(Buffer.concat([data.subarray(1494), Buffer.alloc(6, 7)])),
    ).toBe(true);
    expect(c.next).toBe(136);
  });
});

describe('numeric header fields', () => {
  it('reads octal with space or NUL padding after the digits, and leading spaces', () => {
    expect(parseNumberField(field('0000644\0'), 0, 8, 'mode')).toBe(0o644);
    expect(parseNumberField(field('  644 \0\0'), 0, 8, 'mode')).toBe(0o644);
    expect(parseNumberField(field('\0\0\0\0\0\0\0\0'), 0, 8, 'mode')).toBe(0);
    expect(parseNumberField(field('77777777777\0'), 0, 12, 'size')).toBe(0o77777777777);
  });

  it('reads GNU base-256 (high bit set), as GNU tar writes large values', () => {
    const b = Buffer.alloc(12);
    b[0] = 0x80;
    b.writeUIntBE(123_456_789_012, 6, 6);
    expect(parseNumberField(b, 0, 12, 'size')).toBe(123_456_789_012);
    expect(parseNumberField(field([0x80, 0, 0, 0, 0, 0x2d, 0xc6, 0xc0]), 0, 8, 'uid')).toBe(3_000_000);
  });

  it('refuses what readers disagree on, naming the field', () => {
    const err = (b: Buffer, len: number, f: string) => {
      try {
        parseNumberField(b, 0, len, f);
      } catch (e) {
        return { code: (e as { code: string }).code, message: (e as Error).message };
      }
      return null;
    };
    expect(err(field('0644x\0\0\0'), 8, 'mode')).toEqual({ code: 'E_BAD_TAR', message: "invalid number in the tar header's mode field" });
    // A digit after padding, and digits after a leading NUL: GNU tar and tar2sqfs read these differently.
    expect(err(field('064 4\0\0\0'), 8, 'uid')?.message).toBe("invalid number in the tar header's uid field");
    expect(err(field('\x000000644'), 8, 'gid')?.message).toBe("invalid number in the tar header's gid field");
    expect(err(field([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]), 8, 'mtime')?.message).toBe(
      "negative number in the tar header's mtime field",
    );
    expect(err(field([0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 12, 'size')?.message).toBe(
      "number too large in the tar header's size field",
    );
  });
});

describe('header checksum', () => {
  const block = () =>
    ustarBlock({
      name: Buffer.from('caf\xc3\xa9', 'latin1'),
      typeflag: 0x30,
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: 5,
      mtime: 1,
      linkname: Buffer.alloc(0),
      devmajor: 0,
      devminor: 0,
    });

  it('accepts the blocks the encoder writes, refuses any changed byte', () => {
    const b = block();
    expect(checksumMatches(b)).toBe(true);
    for (const at of [0, 100, 124, 156, 257, 511]) {
      const c = Buffer.from(b);
      c[at] = c[at]! ^ 0x01;
      expect(checksumMatches(c)).toBe(false);
    }
  });

  it('accepts the signed-byte sum old writers used, refuses a malformed checksum field', () => {
    const b = block();
    let signed = 0;
    for (let i = 0; i < 512; i++) signed += i >= 148 && i < 156 ? 0x20 : b[i]! > 127 ? b[i]! - 256 : b[i]!;
    b.write(`${signed.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
    expect(checksumMatches(b)).toBe(true);
    b.write('12x456\0 ', 148, 8, 'latin1');
    expect(checksumMatches(b)).toBe(false);
  });
});

describe('PAX records', () => {
  it('round-trips binary values byte for byte, whatever their length', () => {
    const binary = Buffer.from([0x00, 0xff, 0x0a, 0x3d, 0x20, 0x80, 0x01]);
    // Bodies around the 1 -> 2 -> 3 digit boundaries of the length prefix.
    for (const n of [0, 1, 5, 80, 84, 85, 86, 90, 95, 96, 97, 990, 994, 995, 996]) {
      const v = Buffer.concat([binary, Buffer.alloc(n, 0x61)]);
      const rec = paxRecord('SCHILY.xattr.user.bin', v);
      expect(Number(rec.toString('latin1', 0, rec.indexOf(0x20)))).toBe(rec.length);
      const m = parsePax(Buffer.concat([rec, paxRecord('path', Buffer.from('a/b'))]));
      expect(m.get('SCHILY.xattr.user.bin')!.equals(v)).toBe(true);
      expect(m.get('path')!.toString()).toBe('a/b');
    }
  });

  it('refuses records readers could disagree on', () => {
    const rec = paxRecord('path', Buffer.from('x'));
    expect(() => parsePax(Buffer.concat([rec, rec]))).toThrow("PAX header repeats the key 'path'");
    expect(() => parsePax(Buffer.from('10 path=xy\n'))).toThrow('PAX header record does not end in a newline');
    expect(() => parsePax(Buffer.from('99 path=x\n'))).toThrow('PAX header record length out of range');
    expect(() => parsePax(Buffer.from('1x path=x\n'))).toThrow('malformed PAX header record length');
    expect(() => parsePax(Buffer.from('8 pathx\n'))).toThrow('PAX header record without a key');
  });
});

describe('normalizeTarPath', () => {
  it('gives the LayerEntry form', () => {
    expect(normalizeTarPath('./etc/passwd')).toBe('etc/passwd');
    expect(normalizeTarPath('./')).toBe('');
    expect(normalizeTarPath('.')).toBe('');
    expect(normalizeTarPath('etc/ssh/')).toBe('etc/ssh');
    expect(normalizeTarPath('./a//b/./c/')).toBe('a/b/c');
    expect(normalizeTarPath('.hidden/...')).toBe('.hidden/...');
  });

  it('refuses paths that leave the layer', () => {
    expect(() => normalizeTarPath('/etc/passwd')).toThrow(expect.objectContaining({ code: 'E_UNSAFE_PATH' }));
    expect(() => normalizeTarPath('a/../../b')).toThrow("'..' in the path 'a/../../b'; paths must stay inside the layer");
    expect(() => normalizeTarPath('..', 'hardlink target')).toThrow("'..' in the hardlink target '..'");
    expect(() => normalizeTarPath('a\0b')).toThrow(expect.objectContaining({ code: 'E_UNSAFE_PATH' }));
    expect(() => normalizeTarPath('')).toThrow(expect.objectContaining({ code: 'E_BAD_TAR' }));
  });
});

describe('encodeEntryHeader', () => {
  const longPath = Buffer.from(`deep/${'x'.repeat(120)}/${'é'.repeat(20)}`);
  const longLink = Buffer.from(`../${'target/'.repeat(20)}end`);
  const cap = Buffer.from('0100000200100000000000000000000000000000', 'hex');

  it('puts long names, large ids and binary xattrs in PAX records our readers read back exactly', () => {
    const xattrs: [string, Buffer][] = [
      ['user.z', Buffer.from('last')],
      ['security.capability', cap],
      ['user.a', Buffer.from([0xff, 0, 0x0a])],
    ];
    const file = entry({ path: longPath, uid: 3_000_000, gid: 0o7777777 + 1, size: 5, xattrs });
    const link = entry({ path: Buffer.from('l'), type: 'symlink', mode: 0o777, linkname: longLink });
    const tar = tarOf([
      { header: encodeEntryHeader(file, CHECKER), data: Buffer.from('hello') },
      { header: encodeEntryHeader(link, CHECKER) },
    ]);

    const checker = new TarChecker({ maxEntries: 10, policy: ALLOW_ALL });
    checker.push(tar, () => {});
    checker.finish(() => {});
    expect(checker.entries[0]).toMatchObject({ path: longPath.toString(), uid: 3_000_000, gid: 0o7777777 + 1, size: 5 });
    // Sorted by name whatever the order given: the same entry always gives the same bytes.
    expect(Object.keys(checker.entries[0]!.xattrs!)).toEqual(['security.capability', 'user.a', 'user.z']);
    expect(checker.entries[0]!.xattrs!['security.capability']).toBe(`0s${cap.toString('base64')}`);
    expect(checker.entries[1]).toMatchObject({ path: 'l', type: 'symlink', linkname: longLink.toString() });

    const [h1, h2] = parseAll(tar);
    expect(h1!.path).toBe(longPath.toString());
    expect(h1!.xattrs.get('user.a')).toEqual(Buffer.from([0xff, 0, 0x0a]));
    expect(h1!.xattrs.get('security.capability')).toEqual(cap);
    expect(h2!.linkname).toBe(longLink.toString());
  });

  it("is deterministic and writes each caller's historical bytes", () => {
    const e = entry({ path: longPath, type: 'dir', mode: 0o755, uid: 7, mtime: 123, xattrs: [['user.a', Buffer.from('1')]] });
    const a = encodeEntryHeader(e, CHECKER);
    expect(encodeEntryHeader({ ...e, xattrs: new Map([['user.a', Buffer.from('1')]]) }, CHECKER).equals(a)).toBe(true);
    const [paxA, mainA] = [decodeHeader(a.subarray(0, 512)), decodeHeader(a.subarray(a.length - 512))];
    expect(paxA).toMatchObject({ name: Buffer.from('PaxHeader'), typeflag: 'x', mode: 0o644, uid: 0, mtime: 0 });
    expect(mainA.name.toString()).toBe('PaxPath');

    const f = encodeEntryHeader(e, FLATTEN);
    const [paxF, mainF] = [decodeHeader(f.subarray(0, 512)), decodeHeader(f.subarray(f.length - 512))];
    expect(paxF).toMatchObject({ typeflag: 'x', mode: 0o644, uid: 7, mtime: 123 });
    expect(mainF.name.equals(longPath.subarray(0, 100))).toBe(true);
    expect(
      parsePax(f.subarray(512, 512 + paxF.size))
        .get('path')!
        .toString(),
    ).toBe(`${longPath}/`);

    // Short names: no PAX block, the directory slash is the only difference.
    const short = entry({ path: Buffer.from('etc'), type: 'dir', mode: 0o755 });
    expect(decodeHeader(encodeEntryHeader(short, CHECKER)).name.toString()).toBe('etc');
    expect(decodeHeader(encodeEntryHeader(short, FLATTEN)).name.toString()).toBe('etc/');
    expect(decodeHeader(encodeEntryHeader(entry({ path: Buffer.alloc(0), type: 'dir' }), CHECKER)).name.toString()).toBe('./');
  });

  it('keeps a fractional mtime in a PAX record and whole seconds in the ustar field', () => {
    const h = encodeEntryHeader(entry({ mtime: 1_600_000_000.5 }), FLATTEN);
    expect(
      parsePax(h.subarray(512, 512 + decodeHeader(h.subarray(0, 512)).size))
        .get('mtime')!
        .toString(),
    ).toBe('1600000000.5');
    expect(decodeHeader(h.subarray(h.length - 512)).mtime).toBe(1_600_000_000);
    expect(encodeEntryHeader(entry({ mtime: 1_600_000_000 }), FLATTEN).length).toBe(512);
  });

  it('writes tars GNU tar extracts: long names and links, binary xattrs', async () => {
    const name = Buffer.from(`${'n'.repeat(150)}`);
    const tar = tarOf([
      { header: encodeEntryHeader(entry({ path: Buffer.alloc(0), type: 'dir', mode: 0o755 }), CHECKER) },
      {
        header: encodeEntryHeader(
          entry({ path: name, size: 3, xattrs: [['user.bin', Buffer.from([0xff, 0x00, 0xfe, 0x0a, 0x41])]] }),
          CHECKER,
        ),
        data: Buffer.from('abc'),
      },
      { header: encodeEntryHeader(entry({ path: Buffer.from('d'), type: 'dir', mode: 0o750 }), FLATTEN) },
      { header: encodeEntryHeader(entry({ path: Buffer.from('d/s'), type: 'symlink', mode: 0o777, linkname: longLink }), FLATTEN) },
    ]);
    const file = path.join(tmp, 'enc.tar');
    await fs.writeFile(file, tar);
    const out = path.join(tmp, 'x');
    await fs.mkdir(out);
    await execa('tar', ['--xattrs', '--xattrs-include=*', '-C', out, '-xf', file]);
    expect(await fs.readFile(path.join(out, name.toString()), 'utf8')).toBe('abc');
    expect(((await fs.stat(path.join(out, 'd'))).mode & 0o777).toString(8)).toBe('750');
    expect(await fs.readlink(path.join(out, 'd/s'))).toBe(longLink.toString());
    const { stdout } = await execa('getfattr', ['-n', 'user.bin', '-e', 'hex', '--absolute-names', path.join(out, name.toString())]);
    expect(stdout).toContain('user.bin=0xff00fe0a41');
  });

  it('reads the base-256 uid GNU tar writes for ids beyond 7 octal digits', async () => {
    const src = path.join(tmp, 'big');
    await fs.mkdir(src);
    await fs.writeFile(path.join(src, 'f'), 'x');
    await fs.chown(path.join(src, 'f'), 3_000_000, 3_000_001);
    const file = path.join(tmp, 'big.tar');
    await execa('tar', ['--format=gnu', '--numeric-owner', '-C', src, '-cf', file, 'f']);
    const tar = await fs.readFile(file);
    expect(tar[108]! & 0x80).toBe(0x80); // really base-256
    expect(decodeHeader(tar.subarray(0, 512))).toMatchObject({ uid: 3_000_000, gid: 3_000_001 });
    expect(parseAll(tar)[0]).toMatchObject({ path: 'f', uid: 3_000_000, gid: 3_000_001 });
  });
});
