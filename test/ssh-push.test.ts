/**
 * The SSH endpoint as clients see it: OpenSSH `ssh` and the ssh2 client,
 * real pushes baked by the real baker into real commits.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../server/main.ts';
import { commitFiles, importProfile, tempDir, waitForPushSettled } from './helpers/server-fixture.ts';
import { lastLine, makeKey, opensshExec, ssh2Connect, ssh2Exec, ssh2Run, zstdTar, type KeyPair } from './helpers/server-ssh.ts';

let tmp: ReturnType<typeof tempDir>;
let srv: RunningServer;
let keys: Record<'lab' | 'admin' | 'stranger', KeyPair>;
const MAX_PUSH = 24 * 1024 * 1024;

beforeAll(async () => {
  tmp = tempDir('strata-ssh-');
  srv = await startServer({
    dataDir: join(tmp.dir, 'data'),
    http: '127.0.0.1:0',
    ssh: '127.0.0.1:0',
    handleSignals: false,
    log: () => {},
    maxPushBytes: MAX_PUSH,
  });
  await importProfile(srv.store, tmp.dir, 'lab', { 'etc/hostname': 'lab\n', 'etc/shared': 'v0\n' });
  await importProfile(srv.store, tmp.dir, 'other');
  keys = { lab: makeKey(tmp.dir, 'lab'), admin: makeKey(tmp.dir, 'admin'), stranger: makeKey(tmp.dir, 'stranger') };
  srv.store.addKey('lab-client', keys.lab.publicLine, { admin: false, profiles: ['lab'] });
  srv.store.addKey('root', keys.admin.publicLine, { admin: true, profiles: [] });
}, 180_000);

afterAll(async () => {
  await srv?.close();
  tmp?.cleanup();
});

const head = (p = 'lab') => srv.store.getProfile(p).head!;

const commitsWithMessage = (msg: string) =>
  srv.store.log('lab').filter((c) => c.message === msg).length +
  srv.store
    .listRefs()
    .filter((r) => r.name.startsWith('lab/push-'))
    .flatMap((r) => srv.store.log(r.name))
    .filter((c) => c.message === msg && c.kind === 'push' && srv.store.log('lab').every((l) => l.id !== c.id)).length;

describe('push', () => {
  it('OpenSSH: a 10 MB push is answered with its id at once, then committed once (fast-forward)', async () => {
    const parent = head();
    const archive = zstdTar(tmp.dir, { 'opt/big': randomBytes(10 * 1024 * 1024), 'etc/motd': 'pushed\n' });
    expect(archive.length).toBeGreaterThan(10 * 1024 * 1024);
    const r = await opensshExec(srv.sshPort, keys.lab.privateFile, `push lab --parent ${parent} -m 'first push'`, archive);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const id = lastLine(r.stdout);
    expect(id).toMatch(/^p[0-9a-z]{15}$/);
    expect(existsSync(join(srv.store.incomingDir, `${id}.tar.zst`)) || srv.store.getPush(id).state !== 'queued').toBe(true);
    const p = await waitForPushSettled(srv.store, id);
    expect(p).toMatchObject({ state: 'committed', branch: null, author: 'lab-client' });
    expect(head()).toBe(p.commit);
    expect(srv.store.getCommit(p.commit!).parent).toBe(parent);
    expect(commitsWithMessage('first push')).toBe(1);
    const st = await opensshExec(srv.sshPort, keys.lab.privateFile, `status ${id}`);
    expect(st.stdout).toBe(`committed ${p.commit}\n`);
    expect(st.code).toBe(0);
  });

  it('ssh2 client: the id of a 10 MB push arrives at once, before the bake is done', async () => {
    const archive = zstdTar(tmp.dir, { 'opt/big2': randomBytes(10 * 1024 * 1024) });
    const conn = await ssh2Connect({ port: srv.sshPort, privateKey: keys.lab.privateKey });
    try {
      const r = await ssh2Exec(conn, `push lab --parent ${head()} -m timed`, archive);
      expect(r.code).toBe(0);
      // Not a stopwatch (CI machines differ): the answer comes while the push still waits for or is in its bake.
      expect(['queued', 'baking']).toContain(srv.store.getPush(lastLine(r.stdout)).state);
      expect((await waitForPushSettled(srv.store, lastLine(r.stdout))).state).toBe('committed');
    } finally {
      conn.end();
    }
  });

  it('status reports queued, baking, committed and rejected with the reason', async () => {
    // States as the store records them (a push the baker never saw stays queued).
    srv.store.createPush({ id: 'pstatusqueued01', profile: 'lab', parent: head(), message: 'x', author: 'lab-client', bytes: 1 });
    const q = await ssh2Run({ port: srv.sshPort, privateKey: keys.lab.privateKey }, 'status pstatusqueued01');
    expect(q.stdout).toBe('queued\n');
    srv.store.setPushState('pstatusqueued01', 'baking');
    expect((await ssh2Run({ port: srv.sshPort, privateKey: keys.lab.privateKey }, 'status pstatusqueued01')).stdout).toBe('baking\n');

    // A zstd stream of random bytes: accepted on the wire, rejected by the baker, and it says why.
    const garbage = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(200_000)]);
    const r = await opensshExec(srv.sshPort, keys.lab.privateFile, `push lab --parent ${head()}`, garbage);
    expect(r.code).toBe(0);
    const id = lastLine(r.stdout);
    const p = await waitForPushSettled(srv.store, id);
    expect(p.state).toBe('rejected');
    const st = await opensshExec(srv.sshPort, keys.lab.privateFile, `status ${id}`);
    expect(st.stdout).toMatch(/^rejected \S.*\n$/);
    expect(st.stdout).toContain(p.reason!.split('\n')[0].slice(0, 20));
  });

  it('log lists commits newest first as "<id> <time> <message>"', async () => {
    const r = await opensshExec(srv.sshPort, keys.lab.privateFile, 'log lab');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^${head()} \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ timed$`));
    expect(lines.length).toBe(srv.store.log('lab').length);
  });
});

describe('refusals (and the server keeps serving)', () => {
  it('an unknown key may only ask to be enrolled: it reads nothing and its push is held, not baked', async () => {
    const r = await opensshExec(srv.sshPort, keys.stranger.privateFile, 'log lab');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^strata: key SHA256:\S+ is pending approval as k[0-9a-f]{10}; .*strata keys approve/);
    expect(r.stdout).toBe('');
    const before = head();
    const p = await opensshExec(srv.sshPort, keys.stranger.privateFile, `push lab --parent ${before}`, zstdTar(tmp.dir, { x: 'y' }));
    expect(p.code, p.stderr).toBe(0);
    const id = p.stdout.trim();
    const st = await opensshExec(srv.sshPort, keys.stranger.privateFile, `status ${id}`);
    expect(st.stdout).toMatch(/^pending key k[0-9a-f]{10} SHA256:\S+ awaits approval/);
    expect(() => srv.store.getPush(id)).toThrow();
    expect(head()).toBe(before);
  });

  it('password and keyboard-interactive auth are refused', async () => {
    await expect(ssh2Connect({ port: srv.sshPort, password: 'secret' })).rejects.toThrow(/authentication methods failed/);
    await expect(ssh2Connect({ port: srv.sshPort, tryKeyboard: true })).rejects.toThrow(/authentication methods failed/);
  });

  it('a key for another profile cannot push, read its log or see its pushes', async () => {
    const before = head('other');
    const r = await opensshExec(srv.sshPort, keys.lab.privateFile, `push other --parent ${before}`, zstdTar(tmp.dir, { x: 'y' }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^strata: key lab-client may not push to profile other/);
    expect(r.stdout).toBe('');
    expect(head('other')).toBe(before);
    const l = await opensshExec(srv.sshPort, keys.lab.privateFile, 'log other');
    expect(l.code).toBe(1);
    // An admin key may.
    const a = await opensshExec(
      srv.sshPort,
      keys.admin.privateFile,
      `push other --parent ${before} -m admin`,
      zstdTar(tmp.dir, { 'etc/admin': 'yes\n' }),
    );
    expect(a.code).toBe(0);
    expect((await waitForPushSettled(srv.store, lastLine(a.stdout))).state).toBe('committed');
  });

  it('unknown commands and bad arguments exit 2 with usage; bad parents and non-zstd data exit 1', async () => {
    const u = await opensshExec(srv.sshPort, keys.lab.privateFile, 'rm -rf /');
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/unknown command "rm"[\s\S]*usage:/);
    const m = await opensshExec(srv.sshPort, keys.lab.privateFile, 'push lab');
    expect(m.code).toBe(2);
    expect(m.stderr).toContain('--parent');
    const bp = await opensshExec(srv.sshPort, keys.lab.privateFile, `push lab --parent ${'e'.repeat(64)}`, zstdTar(tmp.dir, { x: 'y' }));
    expect(bp.code).toBe(1);
    expect(bp.stderr).toMatch(/^strata: .*e{12}/);
    const before = srv.store.listPushes().length;
    const raw = await opensshExec(srv.sshPort, keys.lab.privateFile, `push lab --parent ${head()}`, randomBytes(300_000));
    expect(raw.code).toBe(1);
    expect(raw.stderr).toContain('not a zstd stream');
    expect(srv.store.listPushes().length).toBe(before);
  });

  it('a push over the size limit is refused and leaves nothing behind', async () => {
    const big = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(MAX_PUSH + 1024 * 1024)]);
    const before = srv.store.listPushes().length;
    const r = await ssh2Run({ port: srv.sshPort, privateKey: keys.lab.privateKey }, `push lab --parent ${head()}`, big);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/larger than \d+ bytes/);
    expect(srv.store.listPushes().length).toBe(before);
    expect(readdirSync(srv.store.incomingDir).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  it('an upload cut off before EOF is not recorded', async () => {
    const before = srv.store.listPushes().length;
    const conn = await ssh2Connect({ port: srv.sshPort, privateKey: keys.lab.privateKey });
    await new Promise<void>((resolve, reject) => {
      conn.exec(`push lab --parent ${head()}`, (err, stream) => {
        if (err) return reject(err);
        stream.write(Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(1024 * 1024)]), () => {
          setTimeout(() => {
            conn.end(); // no EOF: the connection just goes away
            resolve();
          }, 200);
        });
      });
    });
    await new Promise((r) => setTimeout(r, 500));
    expect(srv.store.listPushes().length).toBe(before);
    expect(readdirSync(srv.store.incomingDir).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  it('after all that, pushes still work', async () => {
    const r = await opensshExec(
      srv.sshPort,
      keys.lab.privateFile,
      `push lab --parent ${head()} -m still-alive`,
      zstdTar(tmp.dir, { 'etc/alive': '1\n' }),
    );
    expect(r.code).toBe(0);
    expect((await waitForPushSettled(srv.store, lastLine(r.stdout))).state).toBe('committed');
  });
});

describe('when the head moved', () => {
  it('a push touching no path changed since its parent stacks onto the head', async () => {
    const parent = head();
    const moved = await commitFiles(srv.store, tmp.dir, 'lab', { 'srv/a': 'a\n' }, 'admin moved the head');
    const r = await opensshExec(
      srv.sshPort,
      keys.lab.privateFile,
      `push lab --parent ${parent} -m stacked`,
      zstdTar(tmp.dir, { 'srv/b': 'b\n' }),
    );
    const p = await waitForPushSettled(srv.store, lastLine(r.stdout));
    expect(p).toMatchObject({ state: 'committed', branch: null });
    const c = srv.store.getCommit(p.commit!);
    expect(c.parent).toBe(moved);
    expect(c.mergeParent).toBe(parent);
    expect(head()).toBe(p.commit);
    expect((await opensshExec(srv.sshPort, keys.lab.privateFile, `status ${p.id}`)).stdout).toBe(`committed ${p.commit}\n`);
  });

  it('a push touching a path changed since its parent lands on a new branch and status says so', async () => {
    const parent = head();
    const moved = await commitFiles(srv.store, tmp.dir, 'lab', { 'etc/shared': 'admin\n' }, 'admin edits shared');
    const r = await opensshExec(
      srv.sshPort,
      keys.lab.privateFile,
      `push lab --parent ${parent} -m conflicting`,
      zstdTar(tmp.dir, { 'etc/shared': 'client\n' }),
    );
    const p = await waitForPushSettled(srv.store, lastLine(r.stdout));
    expect(p.state).toBe('committed');
    expect(p.branch).toBe(`lab/push-${p.id}`);
    expect(head()).toBe(moved);
    expect(srv.store.getCommit(p.commit!).parent).toBe(parent);
    expect((await opensshExec(srv.sshPort, keys.lab.privateFile, `status ${p.id}`)).stdout).toBe(
      `committed ${p.commit} branch lab/push-${p.id}\n`,
    );
  });
});

describe('concurrency', () => {
  it('ten pushes from ten clients at once all land, each exactly once', async () => {
    const parent = head();
    const n = 10;
    const archives = Array.from({ length: n }, (_, i) => zstdTar(tmp.dir, { [`var/client${i}/state`]: randomBytes(200_000) }));
    const results = await Promise.all(
      archives.map((a, i) =>
        i % 2 === 0
          ? opensshExec(srv.sshPort, keys.lab.privateFile, `push lab --parent ${parent} -m "client ${i}"`, a)
          : ssh2Run({ port: srv.sshPort, privateKey: keys.lab.privateKey }, `push lab --parent ${parent} -m "client ${i}"`, a),
      ),
    );
    for (const r of results) expect(r.code).toBe(0);
    const ids = results.map((r) => lastLine(r.stdout));
    expect(new Set(ids).size).toBe(n);
    const pushes = await Promise.all(ids.map((id) => waitForPushSettled(srv.store, id)));
    for (const p of pushes) expect(p).toMatchObject({ state: 'committed', branch: null });
    const log = srv.store.log('lab');
    for (let i = 0; i < n; i++) expect(log.filter((c) => c.message === `client ${i}`)).toHaveLength(1);
    expect(new Set(pushes.map((p) => p.commit)).size).toBe(n);
    expect((await srv.store.fsck()).ok).toBe(true);
  });
});
