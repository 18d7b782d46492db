// Oracle test of flatten with the real kernel: three layers are made the way
// clients make them (changes through a real overlayfs mount, the upper dir
// tarred with GNU tar and baked with tar2sqfs); the flattened image must show
// exactly the tree overlayfs shows for the stacked layers.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bakeTar } from '../store/bake.ts';
import { flattenToTar } from '../store/flatten-stream.ts';
import { TarParser } from '../store/tar-parser.ts';
import { listSquashfs } from '../store/squashfs.ts';
import type { LayerEntry } from '../store/types.ts';

let tmp = '';
const mounts: string[] = [];
const images: string[] = [];

async function mountSquashfs(image: string, dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await execa('mount', ['-t', 'squashfs', '-o', 'loop,ro', image, dir]);
  mounts.push(dir);
}

/** lowers: top first, as overlayfs wants them. Without upper: read-only. */
async function mountOverlay(dir: string, lowers: string[], upper?: { upper: string; work: string }): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  // Explicit features so the layers look the same on any kernel: no metacopy
  // (data stays in the upper) and no redirects (renamed dirs are copied).
  let o = `lowerdir=${lowers.join(':')}`;
  if (upper) o += `,upperdir=${upper.upper},workdir=${upper.work},metacopy=off,redirect_dir=off,index=off`;
  await execa('mount', ['-t', 'overlay', 'overlay', ...(upper ? [] : ['-r']), '-o', o, dir]);
  mounts.push(dir);
}

async function unmount(dir: string): Promise<void> {
  await execa('umount', [dir]);
  mounts.splice(mounts.indexOf(dir), 1);
}

/** An upper dir as a client pushes it -> a squashfs layer. */
async function bake(upper: string, image: string): Promise<void> {
  const tarFile = `${image}.tar`;
  // As the agent does: overlayfs's origin/impure bookkeeping stays out (a push carrying origin is refused).
  const bookkeeping = ['origin', 'impure', 'nlink', 'uuid'].map((n) => `--xattrs-exclude=trusted.overlay.${n}`);
  await execa('tar', ['--xattrs', '--xattrs-include=*', ...bookkeeping, '-C', upper, '-cf', tarFile, '.']);
  await execa('tar2sqfs', ['-c', 'zstd', '-X', 'level=3', '-q', image], { inputFile: tarFile });
  images.push(image);
}

/** A flatten stream -> a squashfs image, the way the store will bake it. */
async function bakeStream(stream: NodeJS.ReadableStream, image: string): Promise<void> {
  const child = spawn('tar2sqfs', ['-c', 'zstd', '-X', 'level=3', '-q', image], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  await pipeline(stream, child.stdin);
  const code = await exited;
  if (code !== 0) throw new Error(`tar2sqfs failed (${code}): ${stderr}`);
  images.push(image);
}

/**
 * The entry listing of a layer, read from sqfs2tar with flatten's own parser.
 * Unlike listSquashfs it carries no content hashes, so flatten must hash
 * bodies on the way through.
 */
async function listLayer(image: string): Promise<LayerEntry[]> {
  const child = spawn('sqfs2tar', ['-r', '.', image], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const out: LayerEntry[] = [];
  const parser = new TarParser({
    entry(h) {
      const e: LayerEntry = { path: h.path, type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, size: h.size, mtime: h.mtime };
      if (h.type === 'symlink' || h.type === 'hardlink') e.linkname = h.linkname;
      if (h.type === 'char' || h.type === 'block') Object.assign(e, { devmajor: h.devmajor, devminor: h.devminor });
      if (h.type === 'char' && h.devmajor === 0 && h.devminor === 0) e.whiteout = true;
      if (h.type === 'dir' && h.xattrs.get('trusted.overlay.opaque')?.toString() === 'y') e.opaque = true;
      out.push(e);
      return false; // bodies are skipped
    },
    data() {},
    bodyEnd() {},
  });
  for await (const chunk of child.stdout) parser.push(chunk as Buffer);
  parser.finish();
  expect(await exited).toBe(0);
  return out;
}

/** Runs fn with a sqfs2tar on PATH that logs which image each run reads; returns those images. */
async function countingSqfs2tar(fn: () => Promise<void>): Promise<string[]> {
  const bin = await fs.mkdtemp(path.join(tmp, 'bin-'));
  const log = path.join(bin, 'log');
  const real = (await execa('sh', ['-c', 'command -v sqfs2tar'])).stdout.trim();
  await fs.writeFile(path.join(bin, 'sqfs2tar'), `#!/bin/sh\nfor a; do last="$a"; done\necho "$last" >> '${log}'\nexec '${real}' "$@"\n`, {
    mode: 0o755,
  });
  const saved = process.env.PATH;
  process.env.PATH = `${bin}:${saved}`;
  try {
    await fn();
  } finally {
    process.env.PATH = saved;
  }
  return (await fs.readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

const sh = (cwd: string, script: string) => execa('bash', ['-euo', 'pipefail', '-c', script], { cwd });

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
}

/** user.* and trusted.* xattrs of every path under root (symlinks not followed), hex values. */
async function xattrsOf(root: string): Promise<Map<string, string[]>> {
  const { stdout } = await execa('getfattr', ['-R', '-h', '-P', '-d', '-m', '^(user|trusted)\\.', '-e', 'hex', '--absolute-names', root], {
    reject: false,
  });
  const out = new Map<string, string[]>();
  let current = '';
  for (const line of stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = path.relative(root, line.slice('# file: '.length));
      out.set(current, []);
    } else if (line.includes('=')) out.get(current)!.push(line);
  }
  for (const v of out.values()) v.sort();
  return out;
}

/**
 * What a user sees under root: for every path its type, mode, owner, size
 * and content hash (files), mtime (files and dirs), symlink target, device
 * number and xattrs.
 */
async function snapshot(root: string): Promise<Record<string, string>> {
  const xattrs = await xattrsOf(root);
  const out: Record<string, string> = {};
  const visit = async (rel: string): Promise<void> => {
    const abs = path.join(root, rel);
    const st = await fs.lstat(abs);
    const type = st.isFile()
      ? 'file'
      : st.isDirectory()
        ? 'dir'
        : st.isSymbolicLink()
          ? 'symlink'
          : st.isCharacterDevice()
            ? 'char'
            : st.isBlockDevice()
              ? 'block'
              : st.isFIFO()
                ? 'fifo'
                : 'other';
    let d = `${type} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
    if (type === 'file') d += ` size=${st.size} mtime=${Math.floor(st.mtimeMs / 1000)} sha=${(await sha256(abs)).slice(0, 16)}`;
    if (type === 'dir') d += ` mtime=${Math.floor(st.mtimeMs / 1000)}`;
    if (type === 'symlink') d += ` -> ${await fs.readlink(abs)}`;
    if (type === 'char' || type === 'block') d += ` rdev=${st.rdev}`;
    const x = xattrs.get(rel);
    if (x?.length) d += ` xattrs[${x.join(',')}]`;
    out[rel === '' ? '.' : rel] = d;
    if (type === 'dir') for (const name of (await fs.readdir(abs)).sort()) await visit(rel === '' ? name : `${rel}/${name}`);
  };
  await visit('');
  return out;
}

const BASE = `
mkdir -p etc opt/app/lib var/cache/apt var/log srv bin usr/bin dev home/user
printf 'base-host\\n' > etc/hostname
printf 'root:x:0:0\\n' > etc/passwd
printf old > etc/passwd-old
: > etc/empty
head -c 300000 /dev/urandom > opt/app/lib/big.bin
printf app > opt/app/run
printf cached > var/cache/apt/pkgcache.bin
printf log > var/log/syslog
printf tool > bin/a && ln bin/a bin/b
printf shared > usr/bin/x && ln usr/bin/x usr/bin/y && chmod 4755 usr/bin/x
ln -s ../etc/hostname srv/link
mkfifo var/log/pipe
mknod dev/null c 1 3
printf notes > home/user/notes && chown 1000:1000 home/user home/user/notes && chmod 0700 home/user
setfattr -n user.origin -v base etc/hostname
setfattr -n user.bin -v 0xff00fe0a41 bin/a
find . -exec touch -h -d @1600000000 {} +
`;

const ROUND1 = `
printf 'round1-host\\n' > etc/hostname
rm etc/passwd-old
rm -rf opt/app
rm -rf var/cache && mkdir -p var/cache/new && printf fresh > var/cache/new/f
chmod 0600 etc/passwd && chown 1234:5678 etc/passwd
ln -s /usr/bin/nothing etc/dangling
rm srv/link && ln -s ../etc/passwd srv/link
printf t1 > usr/bin/t1 && ln usr/bin/t1 usr/bin/t2 && ln usr/bin/t1 usr/bin/t3
setfattr -n user.round -v 1 usr/bin/t1
setfattr -n user.note -v hello var/log/syslog
head -c 100000 /dev/urandom >> var/log/syslog
mkdir -p newdir/sub && printf n > newdir/sub/file
touch -d @1650000000 etc/hostname var/log/syslog usr/bin/t1
`;

const ROUND2 = `
printf shadow > bin/a
rm usr/bin/t1
mkdir opt/app && printf again > opt/app/run2
rm newdir/sub/file && rmdir newdir/sub && printf nowfile > newdir/sub
printf back > etc/passwd-old
mv var/log/syslog var/log/syslog.1
chmod 0750 var
setfattr -x user.origin etc/hostname
chown 42:42 srv
rm etc/empty
rm -rf home/user && mkdir home/user && printf new > home/user/notes2
touch -d @1700000000 bin/a etc/passwd-old
`;

describe('flattenToTar against the kernel overlay', () => {
  const layers: string[] = [];
  let oracle: Record<string, string> = {};
  let entries: LayerEntry[][] = [];

  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'strata-flatten-'));
    const base = path.join(tmp, 'base');
    await fs.mkdir(base);
    await sh(base, BASE);
    layers.push(path.join(tmp, 'L0.sqfs'));
    await bake(base, layers[0]!);

    const rounds = [ROUND1, ROUND2];
    const lowerMounts: string[] = [];
    for (let i = 0; i < rounds.length; i++) {
      const lo = path.join(tmp, `lo${i}`);
      await mountSquashfs(layers[i]!, lo);
      lowerMounts.unshift(lo);
      const upper = path.join(tmp, `up${i + 1}`);
      const work = path.join(tmp, `wk${i + 1}`);
      const merged = path.join(tmp, `m${i + 1}`);
      await fs.mkdir(upper);
      await fs.mkdir(work);
      await mountOverlay(merged, lowerMounts, { upper, work });
      try {
        await sh(merged, rounds[i]!);
      } finally {
        await unmount(merged);
      }
      layers.push(path.join(tmp, `L${i + 1}.sqfs`));
      await bake(upper, layers[i + 1]!);
    }
    const top = path.join(tmp, 'lo2');
    await mountSquashfs(layers[2]!, top);
    const view = path.join(tmp, 'oracle');
    await mountOverlay(view, [top, ...lowerMounts]);
    oracle = await snapshot(view);
    await unmount(view);
    entries = await Promise.all(layers.map(listLayer));
  });

  afterAll(async () => {
    for (const m of [...mounts].reverse()) {
      await execa('umount', [m], { reject: false });
      if (mounts.includes(m)) await execa('umount', ['-l', m], { reject: false });
    }
    mounts.length = 0;
    for (const img of images) {
      const { stdout } = await execa('losetup', ['-j', img], { reject: false });
      for (const line of stdout.split('\n').filter(Boolean)) await execa('losetup', ['-d', line.split(':')[0]!], { reject: false });
    }
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  it('the layers carry what the test is about: whiteouts, opaque dirs, hardlinks', async () => {
    const [l0, l1, l2] = entries as [LayerEntry[], LayerEntry[], LayerEntry[]];
    const find = (l: LayerEntry[], p: string) => l.find((e) => e.path === p);
    expect(find(l1, 'etc/passwd-old')?.whiteout).toBe(true);
    expect(find(l1, 'opt/app')?.whiteout).toBe(true);
    expect(find(l1, 'var/cache')?.opaque).toBe(true);
    // Made over a whiteout of a LOWER layer: a plain dir, the whiteout below does the hiding.
    expect(find(l2, 'opt/app')).toMatchObject({ type: 'dir' });
    expect(find(l2, 'opt/app')?.opaque).toBeFalsy();
    expect(find(l2, 'home/user')?.opaque).toBe(true);
    expect(find(l2, 'usr/bin/t1')?.whiteout).toBe(true);
    expect(find(l0, 'bin/b')).toMatchObject({ type: 'hardlink', linkname: 'bin/a' });
    expect(find(l1, 'usr/bin/t2')).toMatchObject({ type: 'hardlink', linkname: 'usr/bin/t1' });
    // The oracle itself shows the edits.
    expect(oracle['etc/passwd-old']).toMatch(/^file .* mtime=1700000000/);
    expect(oracle['opt/app/lib']).toBeUndefined();
    expect(oracle['var/cache/apt']).toBeUndefined();
    expect(oracle['home/user/notes']).toBeUndefined();
    expect(oracle['bin/b']).toMatch(/xattrs\[user\.bin=0xff00fe0a41\]/);
  });

  it('the whole chain flattened into one image shows the same tree as the stacked layers', async () => {
    const flat = path.join(tmp, 'flat.sqfs');
    const reads = await countingSqfs2tar(() => bakeStream(flattenToTar(layers, entries, { keepBelow: false }), flat));
    // One pass over each layer, even with a shadowed hardlink target (bin/a):
    // the plan knows the group, so no second read is needed.
    expect(reads.sort()).toEqual([...layers].sort());
    const dir = path.join(tmp, 'flat');
    await mountSquashfs(flat, dir);
    try {
      expect(await snapshot(dir)).toEqual(oracle);
      // Nothing of the overlay format may be left in a standalone image.
      const { stdout } = await execa('getfattr', ['-R', '-h', '-P', '-d', '-m', '^trusted\\.overlay\\.', '--absolute-names', dir]);
      expect(stdout.trim()).toBe('');
      // Hardlinks survive: a group kept whole, one whose first file was
      // shadowed (bin/a), one whose first member was deleted (usr/bin/t1).
      const ino = async (p: string) => (await fs.stat(path.join(dir, p))).ino;
      expect(await ino('usr/bin/x')).toBe(await ino('usr/bin/y'));
      expect(await ino('usr/bin/t2')).toBe(await ino('usr/bin/t3'));
      expect(await fs.readFile(path.join(dir, 'bin/b'), 'utf8')).toBe('tool');
      expect(await fs.readFile(path.join(dir, 'bin/a'), 'utf8')).toBe('shadow');
    } finally {
      await unmount(dir);
    }
  });

  it('layers 1..2 flattened on top of the base (flatten --from) show the same tree when stacked on the base', async () => {
    const seg = path.join(tmp, 'seg.sqfs');
    await bakeStream(flattenToTar(layers.slice(1), entries.slice(1), { keepBelow: true }), seg);
    const segDir = path.join(tmp, 'seg');
    const view = path.join(tmp, 'segview');
    await mountSquashfs(seg, segDir);
    try {
      await mountOverlay(view, [segDir, path.join(tmp, 'lo0')]);
      try {
        expect(await snapshot(view)).toEqual(oracle);
      } finally {
        await unmount(view);
      }
    } finally {
      await unmount(segDir);
    }
  });

  it('flattens correctly even when the listings do not describe hardlinks', async () => {
    // A lister that reports every hardlink as a plain file: the shadowed
    // target's data must then be fetched by a second read of that layer.
    const plain = entries.map((l) => l.map((e) => (e.type === 'hardlink' ? { ...e, type: 'file' as const, linkname: undefined } : e)));
    const flat = path.join(tmp, 'flat-plain.sqfs');
    const reads = await countingSqfs2tar(() => bakeStream(flattenToTar(layers, plain, { keepBelow: false }), flat));
    expect(reads.filter((r) => r === layers[0]).length).toBe(2);
    const dir = path.join(tmp, 'flat-plain');
    await mountSquashfs(flat, dir);
    try {
      expect(await snapshot(dir)).toEqual(oracle);
    } finally {
      await unmount(dir);
    }
  });

  it('the trusted bake of a flatten lists exactly what TarCheckStream lists, and bakes the same image', async () => {
    // store.flatten skips the re-check of its own stream: the listing the
    // merge builds must equal the checker's, sha256 of contents, opaque marks
    // and whiteouts included. With listings that carry content hashes (the
    // store's: reused) and without (hashed on the way through).
    const checked = await Promise.all(layers.map((l) => listSquashfs(l)));
    expect(checked[0]!.find((e) => e.path === 'etc/hostname')?.sha256).toMatch(/^[0-9a-f]{64}$/);
    const dir = await fs.mkdtemp(path.join(tmp, 'trusted-'));
    const opts = { tmpDir: dir, compressor: 'zstd' as const, level: 3, maxUncompressedBytes: 1 << 30, maxEntries: 100_000 };
    const cases: [string[], LayerEntry[][], boolean][] = [
      [layers, checked, false],
      [layers.slice(1), checked.slice(1), true],
      [layers, entries, false],
      [layers.slice(1), entries.slice(1), true],
    ];
    for (const [imgs, lists, keepBelow] of cases) {
      const viaCheck = await bakeTar(flattenToTar(imgs, lists, { keepBelow }), opts);
      const tar = flattenToTar(imgs, lists, { keepBelow });
      const trusted = await bakeTar(tar, { ...opts, trustedListing: () => tar.listing() });
      expect(trusted.entries).toEqual(viaCheck.entries);
      expect(JSON.stringify(trusted.entries)).toBe(JSON.stringify(viaCheck.entries));
      expect(trusted.digest).toBe(viaCheck.digest);
      expect(trusted.uncompressedBytes).toBe(viaCheck.uncompressedBytes);
      expect(trusted.warnings).toEqual(viaCheck.warnings);
      await fs.rm(viaCheck.path);
      await fs.rm(trusted.path);
      // The cases the listing must get right are really there.
      const files = viaCheck.entries.filter((e) => e.type === 'file');
      expect(files.length).toBeGreaterThan(5);
      expect(files.every((e) => /^[0-9a-f]{64}$/.test(e.sha256 ?? ''))).toBe(true);
      if (keepBelow) {
        expect(viaCheck.entries.some((e) => e.whiteout)).toBe(true);
        expect(viaCheck.entries.some((e) => e.opaque)).toBe(true);
      }
      expect(viaCheck.entries.some((e) => e.type === 'hardlink')).toBe(true);
    }
    // The limits still hold on the trusted path.
    const tar = flattenToTar(layers, checked, { keepBelow: false });
    await expect(bakeTar(tar, { ...opts, maxEntries: 3, trustedListing: () => tar.listing() })).rejects.toMatchObject({
      code: 'E_TOO_LARGE',
    });
    const tar2 = flattenToTar(layers, checked, { keepBelow: false });
    await expect(bakeTar(tar2, { ...opts, maxUncompressedBytes: 10_000, trustedListing: () => tar2.listing() })).rejects.toMatchObject({
      code: 'E_TOO_LARGE',
    });
    // Failed bakes leave no temp image behind.
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('reports progress that grows to exactly the bytes written, against a total known up front', async () => {
    const stream = flattenToTar(layers, entries, { keepBelow: false });
    const before = stream.progress();
    expect(before.done).toBe(0);
    expect(before.total).toBeGreaterThan(1024);
    let bytes = 0;
    const seen: number[] = [];
    await pipeline(stream, async function* (src) {
      for await (const c of src) {
        bytes += (c as Buffer).length;
        seen.push(stream.progress().done);
      }
    });
    const end = stream.progress();
    expect(end.done).toBe(bytes);
    expect(end.total).toBe(end.done);
    // The estimate made before reading was close (PAX blocks are the difference).
    expect(before.total).toBeLessThanOrEqual(bytes);
    expect(before.total).toBeGreaterThan(bytes * 0.8);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
  });

  it('reports a layer that is not a squashfs image as an error on the stream', async () => {
    const bogus = path.join(tmp, 'bogus.sqfs');
    await fs.writeFile(bogus, Buffer.alloc(8192, 7));
    const stream = flattenToTar([layers[0]!, bogus], [entries[0]!, entries[1]!], { keepBelow: false });
    await expect(
      pipeline(stream, async function* (src) {
        for await (const c of src) void c;
      }),
    ).rejects.toMatchObject({
      code: 'E_CORRUPT',
    });
  });
});
