/**
 * The metadata bomb of issue 11: one small push (~870 KB of zstd) of 75,000
 * empty files each carrying a 60 KB xattr (~4.6 GB of tar). It used to run
 * the server out of heap while baking, then again after every restart. Now
 * the metadata budget refuses it while it streams, with a reason the pusher
 * can act on, and the server goes on serving pushes. Real server, real SSH
 * push, real baker, tar2sqfs and zstd.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../server/main.ts';
import { bakeTar } from '../store/bake.ts';
import { importProfile, tempDir, waitForPushSettled } from './helpers/server-fixture.ts';
import { lastLine, makeKey, ssh2Run, zstdTar, type KeyPair } from './helpers/server-ssh.ts';
import { metadataBombZstd } from './helpers/metadata-bomb.ts';
import { makeTar, type Spec } from './helpers/tars.ts';

let tmp: ReturnType<typeof tempDir>;
let srv: RunningServer;
let key: KeyPair;
let bomb: Buffer;

beforeAll(async () => {
  tmp = tempDir('strata-bomb-');
  srv = await startServer({ dataDir: join(tmp.dir, 'data'), http: '127.0.0.1:0', ssh: '127.0.0.1:0', handleSignals: false, log: () => {} });
  await importProfile(srv.store, tmp.dir, 'lab');
  key = makeKey(tmp.dir, 'lab');
  srv.store.addKey('lab-client', key.publicLine, { admin: false, profiles: ['lab'] });
  bomb = await metadataBombZstd({ entries: 75_000, xattrBytes: 60_000 });
}, 240_000);

afterAll(async () => {
  await srv?.close();
  tmp?.cleanup();
});

const push = async (archive: Buffer, message: string) => {
  const head = srv.store.getProfile('lab').head!;
  const r = await ssh2Run({ port: srv.sshPort, privateKey: key.privateKey }, `push lab --parent ${head} -m '${message}'`, archive);
  expect(r.code, r.stderr).toBe(0);
  return lastLine(r.stdout);
};

describe('a metadata bomb pushed over SSH', () => {
  it('is rejected with the metadata limit as its reason, and the server then bakes the next push', async () => {
    expect(bomb.length).toBeLessThan(2 * 1024 * 1024);
    const headBefore = srv.store.getProfile('lab').head;
    const id = await push(bomb, 'bomb');
    const p = await waitForPushSettled(srv.store, id, 120_000);
    expect(p.state).toBe('rejected');
    expect(p.reason).toMatch(/more than \d+ bytes of metadata \(paths, link targets, xattrs\)/);
    expect(p.reason).toMatch(/limits\.max_metadata/);
    expect(existsSync(srv.store.pushArchivePath(id))).toBe(false);
    expect(srv.store.getProfile('lab').head).toBe(headBefore);
    // The pusher reads the same reason over SSH.
    const st = await ssh2Run({ port: srv.sshPort, privateKey: key.privateKey }, `status ${id}`);
    expect(st.stdout).toMatch(/rejected.*metadata/);

    const next = await push(zstdTar(tmp.dir, { 'etc/motd': 'after the bomb\n' }), 'after the bomb');
    const q = await waitForPushSettled(srv.store, next);
    expect(q.state).toBe('committed');
    expect(srv.store.getProfile('lab').head).toBe(q.commit);
  }, 240_000);
});

describe('the metadata budget while baking', () => {
  const bake = async (files: Record<string, Spec>, limits: { maxMetadataBytes?: number; maxEntryMetadataBytes?: number }) =>
    bakeTar(join(tmp.dir, await writeTarFile(files)), {
      tmpDir: tmp.dir,
      compressor: 'zstd',
      level: 3,
      maxUncompressedBytes: 1 << 30,
      maxEntries: 1_000_000,
      ...limits,
    });
  let n = 0;
  const writeTarFile = async (files: Record<string, Spec>) => {
    const name = `budget-${n++}.tar`;
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(tmp.dir, name), await makeTar(files));
    return name;
  };

  it('long symlink targets and paths count: many of them are refused with E_METADATA_LIMIT', async () => {
    const files: Record<string, Spec> = {};
    for (let i = 0; i < 200; i++) files[`links/${'d'.repeat(200)}/l${i}`] = { symlink: `/${'t'.repeat(4000)}` };
    await expect(bake(files, { maxMetadataBytes: 256 * 1024 })).rejects.toMatchObject({
      code: 'E_METADATA_LIMIT',
      message: expect.stringMatching(/more than 262144 bytes of metadata/),
    });
    // The same tree under a budget that holds it bakes.
    const ok = await bake(files, { maxMetadataBytes: 4 * 1024 * 1024 });
    expect(ok.entries.filter((e) => e.type === 'symlink')).toHaveLength(200);
  }, 60_000);

  it('one entry over the per-entry budget is refused by name', async () => {
    await expect(
      bake({ 'etc/big-xattr': { file: 'x', xattrs: { 'user.big': 'v'.repeat(20_000) } } }, { maxEntryMetadataBytes: 16 * 1024 }),
    ).rejects.toMatchObject({ code: 'E_METADATA_LIMIT', message: expect.stringMatching(/'etc\/big-xattr' carries \d+ bytes of metadata/) });
  }, 60_000);
});
