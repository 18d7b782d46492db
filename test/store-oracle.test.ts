/**
 * The oracle: the real kernel's overlayfs decides what a tree should look
 * like. We change a real overlay, commit its upper dir with the real CLI,
 * export the head, loop-mount every layer and stack them read-only: the tree
 * must be what the overlay showed. Then the same after flatten, and after a
 * rollback of the flatten.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, execSync } from 'node:child_process';
import {
  lstatSync,
  chmodSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  chownSync,
  utimesSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Mounts } from './helpers/mounts.ts';
import { snapshotTree } from './helpers/tree-snapshot.ts';
import { runStrata, strataJson } from './helpers/cli.ts';
import type { Commit } from '../store/types.ts';

let work: string;
let data: string;
const mounts = new Mounts('strata-oracle-');

function makeBase(dir: string) {
  const w = (p: string, c: string, mode = 0o644) => {
    mkdirSync(join(dir, p, '..'), { recursive: true });
    writeFileSync(join(dir, p), c);
    chmodSync(join(dir, p), mode);
  };
  w('etc/hostname', 'base\n');
  w('etc/old', 'to be deleted\n');
  w('etc/keep', 'kept\n');
  w('usr/bin/tool', '#!/bin/sh\necho tool\n', 0o755);
  w('opt/app/a', 'a\n');
  w('opt/app/sub/b', 'b\n');
  w('srv/data/file', 'data\n');
  w('var/lib/x', 'x\n');
  symlinkSync('../usr/bin/tool', join(dir, 'etc/tool-link'));
  linkSync(join(dir, 'var/lib/x'), join(dir, 'var/lib/x-hard'));
  execFileSync('setfattr', ['-n', 'user.origin', '-v', 'base', join(dir, 'etc/keep')]);
  utimesSync(join(dir, 'etc/keep'), 1_600_000_000, 1_600_000_000);
  chmodSync(dir, 0o755);
}

/** Overlay over the given lower dirs (top first) with a fresh upper; returns mount point and upper. */
function writableOverlay(lowers: string[]) {
  const upper = mounts.dir();
  const wk = mounts.dir();
  chmodSync(upper, 0o755);
  const mnt = mounts.overlay(lowers, { upper, work: wk });
  return { mnt, upper };
}

function tarUpper(upper: string, out: string) {
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', upper, '-cf', out, '.']);
}

/** Exports COMMIT, mounts every layer, stacks them read-only; returns the mount point. */
async function mountExported(rev: string) {
  const dir = mounts.dir();
  await strataJson(['export', rev, dir], { data });
  const manifest = readFileSync(join(dir, 'manifest'), 'utf8');
  const layers = manifest
    .split('\n')
    .filter((l) => l.startsWith('layer '))
    .map((l) => l.split(' ')[1]!.slice('sha256:'.length));
  const lowers = layers.map((d) => mounts.squashfs(join(dir, d))).reverse();
  return lowers.length === 1 ? lowers[0]! : mounts.overlay(lowers);
}

const expected: Record<string, ReturnType<typeof snapshotTree>> = {};

/**
 * Hardlinks are checked as the pairs the test made: a read-only overlay
 * reports each lower layer's own inode numbers, so inode numbers from
 * different layers may collide and a generic grouping would lie.
 */
const links: Record<string, [string, string][]> = {
  r1: [
    ['usr/bin/tool', 'usr/bin/tool2'],
    ['home/dev/notes', 'home/dev/notes-link'],
    ['var/lib/x', 'var/lib/x-hard'],
  ],
  r2: [['usr/bin/tool', 'usr/bin/tool2']],
};
function expectLinked(root: string, pairs: [string, string][]) {
  for (const [a, b] of pairs) {
    const sa = lstatSync(join(root, a));
    const sb = lstatSync(join(root, b));
    expect(sa.nlink, `${a} should be a hardlink`).toBeGreaterThan(1);
    expect(sa.ino, `${a} and ${b} should be the same file`).toBe(sb.ino);
  }
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'strata-oracle-work-'));
  data = join(work, 'data');
  const base = join(work, 'base');
  mkdirSync(base);
  makeBase(base);
  const r = await runStrata(['import', 'lab', base, '--level', '3'], { data });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
});

afterAll(() => {
  mounts.cleanup();
  rmSync(work, { recursive: true, force: true });
});

describe('oracle: committed layers stack into exactly what the overlay showed', () => {
  it('round 1: creates, deletes, rmdir+mkdir, chmod, chown, symlinks, hardlinks, xattrs', async () => {
    const lower = await mountExported('lab');
    const { mnt, upper } = writableOverlay([lower]);
    writeFileSync(join(mnt, 'etc/new.conf'), 'new\n');
    execFileSync('setfattr', ['-n', 'user.color', '-v', 'blue', join(mnt, 'etc/new.conf')]);
    execFileSync('setfattr', ['-n', 'user.origin', '-v', 'changed', join(mnt, 'etc/keep')]);
    rmSync(join(mnt, 'etc/old'));
    rmSync(join(mnt, 'opt/app'), { recursive: true });
    mkdirSync(join(mnt, 'opt/app'));
    writeFileSync(join(mnt, 'opt/app/fresh'), 'fresh\n');
    chmodSync(join(mnt, 'etc/hostname'), 0o600);
    chownSync(join(mnt, 'srv/data/file'), 1000, 1001);
    symlinkSync('/etc/hostname', join(mnt, 'etc/abs-link'));
    linkSync(join(mnt, 'usr/bin/tool'), join(mnt, 'usr/bin/tool2'));
    mkdirSync(join(mnt, 'home/dev'), { recursive: true });
    writeFileSync(join(mnt, 'home/dev/notes'), 'n\n');
    linkSync(join(mnt, 'home/dev/notes'), join(mnt, 'home/dev/notes-link'));
    execSync(`mkfifo ${join(mnt, 'home/dev/pipe')}`);
    utimesSync(join(mnt, 'home/dev/notes'), 1_650_000_000, 1_650_000_000);
    expected.r1 = snapshotTree(mnt);
    mounts.unmount(mnt);
    tarUpper(upper, join(work, 'r1.tar'));
    const c = await strataJson<Commit>(['commit', 'lab', '--tar', join(work, 'r1.tar'), '-m', 'round 1'], { data });
    expect(c.manifest.layers).toHaveLength(2);
    const got = await mountExported('lab');
    expect(snapshotTree(got)).toEqual(expected.r1);
    expectLinked(got, links.r1!);
  });

  it('round 2 on top: delete what round 1 added, rewrite a base file, rmdir+mkdir again', async () => {
    const lower = await mountExported('lab');
    const { mnt, upper } = writableOverlay([lower]);
    rmSync(join(mnt, 'etc/new.conf'));
    writeFileSync(join(mnt, 'etc/keep'), 'rewritten\n');
    rmSync(join(mnt, 'home/dev'), { recursive: true });
    mkdirSync(join(mnt, 'home/dev'));
    writeFileSync(join(mnt, 'home/dev/again'), 'again\n');
    rmSync(join(mnt, 'var/lib/x'));
    symlinkSync('x-hard', join(mnt, 'var/lib/x'));
    expected.r2 = snapshotTree(mnt);
    mounts.unmount(mnt);
    tarUpper(upper, join(work, 'r2.tar'));
    await strataJson<Commit>(['commit', 'lab', '--tar', join(work, 'r2.tar'), '-m', 'round 2'], { data });
    const got = await mountExported('lab');
    expect(snapshotTree(got)).toEqual(expected.r2);
    expectLinked(got, links.r2!);
  });

  it('after flatten: one layer, the same tree', async () => {
    const c = await strataJson<Commit>(['flatten', 'lab'], { data });
    expect(c.manifest.layers).toHaveLength(1);
    const got = await mountExported('lab');
    expect(snapshotTree(got)).toEqual(expected.r2);
    expectLinked(got, links.r2!);
  });

  it('after rollback of the flatten: three layers again, the same tree', async () => {
    await strataJson(['rollback', 'lab'], { data });
    const log = await strataJson<Commit[]>(['log', 'lab'], { data });
    expect(log[0]!.manifest.layers).toHaveLength(3);
    const got = await mountExported('lab');
    expect(snapshotTree(got)).toEqual(expected.r2);
  });

  it('flatten --from keeps the base and merges the layers above it', async () => {
    const c = await strataJson<Commit>(['flatten', 'lab', '--from', 'lab~2'], { data });
    expect(c.manifest.layers).toHaveLength(2);
    const got = await mountExported('lab');
    expect(snapshotTree(got)).toEqual(expected.r2);
    expectLinked(got, links.r2!);
    const f = await runStrata(['fsck'], { data });
    expect(f.code).toBe(0);
  });
});
