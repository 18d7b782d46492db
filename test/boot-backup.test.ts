/**
 * strata.backup: a local disk that caches layers by digest and keeps the
 * last good manifest. Three boots of one QEMU machine with a second disk:
 *   1. blank disk + strata.backup.format=1: formatted, cache filled;
 *   2. after a one-layer update: only the new layer is downloaded (the
 *      server's access log proves it);
 *   3. server stopped: the last good chain boots from the disk.
 * And a blank disk without strata.backup.format=1 is never formatted.
 *
 * The kernel is booted directly (as a local boot loader would: with the
 * server down, PXE could not fetch it either); layers come from a static
 * boot server whose access log counts requests and bytes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildInitrd } from '../cli/initrd-build.ts';
import { findKernel, proofs, runQemu, strataLines } from './helpers/qemu.ts';
import { makeTestChain, startStaticBootServer, type StaticBootServer, type TestChain } from './helpers/static-boot-server.ts';
import { readDiskImage } from './helpers/mounts.ts';

const kernel = findKernel();
let dir: string;
let initrd: string;
let chain: TestChain;
let srv: StaticBootServer;

function blankDisk(path: string, mb = 64): void {
  execFileSync('truncate', ['-s', `${mb}M`, path]);
}

const boot = (server: string, commit: string, disk: string, backup: string) =>
  runQemu({
    kernel: kernel.path,
    initrd,
    disks: [disk],
    append: `console=ttyS0 panic=-1 quiet strata.server=${server} strata.commit=${commit} strata.backup=${backup} strata.reboot.delay=0 strata.retries=2`,
    timeoutMs: 90_000,
  });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-boot-backup-'));
  initrd = (await buildInitrd({ output: join(dir, 'initrd.img'), kernelVersion: kernel.version })).output;
  chain = await makeTestChain(dir);
  srv = await startStaticBootServer({ dir: join(dir, 'srv'), kernel: kernel.path, initrd });
}, 120_000);

afterAll(async () => {
  await srv?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('backup disk', () => {
  const disk = () => join(dir, 'backup.img');
  let base: { digest: string; size: number };
  let middle: { digest: string; size: number };
  let top: { digest: string; size: number };
  let v1: string;
  let v2: string;

  it('first boot formats the blank disk (strata.backup.format=1) and fills the cache', async () => {
    blankDisk(disk());
    base = await srv.addObject(chain.layers.base);
    middle = await srv.addObject(chain.layers.middle);
    v1 = await srv.addManifest([base, middle]);
    const r = await boot(srv.guestUrl, v1, disk(), '/dev/vda strata.backup.format=1');
    const p = proofs(r.output);
    expect(p.commit, r.output.slice(-3000)).toBe(v1);
    expect(p.middle).toBe('middle');
    expect(p.top).toBe('missing');
    expect(strataLines(r.output)).toContain('strata: layers ready: 2 downloaded, 0 from the backup disk');
    const blk = execFileSync('blkid', ['-o', 'export', disk()], { encoding: 'utf8' });
    expect(blk).toMatch(/^TYPE=ext4$/m);
    expect(blk).toMatch(/^LABEL=strata-backup$/m);
    readDiskImage(disk(), (root) => {
      expect(readdirSync(join(root, 'strata/objects')).sort()).toEqual([base.digest, middle.digest].sort());
      expect(readFileSync(join(root, 'strata/last-good.id'), 'utf8').trim()).toBe(v1);
      expect(readFileSync(join(root, 'strata/last-good.manifest'), 'utf8')).toBe(readFileSync(join(dir, 'srv/manifests', v1), 'utf8'));
    });
  }, 120_000);

  it('second boot after a one-layer update downloads only the new layer', async () => {
    top = await srv.addObject(chain.layers.top);
    v2 = await srv.addManifest([base, middle, top], { parent: v1 });
    const before = srv.log.length;
    const r = await boot(srv.guestUrl, v2, disk(), 'LABEL=strata-backup');
    const p = proofs(r.output);
    expect(p.commit, r.output.slice(-3000)).toBe(v2);
    expect(p.top).toBe('top');
    expect(p.whiteout).toBe('gone');
    // The access log: the manifest and the one new layer, nothing else.
    expect(srv.log.slice(before).map((e) => e.url)).toEqual([`/v1/commits/${v2}/manifest`, `/objects/sha256/${top.digest}`]);
    expect(strataLines(r.output)).toContain('strata: layers ready: 1 downloaded, 2 from the backup disk');
    readDiskImage(disk(), (root) => {
      expect(readFileSync(join(root, 'strata/last-good.id'), 'utf8').trim()).toBe(v2);
      expect(readdirSync(join(root, 'strata/objects'))).toHaveLength(3);
    });
  }, 120_000);

  it('third boot with the server stopped boots the last good chain from the disk', async () => {
    const url = srv.guestUrl;
    await srv.close();
    const r = await boot(url, v2, disk(), 'LABEL=strata-backup');
    const p = proofs(r.output);
    expect(p.commit, r.output.slice(-3000)).toBe(v2);
    expect(p['root-fstype']).toBe('overlay');
    expect(p.top).toBe('top');
    expect(p.whiteout).toBe('gone');
    expect(p.rw).toBe('writable');
    const lines = strataLines(r.output);
    expect(
      lines.some((l) =>
        /^strata: warning: server http:\/\/10\.0\.2\.2:\d+ unreachable after 2 attempts .*booting the last good commit from the backup disk$/.test(
          l,
        ),
      ),
      lines.join('\n'),
    ).toBe(true);
    expect(lines).toContain(`strata: booting last good commit ${v2} from the backup disk`);
    expect(lines.filter((l) => l.startsWith('strata: error:'))).toEqual([]);
  }, 120_000);
});

describe('a blank backup disk without strata.backup.format=1', () => {
  let other: StaticBootServer;
  beforeAll(async () => {
    other = await startStaticBootServer({ dir: join(dir, 'srv2'), kernel: kernel.path, initrd });
  });
  afterAll(async () => {
    await other?.close();
  });

  it('is left alone: one warning, then the machine boots from the network', async () => {
    const blank = join(dir, 'blank.img');
    blankDisk(blank, 16);
    const b = await other.addObject(chain.layers.base);
    const id = await other.addManifest([b]);
    const r = await boot(other.guestUrl, id, blank, '/dev/vda');
    expect(proofs(r.output).commit, r.output.slice(-3000)).toBe(id);
    const warnings = strataLines(r.output).filter((l) => l.startsWith('strata: warning:'));
    expect(warnings).toEqual([
      'strata: warning: backup disk /dev/vda has no ext4 file system; booting without a local cache (add strata.backup.format=1 to format it)',
    ]);
    // Never formatted: still all zeros as far as blkid can tell.
    expect(spawnSync('blkid', [blank]).status).not.toBe(0);
  }, 120_000);
});
