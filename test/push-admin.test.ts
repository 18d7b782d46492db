/**
 * Pushes that cannot land end, instead of being retried forever: a bake
 * that throws anything but an I/O-shaped error rejects the push with that
 * error at once; one that keeps failing for a reason that may pass (the tool
 * missing) is rejected after maxBakeAttempts. Admins see the attempts and the
 * last error (`strata pushes`, GET /v1/pushes) and can reject a waiting push
 * (`strata push reject ID`, POST /v1/pushes/:id/reject). Real server, SSH
 * pushes, the baker, tar2sqfs, the strata command.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../server/main.ts';
import { Baker } from '../server/baker.ts';
import { Store } from '../store/store.ts';
import type { Push } from '../store/types.ts';
import { runStrata, strataJson } from './helpers/cli.ts';
import { importProfile, tempDir, waitForPushSettled } from './helpers/server-fixture.ts';
import { lastLine, makeKey, ssh2Run, zstdTar, type KeyPair } from './helpers/server-ssh.ts';

let tmp: ReturnType<typeof tempDir>;
let srv: RunningServer;
let key: KeyPair;
let token: string;
const realPath = process.env.PATH;

beforeAll(async () => {
  tmp = tempDir('strata-push-admin-');
  srv = await startServer({ dataDir: join(tmp.dir, 'data'), http: '127.0.0.1:0', ssh: '127.0.0.1:0', handleSignals: false, log: () => {} });
  await importProfile(srv.store, tmp.dir, 'lab');
  key = makeKey(tmp.dir, 'lab');
  srv.store.addKey('lab-client', key.publicLine, { admin: false, profiles: ['lab'] });
  token = srv.store.createToken('admin').token;
}, 180_000);

afterAll(async () => {
  process.env.PATH = realPath;
  delete process.env.STRATA_FAULT;
  await srv?.close();
  tmp?.cleanup();
});

const push = async (files: Record<string, string> | Buffer, message: string): Promise<string> => {
  const head = srv.store.getProfile('lab').head!;
  const archive = Buffer.isBuffer(files) ? files : zstdTar(tmp.dir, files);
  const r = await ssh2Run({ port: srv.sshPort, privateKey: key.privateKey }, `push lab --parent ${head} -m '${message}'`, archive);
  expect(r.code, r.stderr).toBe(0);
  return lastLine(r.stdout);
};

/** A PATH with zstd (to read the archive) but no tar2sqfs: a bake fails the way a half-installed server's does. */
function pathWithoutTar2sqfs(): string {
  const bin = join(tmp.dir, 'bin-no-tar2sqfs');
  mkdirSync(bin, { recursive: true });
  const zstd = execFileSync('sh', ['-c', 'command -v zstd'], { encoding: 'utf8' }).trim();
  if (!existsSync(join(bin, 'zstd'))) symlinkSync(zstd, join(bin, 'zstd'));
  return bin;
}

async function until<T>(what: string, get: () => T | undefined, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('a bake that fails for a reason other than I/O', () => {
  it('rejects the push with the error at its first attempt, and the server bakes the next one', async () => {
    process.env.STRATA_FAULT = 'bake-throw';
    let id: string;
    try {
      id = await push({ 'etc/motd': 'provokes an unexpected error\n' }, 'unexpected');
      const p = await waitForPushSettled(srv.store, id, 20_000);
      expect(p).toMatchObject({ state: 'rejected', attempts: 1 });
      expect(p.reason).toMatch(/Invalid string length/);
    } finally {
      delete process.env.STRATA_FAULT;
    }
    expect(existsSync(srv.store.pushArchivePath(id))).toBe(false);
    const next = await waitForPushSettled(srv.store, await push({ 'etc/motd': 'fine\n' }, 'fine'));
    expect(next.state).toBe('committed');
  }, 120_000);
});

describe('a push waiting for a failing bake, rejected over the admin API', () => {
  it('shows its attempts and last error, is rejected by POST /v1/pushes/:id/reject, and a second reject is 409', async () => {
    const archive = zstdTar(tmp.dir, { 'etc/motd': 'waits for tar2sqfs\n' });
    process.env.PATH = pathWithoutTar2sqfs();
    let id: string;
    try {
      id = await push(archive, 'waiting');
      // The first attempt fails (tar2sqfs missing): queued again, retried in a minute.
      const p = await until('the first failed attempt', () => {
        const q = srv.store.getPush(id);
        return q.state === 'queued' && q.lastError ? q : undefined;
      });
      expect(p.attempts).toBe(1);
      expect(p.lastError).toMatch(/tar2sqfs/);
    } finally {
      process.env.PATH = realPath;
    }
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const listed = (await (await fetch(`${srv.httpUrl}/v1/pushes`, { headers: auth })).json()) as { pushes: Push[] };
    expect(listed.pushes.find((q) => q.id === id)).toMatchObject({
      state: 'queued',
      attempts: 1,
      lastError: expect.stringMatching(/tar2sqfs/),
    });

    const r = await fetch(`${srv.httpUrl}/v1/pushes/${id}/reject`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ reason: 'not wanted' }),
    });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { push: Push }).push).toMatchObject({ id, state: 'rejected', reason: 'not wanted' });
    expect(existsSync(srv.store.pushArchivePath(id))).toBe(false);
    expect(srv.store.getPush(id).state).toBe('rejected');

    const again = await fetch(`${srv.httpUrl}/v1/pushes/${id}/reject`, { method: 'POST', headers: auth, body: '{}' });
    expect(again.status).toBe(409);
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe('E_NOTHING_TO_DO');
    const noToken = await fetch(`${srv.httpUrl}/v1/pushes/${id}/reject`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(noToken.status).toBe(401);
  }, 120_000);
});

describe('a push whose bake keeps failing for a reason that may pass', () => {
  it('is rejected after maxBakeAttempts with the last error, never retried forever', async () => {
    const data = join(tmp.dir, 'data-attempts');
    const store = await Store.open(data, { create: true, config: { maxBakeAttempts: 3 } });
    const base = (await importProfile(store, tmp.dir, 'lab')).base;
    const id = 'pattempts000001';
    writeFileSync(store.pushArchivePath(id), zstdTar(tmp.dir, { 'etc/motd': 'never bakes\n' }));
    store.createPush({ id, profile: 'lab', parent: base, message: 'never bakes', author: 'lab-client', bytes: 100 });
    const logs: string[] = [];
    const baker = new Baker({ store, watch: false, retryMs: 100, log: (m) => logs.push(m) });
    process.env.PATH = pathWithoutTar2sqfs();
    let p: Push;
    try {
      baker.enqueue(id);
      p = await waitForPushSettled(store, id, 60_000);
    } finally {
      process.env.PATH = realPath;
      await baker.stop();
    }
    expect(p).toMatchObject({ state: 'rejected', attempts: 3 });
    expect(p.reason).toMatch(/failed 3 times/);
    expect(p.reason).toMatch(/tar2sqfs/);
    expect(logs.filter((l) => l.includes('will retry'))).toHaveLength(2);
    expect(existsSync(store.pushArchivePath(id))).toBe(false);

    // The admin's view of it, from the command line.
    store.close();
    const listed = await strataJson<Push[]>(['pushes'], { data });
    expect(listed.find((q) => q.id === id)).toMatchObject({ state: 'rejected', attempts: 3 });
    const human = await runStrata(['pushes'], { data });
    expect(human.stdout).toMatch(new RegExp(`${id}\\trejected\\tlab\\t.*3 attempt\\(s\\)\\t.*failed 3 times`));
  }, 120_000);
});

describe('a push another process queues', () => {
  it('is baked when its archive reached incoming/ before its row (as `strata keys approve` moves it in)', async () => {
    const store = await Store.open(join(tmp.dir, 'data-late-row'), { create: true });
    const base = (await importProfile(store, tmp.dir, 'lab')).base;
    const baker = new Baker({ store, rescanMs: 200 });
    await baker.start();
    try {
      const id = 'platerow0000001';
      writeFileSync(store.pushArchivePath(id), zstdTar(tmp.dir, { 'etc/motd': 'approved later\n' }));
      // The watch has seen the archive and found no row for it by now.
      await new Promise((r) => setTimeout(r, 1000));
      expect(() => store.getPush(id)).toThrow();
      store.createPush({ id, profile: 'lab', parent: base, message: 'approved later', author: 'lab-client', bytes: 100 });
      const p = await waitForPushSettled(store, id, 30_000);
      expect(p.state).toBe('committed');
      expect(store.getProfile('lab').head).toBe(p.commit);
    } finally {
      await baker.stop();
      store.close();
    }
  }, 60_000);
});

describe('strata push reject', () => {
  it('rejects a queued push and deletes its archive; a push already rejected is exit 8', async () => {
    const data = join(tmp.dir, 'data-cli');
    const store = await Store.open(data, { create: true });
    const base = (await importProfile(store, tmp.dir, 'lab')).base;
    const id = 'pcliqueued00001';
    writeFileSync(store.pushArchivePath(id), zstdTar(tmp.dir, { 'etc/motd': 'queued\n' }));
    store.createPush({ id, profile: 'lab', parent: base, message: 'queued', author: 'lab-client', bytes: 100 });
    store.close();

    expect((await strataJson<Push[]>(['pushes'], { data })).map((q) => [q.id, q.state, q.attempts])).toEqual([[id, 'queued', 0]]);
    const r = await runStrata(['push', 'reject', id, '--reason', 'broken on purpose'], { data });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`rejected push ${id} (lab): broken on purpose\n`);
    expect(existsSync(join(data, 'incoming', `${id}.tar.zst`))).toBe(false);
    expect((await strataJson<Push[]>(['pushes'], { data }))[0]).toMatchObject({ id, state: 'rejected', reason: 'broken on purpose' });

    const again = await runStrata(['push', 'reject', id], { data });
    expect(again.code).toBe(8);
    expect(again.stderr).toMatch(/already rejected/);
    const unknown = await runStrata(['push', 'reject', 'pnosuchpush0001'], { data });
    expect(unknown.code).toBe(4);
  }, 120_000);
});
