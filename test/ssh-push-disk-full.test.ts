/**
 * A push to a server whose disk is full: the client is told why, in words,
 * with a non-zero exit; nothing half-written stays in incoming/; what was
 * stored before is untouched; and a push that fits still lands afterwards.
 * The data directory lives on a small tmpfs (a real ENOSPC, not a mock).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../server/main.ts';
import { importProfile, tempDir, waitForPushSettled } from './helpers/server-fixture.ts';
import { lastLine, makeKey, opensshExec, zstdTar, type KeyPair } from './helpers/server-ssh.ts';

let tmp: ReturnType<typeof tempDir>;
let mnt: string;
let srv: RunningServer;
let key: KeyPair;

beforeAll(async () => {
  tmp = tempDir('strata-ssh-full-');
  mnt = join(tmp.dir, 'small');
  mkdirSync(mnt);
  // Room for the store, its profile and a small push; not for a 12 MB one.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=10m', 'strata-test-full', mnt]);
  srv = await startServer({ dataDir: join(mnt, 'data'), http: '127.0.0.1:0', ssh: '127.0.0.1:0', handleSignals: false, log: () => {} });
  await importProfile(srv.store, tmp.dir, 'lab', { 'etc/hostname': 'lab\n' });
  key = makeKey(tmp.dir, 'lab');
  srv.store.addKey('lab-client', key.publicLine, { admin: false, profiles: ['lab'] });
}, 120_000);

afterAll(async () => {
  await srv?.close();
  if (mnt) execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
  tmp?.cleanup();
});

const pushes = () => srv.store.listPushes({ limit: 1000 });
const incoming = () => readdirSync(srv.store.incomingDir);

describe('push to a full disk', () => {
  it('is refused with a clear message, leaves nothing behind, and a push that fits lands afterwards', async () => {
    const head = srv.store.getProfile('lab').head!;
    // Incompressible content: the zstd stream is as large as the data.
    const big = zstdTar(tmp.dir, { 'srv/blob': randomBytes(12 * 1024 * 1024) });
    const r = await opensshExec(srv.sshPort, key.privateFile, `push lab --parent ${head} -m big`, big);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no space left/i);
    expect(r.stderr).toMatch(/strata gc/);
    // Nothing half-written, no push recorded, the branch where it was.
    expect(incoming().filter((f) => !f.startsWith('.'))).toEqual([]);
    expect(pushes().filter((p) => p.message === 'big')).toEqual([]);
    expect(srv.store.getProfile('lab').head).toBe(head);
    expect((await srv.store.fsck()).problems).toEqual([]);

    // The refused upload's partial file is gone, so its space is back: a push that fits lands.
    const small = zstdTar(tmp.dir, { 'srv/small': 'fits\n' });
    const ok = await opensshExec(srv.sshPort, key.privateFile, `push lab --parent ${head} -m small`, small);
    expect(ok.code, ok.stderr).toBe(0);
    const p = await waitForPushSettled(srv.store, lastLine(ok.stdout));
    expect(p.state).toBe('committed');
    expect(srv.store.getProfile('lab').head).toBe(p.commit);
  }, 120_000);
});
