/**
 * Quotas and the free-space reserve (issue 11, item 3), against a real
 * `strata serve` and OpenSSH pushes: a push over its key's quota, over the
 * store's quota, or into the reserve kept for the database and gc is refused
 * with a message that says which limit and what to do; nothing is stored for
 * it (no push, no file in incoming/, the branch unmoved); a push that fits
 * still lands, and gc runs at the limit.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readdirSync, statfsSync } from 'node:fs';
import { startServer, type RunningServer } from '../server/main.ts';
import { DEFAULT_CONFIG } from '../store/types.ts';
import { ERRORS } from '../protocol/errors.ts';
import { importProfile, tempDir, waitForPushSettled } from './helpers/server-fixture.ts';
import { lastLine, makeKey, opensshExec, zstdTar, type KeyPair } from './helpers/server-ssh.ts';

let tmp: ReturnType<typeof tempDir>;
let srv: RunningServer;
let alice: KeyPair;
let bob: KeyPair;

beforeAll(async () => {
  tmp = tempDir('strata-quota-');
  srv = await startServer({ dataDir: `${tmp.dir}/data`, http: '127.0.0.1:0', ssh: '127.0.0.1:0', handleSignals: false, log: () => {} });
  await importProfile(srv.store, tmp.dir, 'lab');
  alice = makeKey(tmp.dir, 'alice');
  bob = makeKey(tmp.dir, 'bob');
  srv.store.addKey('alice', alice.publicLine, { admin: false, profiles: ['lab'] });
  srv.store.addKey('bob', bob.publicLine, { admin: false, profiles: ['lab'] });
}, 120_000);

afterEach(() => {
  Object.assign(srv.store.config, { storeQuotaBytes: 0, keyQuotaBytes: 0 });
  delete srv.store.config.reserveBytes;
});

afterAll(async () => {
  await srv?.close();
  tmp?.cleanup();
});

/** What a refused push must not change: the pushes, the branch, and files in incoming/ of no recorded push. */
const state = () => {
  const pushes = srv.store.listPushes({ limit: 1000 }).map((p) => p.id);
  // (A just-committed push's archive is removed after its transaction: not counted, it may come or go.)
  const strays = readdirSync(srv.store.incomingDir).filter((f) => !f.startsWith('.') && !pushes.includes(f.split('.')[0]));
  return { pushes, strays, head: srv.store.getProfile('lab').head };
};

/** Incompressible content: the pushed archive is about `bytes` long. */
const archive = (bytes: number) => zstdTar(tmp.dir, { [`srv/${randomBytes(4).toString('hex')}`]: randomBytes(bytes) });

async function push(key: KeyPair, body: Buffer, message: string) {
  const head = srv.store.getProfile('lab').head!;
  return opensshExec(srv.sshPort, key.privateFile, `push lab --parent ${head} -m ${message}`, body);
}

async function pushLands(key: KeyPair, body: Buffer, message: string): Promise<void> {
  const r = await push(key, body, message);
  expect(r.code, r.stderr).toBe(0);
  const p = await waitForPushSettled(srv.store, lastLine(r.stdout));
  expect(p.state, p.reason ?? '').toBe('committed');
}

describe('push quotas', () => {
  it('the error table knows the refusals: a quota is the pusher’s to wait out, a busy key likewise', () => {
    expect(ERRORS.E_QUOTA_EXCEEDED.http).toBe(413);
    expect(ERRORS.E_QUOTA_EXCEEDED.transient).toBe(true);
    expect(ERRORS.E_TOO_BUSY.http).toBe(429);
    expect(DEFAULT_CONFIG.keyQuotaBytes).toBe(0); // no quota unless the admin sets one
  });

  it('a key over its quota is refused with the limit named; nothing is stored; another key still pushes', async () => {
    srv.store.config.keyQuotaBytes = 600 * 1024;
    await pushLands(alice, archive(400 * 1024), 'first');
    const before = state();
    const r = await push(alice, archive(400 * 1024), 'over');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/key alice is over its quota of 600 KiB \(\d+ KiB in queued and stored pushes\)/);
    expect(r.stderr).toMatch(/nothing was stored/);
    expect(r.stderr).toMatch(/limits\.key_quota/);
    expect(state()).toEqual(before);
    // Bob has his own quota.
    await pushLands(bob, archive(400 * 1024), 'bobs');
    // A small push of Alice's still fits.
    await pushLands(alice, archive(10 * 1024), 'small');
  }, 120_000);

  it('the store quota refuses every key once layers and queued pushes reach it', async () => {
    await pushLands(bob, archive(10 * 1024), 'warm');
    const used = (await srv.store.pushSpaceFacts('bob')).stored;
    srv.store.config.storeQuotaBytes = used + 100 * 1024;
    const before = state();
    const r = await push(bob, archive(300 * 1024), 'big');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/the store's quota of .* is used up/);
    expect(r.stderr).toMatch(/limits\.store_quota/);
    expect(state()).toEqual(before);
    await pushLands(bob, archive(1024), 'tiny');
  }, 120_000);

  it('pushes stop at the free-space reserve; boots, leases and gc still work', async () => {
    const st = statfsSync(srv.store.dataDir);
    srv.store.config.reserveBytes = st.bavail * st.bsize + 1024 ** 3; // more than is free
    const before = state();
    const r = await push(alice, archive(1024), 'reserved');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no space left for pushes: .* reserve/);
    expect(r.stderr).toMatch(/strata gc/);
    expect(state()).toEqual(before);
    srv.store.assign('default', 'lab');
    const boot = await fetch(`${srv.httpUrl}/v1/boot/ipxe?mac=52:54:00:dd:00:01`);
    expect(boot.status).toBe(200);
    expect(srv.store.listClients().some((c) => c.mac === '52:54:00:dd:00:01')).toBe(true);
    await srv.store.gc();
    expect((await srv.store.fsck()).problems).toEqual([]);
  }, 120_000);
});
