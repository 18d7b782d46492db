/**
 * Bad input through the real `strata` command: each gets a clear error and a
 * non-zero exit, and the store is left as it was (refs unmoved, fsck clean,
 * no stray objects). Crashes (SIGKILL mid-bake, mid-ref-move) and two
 * concurrent commits never lose or corrupt a commit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStrata, strataJson, STRATA } from './helpers/cli.ts';
import { makeTar } from './helpers/tars.ts';
import type { Commit, Ref } from '../store/types.ts';

let work: string;
let data: string;

function objectCount(d = data): number {
  const root = join(d, 'objects/sha256');
  let n = 0;
  for (const sub of readdirSync(root)) n += readdirSync(join(root, sub)).length;
  return n;
}

async function state(d = data) {
  return {
    refs: await strataJson<Ref[]>(['reflog', 'lab'], { data: d })
      .then(() => strataJson<Commit[]>(['log', 'lab'], { data: d }))
      .then((l) => l.map((c) => c.id)),
    objects: objectCount(d),
  };
}

async function expectUnchanged(before: Awaited<ReturnType<typeof state>>, d = data) {
  expect(await state(d)).toEqual(before);
  const f = await runStrata(['fsck'], { data: d });
  expect(f.stdout + f.stderr).toMatch(/^ok/);
  expect(f.code).toBe(0);
  // No half-written temp files left behind by the failed operation.
  expect(readdirSync(join(d, 'tmp'))).toEqual([]);
}

/** SIGKILLs P as soon as `ready()` holds (polled), and waits for it to die. */
async function killWhen(p: ChildProcess, ready: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && p.exitCode === null && !ready()) await new Promise((r) => setTimeout(r, 20));
  expect(p.exitCode, 'the process finished before the point it was to be killed at').toBeNull();
  p.kill('SIGKILL');
  await new Promise((r) => p.on('close', r));
}

async function commitFails(tarPath: string, pattern: RegExp, d = data) {
  const before = await state(d);
  const r = await runStrata(['commit', 'lab', '--tar', tarPath, '-m', 'bad'], { data: d });
  expect(r.code).not.toBe(0);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /); // a sentence, not a stack trace
  await expectUnchanged(before, d);
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'strata-bad-'));
  data = join(work, 'data');
  writeFileSync(join(work, 'base.tar'), await makeTar({ 'etc/hostname': 'lab\n', 'etc/shared': 'v0\n' }));
  const r = await runStrata(['import', 'lab', join(work, 'base.tar'), '--level', '3'], { data });
  expect(r.code).toBe(0);
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe('bad archives are refused and change nothing', () => {
  it('random bytes as a tar', async () => {
    writeFileSync(join(work, 'random.tar'), randomBytes(100_000));
    await commitFails(join(work, 'random.tar'), /not a tar|tar archive|bad tar/i);
  });

  it('a truncated zstd stream', async () => {
    const tar = await makeTar({ 'big/file': randomBytes(300_000).toString('base64') });
    writeFileSync(join(work, 'ok.tar'), tar);
    execFileSync('zstd', ['-q', '-f', join(work, 'ok.tar'), '-o', join(work, 'ok.tar.zst')]);
    const z = readFileSync(join(work, 'ok.tar.zst'));
    writeFileSync(join(work, 'cut.tar.zst'), z.subarray(0, Math.floor(z.length / 2)));
    await commitFails(join(work, 'cut.tar.zst'), /truncated|corrupt|zstd|unexpected end/i);
  });

  it('a tar with ../ in a path', async () => {
    writeFileSync(join(work, 'dotdot.tar'), await makeTar({ '../../escape': 'x' }, { raw: true }));
    await commitFails(join(work, 'dotdot.tar'), /\.\./);
  });

  it('a tar with an absolute path', async () => {
    writeFileSync(join(work, 'abs.tar'), await makeTar({ '/etc/passwd': 'root::0:0::/:/bin/sh\n' }, { raw: true }));
    await commitFails(join(work, 'abs.tar'), /absolute/i);
  });

  it('a hardlink pointing out of the tree', async () => {
    writeFileSync(join(work, 'link.tar'), await makeTar({ 'etc/x': { hardlink: '../../etc/passwd' } }, { raw: true }));
    await commitFails(join(work, 'link.tar'), /hardlink|link|\.\./i);
  });

  it('a zstd bomb beyond the configured size limit', async () => {
    const bombData = join(work, 'bombdata');
    mkdirSync(bombData);
    const d2 = join(work, 'data-limited');
    writeFileSync(join(work, 'base2.tar'), await makeTar({ 'etc/hostname': 'x\n' }));
    expect((await runStrata(['import', 'lab', join(work, 'base2.tar'), '--level', '3'], { data: d2 })).code).toBe(0);
    writeFileSync(join(d2, 'config.json'), JSON.stringify({ maxUncompressedBytes: 10 * 1024 * 1024 }));
    // 64 MiB of zeros compresses to a few KiB.
    execFileSync('sh', [
      '-c',
      `head -c 67108864 /dev/zero > ${bombData}/zeros && tar -C ${bombData} -cf - zeros | zstd -q -19 > ${work}/bomb.tar.zst`,
    ]);
    await commitFails(join(work, 'bomb.tar.zst'), /limit|too large|exceeds/i, d2);
  });
});

describe('bad names and sources', () => {
  it('an unknown commit', async () => {
    const r = await runStrata(['show', 'deadbeefdeadbeef'], { data });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no commit/);
    const r2 = await runStrata(['rollback', 'lab', 'nosuchtag'], { data });
    expect(r2.code).not.toBe(0);
    expect(r2.stderr).toMatch(/no commit, tag, branch or profile named "nosuchtag"/);
  });

  it('an ambiguous prefix lists the candidates', async () => {
    // Two commits sharing 7 hex digits take ~16k commits to happen by
    // chance; make a scratch store and give it two such ids by hand.
    const d3 = join(work, 'data-ambiguous');
    expect((await runStrata(['import', 'lab', join(work, 'base.tar'), '--level', '3'], { data: d3 })).code).toBe(0);
    const db = new Database(join(d3, 'strata.db'));
    const row = db.prepare('SELECT * FROM commits').get() as Record<string, unknown>;
    for (const id of [`abcdef1${'0'.repeat(57)}`, `abcdef1${'1'.repeat(57)}`]) {
      db.prepare(
        'INSERT INTO commits (id, parent, merge_parent, profile, message, author, created_at, manifest, added_layer, kind) VALUES (?, NULL, NULL, ?, ?, ?, ?, ?, ?, ?)',
      ).run(id, row.profile, 'x', 'x', 1, row.manifest, row.added_layer, 'import');
    }
    db.close();
    const r = await runStrata(['show', 'abcdef1'], { data: d3 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/ambiguous/);
    expect(r.stderr).toMatch(/abcdef100000/);
  });

  it('a non-squashfs file as a base', async () => {
    writeFileSync(join(work, 'junk.sqfs'), randomBytes(8192));
    const before = objectCount();
    const r = await runStrata(['import', 'other', join(work, 'junk.sqfs')], { data });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/not a squashfs/);
    expect(objectCount()).toBe(before);
    const p = await runStrata(['profile', 'other'], { data });
    expect(p.code).not.toBe(0);
  });
});

describe('disk full and crashes', () => {
  it('disk full while baking: clear error, store unchanged', async () => {
    const mnt = join(work, 'small');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt]);
    try {
      const d4 = join(mnt, 'data');
      expect((await runStrata(['import', 'lab', join(work, 'base.tar'), '--level', '3'], { data: d4 })).code).toBe(0);
      // 12 MB of random data cannot fit, compressed or not.
      writeFileSync(join(work, 'huge.tar'), await makeTar({ 'big/blob': randomBytes(9_000_000).toString('latin1') }));
      await commitFails(join(work, 'huge.tar'), /no space/i, d4);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  it('SIGKILL in the middle of a bake loses nothing', async () => {
    const before = await state();
    writeFileSync(join(work, 'slow.tar'), await makeTar({ 'big/blob': randomBytes(60_000_000).toString('latin1') }));
    const p = spawn(STRATA, ['--data', data, 'commit', 'lab', '--tar', join(work, 'slow.tar'), '-m', 'killed'], { stdio: 'ignore' });
    // Mid-bake: tar2sqfs has started writing its image in <data>/tmp.
    await killWhen(p, () => readdirSync(join(data, 'tmp')).some((f) => f.endsWith('.sqfs.tmp')));
    const after = await state();
    expect(after.refs).toEqual(before.refs);
    const f = await runStrata(['fsck'], { data });
    expect(f.code).toBe(0);
    // The next command works and commits normally; gc sweeps the dead bake's temp file.
    writeFileSync(join(work, 'next.tar'), await makeTar({ 'etc/next': 'n\n' }));
    expect((await runStrata(['commit', 'lab', '--tar', join(work, 'next.tar'), '-m', 'next'], { data })).code).toBe(0);
    expect((await runStrata(['rollback', 'lab'], { data })).code).toBe(0);
    expect((await runStrata(['gc'], { data })).code).toBe(0);
    expect(readdirSync(join(data, 'tmp'))).toEqual([]);
  });

  it('SIGKILL in the middle of a ref move: either the old head or the new one, never half', async () => {
    const before = await state();
    writeFileSync(join(work, 'move.tar'), await makeTar({ 'etc/moved': 'm\n' }));
    const p = spawn(STRATA, ['--data', data, 'commit', 'lab', '--tar', join(work, 'move.tar'), '-m', 'mid-move'], {
      stdio: 'ignore',
      env: { ...process.env, STRATA_FAULT: 'ref-move:20000' },
    });
    // Inside the transaction: the process holds SQLite's write lock.
    await killWhen(p, () => {
      const db = new Database(join(data, 'strata.db'), { timeout: 0 });
      try {
        db.exec('BEGIN IMMEDIATE; ROLLBACK;');
        return false;
      } catch {
        return true;
      } finally {
        db.close();
      }
    });
    const after = await state();
    expect(after.refs).toEqual(before.refs);
    const f = await runStrata(['fsck'], { data });
    expect(f.code).toBe(0);
  });

  it('two strata commit processes on the same profile at once both land', async () => {
    const head = (await state()).refs[0];
    writeFileSync(join(work, 'a.tar'), await makeTar({ 'srv/a': 'a\n' }));
    writeFileSync(join(work, 'b.tar'), await makeTar({ 'srv/b': 'b\n' }));
    const [a, b] = await Promise.all([
      runStrata(['commit', 'lab', '--tar', join(work, 'a.tar'), '-m', 'a'], { data }),
      runStrata(['commit', 'lab', '--tar', join(work, 'b.tar'), '-m', 'b'], { data }),
    ]);
    expect([a.code, b.code]).toEqual([0, 0]);
    const log = await strataJson<Commit[]>(['log', 'lab'], { data });
    expect(
      log
        .slice(0, 3)
        .map((c) => c.message)
        .sort(),
    ).toEqual(['a', 'b', log[2]!.message].sort());
    expect(log.map((c) => c.id)).toContain(head);
    const diff = await strataJson<{ added: string[] }>(['diff', head!, 'lab'], { data });
    expect(diff.added).toEqual(['srv', 'srv/a', 'srv/b']);
  });

  it('two concurrent commits changing the same file: one lands, the other is refused cleanly', async () => {
    writeFileSync(join(work, 'c.tar'), await makeTar({ 'etc/shared': 'c\n' }));
    writeFileSync(join(work, 'd.tar'), await makeTar({ 'etc/shared': 'd\n' }));
    const head = (await state()).refs[0]!;
    const [c, d] = await Promise.all([
      runStrata(['commit', 'lab', '--tar', join(work, 'c.tar'), '-m', 'c', '--parent', head], { data }),
      runStrata(['commit', 'lab', '--tar', join(work, 'd.tar'), '-m', 'd', '--parent', head], { data }),
    ]);
    const codes = [c.code, d.code].sort();
    expect(codes[0]).toBe(0);
    expect(codes[1]).not.toBe(0);
    expect([c.stderr, d.stderr].join('')).toMatch(/etc\/shared/);
    const f = await runStrata(['fsck'], { data });
    expect(f.code).toBe(0);
  });
});
