/**
 * Idempotent SSH pushes (`push ... --push-key KEY`): a push whose answer was
 * lost with the connection, sent again with the same key, is answered with
 * the id of the push already stored and is baked once. Real server (store,
 * ssh2 endpoint, baker), real OpenSSH and ssh2 clients, the real agent; the
 * cut connection is a real TCP proxy dropped at the moment the server has
 * recorded the push and is about to print its id.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { startServer, type RunningServer } from '../server/main.ts';
import { createSshServer, loadOrCreateHostKey } from '../server/ssh-server.ts';
import { parseSshCommand } from '../protocol/ssh-push.ts';
import { openDb, SCHEMA_VERSION } from '../store/db.ts';
import { runAgent } from './helpers/agent-overlay.ts';
import { importProfile, tempDir, waitForPushSettled } from './helpers/server-fixture.ts';
import { lastLine, makeKey, opensshExec, ssh2Connect, ssh2Run, zstdTar, type KeyPair } from './helpers/server-ssh.ts';

let tmp: ReturnType<typeof tempDir>;
let srv: RunningServer;
let keys: Record<'lab' | 'admin', KeyPair>;
let base: string;

/** A second SSH endpoint on the same store whose onPush hook can cut the connection through `proxy`. */
let cutting: { server: ReturnType<typeof createSshServer>; port: number };
let proxy: CutProxy;
/** How many pushes the cutting endpoint recorded, and how many connections it cut. */
const seen = { recorded: 0, cuts: 0 };
let cutNext = false;

interface CutProxy {
  port: number;
  cutAll(): void;
  close(): Promise<void>;
}

/** A TCP proxy to 127.0.0.1:target that can drop every connection at once, like a network that goes away. */
async function startProxy(target: number): Promise<CutProxy> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((down) => {
    const up = net.connect(target, '127.0.0.1');
    const pair: [net.Socket, net.Socket] = [down, up];
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    down.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    cutAll: () => {
      for (const [down, up] of [...pairs]) {
        // Destroy the server side first: nothing it writes from now on can reach the client.
        up.destroy();
        down.destroy();
      }
      pairs.clear();
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

beforeAll(async () => {
  tmp = tempDir('strata-ssh-idem-');
  const dataDir = join(tmp.dir, 'data');
  srv = await startServer({ dataDir, http: '127.0.0.1:0', ssh: '127.0.0.1:0', handleSignals: false, log: () => {} });
  base = (await importProfile(srv.store, tmp.dir, 'lab', { 'etc/hostname': 'lab\n', 'etc/shared': 'v0\n' })).base;
  keys = { lab: makeKey(tmp.dir, 'lab'), admin: makeKey(tmp.dir, 'admin') };
  srv.store.addKey('lab-client', keys.lab.publicLine, { admin: false, profiles: ['lab'] });
  srv.store.addKey('root', keys.admin.publicLine, { admin: true, profiles: [] });

  const server = createSshServer({
    store: srv.store,
    hostKey: await loadOrCreateHostKey(dataDir),
    log: () => {},
    onPush: (id) => {
      seen.recorded++;
      // Called after the push is fsynced and recorded, right before its id is written to the client.
      if (cutNext) {
        cutNext = false;
        seen.cuts++;
        proxy.cutAll();
      }
      srv.baker.enqueue(id);
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  cutting = { server, port: (server.address() as AddressInfo).port };
  proxy = await startProxy(cutting.port);
}, 180_000);

afterAll(async () => {
  await proxy?.close();
  if (cutting) await new Promise<void>((resolve) => cutting.server.close(() => resolve()));
  await srv?.close();
  tmp?.cleanup();
});

const head = () => srv.store.getProfile('lab').head!;
const pushesWithMessage = (msg: string) => srv.store.listPushes({ limit: 10_000 }).filter((p) => p.message === msg);
/** Commits with this message anywhere: on the profile and on any push branch (where a duplicate would land). */
const commitsWithMessage = (msg: string) => {
  const ids = new Set<string>();
  for (const r of srv.store.listRefs())
    if (r.name === 'lab' || r.name.startsWith('lab/')) for (const c of srv.store.log(r.name)) if (c.message === msg) ids.add(c.id);
  return ids.size;
};
const incomingArchives = () => readdirSync(srv.store.incomingDir).filter((f) => f.includes('.tar.zst'));
/** The baker deletes a landed push's archive just after its commit transaction: give it a moment. */
async function incomingSettled(): Promise<string[]> {
  const deadline = Date.now() + 10_000;
  while (incomingArchives().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return incomingArchives();
}
const newKey = () => randomBytes(16).toString('base64url');

describe('push --push-key', () => {
  it('the same key twice: one push id, one stored push, one commit (OpenSSH)', async () => {
    const k = newKey();
    const archive = zstdTar(tmp.dir, { 'etc/twice': 'twice\n' });
    const before = srv.store.listPushes({ limit: 10_000 }).length;
    const a = await opensshExec(srv.sshPort, keys.lab.privateFile, `push lab --parent ${head()} --push-key ${k} -m twice`, archive);
    expect(a.stderr).toBe('');
    expect(a.code).toBe(0);
    const id = lastLine(a.stdout);
    expect(id).toMatch(/^p[0-9a-z]{15}$/);
    expect((await waitForPushSettled(srv.store, id)).state).toBe('committed');

    // The retry of a client that never saw the answer (after the bake, even with the head moved).
    const b = await opensshExec(srv.sshPort, keys.lab.privateFile, `push lab --parent ${base} --push-key=${k} -m twice`, archive);
    expect(b.code).toBe(0);
    expect(b.stdout).toBe(a.stdout); // the same answer, in the same format
    expect(srv.store.listPushes({ limit: 10_000 }).length).toBe(before + 1);
    await new Promise((r) => setTimeout(r, 500)); // a second bake, if one had been queued, would have started
    expect(commitsWithMessage('twice')).toBe(1);
    expect(await incomingSettled()).toEqual([]);
    const st = await opensshExec(srv.sshPort, keys.lab.privateFile, `status ${id}`);
    expect(st.stdout).toBe(`committed ${srv.store.getPush(id).commit}\n`);
  });

  it('the key is scoped to the SSH key that sent it: another key with the same push key makes its own push', async () => {
    const k = newKey();
    const mine = await opensshExec(
      srv.sshPort,
      keys.lab.privateFile,
      `push lab --parent ${head()} --push-key ${k} -m scoped-a`,
      zstdTar(tmp.dir, { 'etc/scoped-a': 'a\n' }),
    );
    const theirs = await opensshExec(
      srv.sshPort,
      keys.admin.privateFile,
      `push lab --parent ${head()} --push-key ${k} -m scoped-b`,
      zstdTar(tmp.dir, { 'etc/scoped-b': 'b\n' }),
    );
    expect(mine.code).toBe(0);
    expect(theirs.code).toBe(0);
    expect(lastLine(theirs.stdout)).not.toBe(lastLine(mine.stdout));
    for (const r of [mine, theirs]) expect((await waitForPushSettled(srv.store, lastLine(r.stdout))).state).toBe('committed');
    expect(commitsWithMessage('scoped-a')).toBe(1);
    expect(commitsWithMessage('scoped-b')).toBe(1);
  });

  it('two uploads with one key at the same time make one push', async () => {
    const k = newKey();
    const archive = zstdTar(tmp.dir, { 'var/race': randomBytes(3 * 1024 * 1024) });
    const cmd = `push lab --parent ${head()} --push-key ${k} -m race`;
    const [a, b] = await Promise.all([
      opensshExec(srv.sshPort, keys.lab.privateFile, cmd, archive),
      ssh2Run({ port: srv.sshPort, privateKey: keys.lab.privateKey }, cmd, archive),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(lastLine(b.stdout)).toBe(lastLine(a.stdout));
    expect(pushesWithMessage('race')).toHaveLength(1);
    expect((await waitForPushSettled(srv.store, lastLine(a.stdout))).state).toBe('committed');
    expect(commitsWithMessage('race')).toBe(1);
    expect(await incomingSettled()).toEqual([]);
  });

  it('bad keys are refused with exit 2 and a sentence that says what a key is; nothing is stored', async () => {
    const before = srv.store.listPushes({ limit: 10_000 }).length;
    const archive = zstdTar(tmp.dir, { 'etc/bad-key': 'x\n' });
    for (const words of [
      '--push-key short',
      `--push-key ${'x'.repeat(65)}`,
      '--push-key has+plus/and=equals==',
      "--push-key 'with space in it here'",
      '--push-key=',
      '--push-key -m bad',
    ]) {
      const r = await opensshExec(srv.sshPort, keys.lab.privateFile, `push lab --parent ${head()} ${words}`, archive);
      expect(r.code, `${words}: ${r.stderr}`).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^strata: push: bad --push-key .*: a push key is 16 to 64 characters of A-Z a-z 0-9 _ -/);
    }
    const missing = await opensshExec(srv.sshPort, keys.lab.privateFile, `push lab --parent ${head()} -m bad --push-key`, archive);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^strata: push: --push-key needs a key/);
    const twice = await opensshExec(
      srv.sshPort,
      keys.lab.privateFile,
      `push lab --parent ${head()} --push-key ${newKey()} --push-key ${newKey()}`,
      archive,
    );
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain('--push-key given twice');
    expect(srv.store.listPushes({ limit: 10_000 }).length).toBe(before);
  });

  it('an upload that was not stored (cut before EOF, not zstd) does not block a retry with the same key', async () => {
    const k = newKey();
    const conn = await ssh2Connect({ port: srv.sshPort, privateKey: keys.lab.privateKey });
    await new Promise<void>((resolve, reject) => {
      conn.exec(`push lab --parent ${head()} --push-key ${k} -m retried`, (err, stream) => {
        if (err) return reject(err);
        stream.write(Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(512 * 1024)]), () => {
          setTimeout(() => {
            conn.end(); // no EOF: the connection goes away mid-upload
            resolve();
          }, 200);
        });
      });
    });
    const notZstd = await opensshExec(
      srv.sshPort,
      keys.lab.privateFile,
      `push lab --parent ${head()} --push-key ${k} -m retried`,
      randomBytes(100_000),
    );
    expect(notZstd.code).toBe(1);
    expect(notZstd.stderr).toContain('not a zstd stream');
    await new Promise((r) => setTimeout(r, 300));
    expect(pushesWithMessage('retried')).toHaveLength(0);

    const ok = await opensshExec(
      srv.sshPort,
      keys.lab.privateFile,
      `push lab --parent ${head()} --push-key ${k} -m retried`,
      zstdTar(tmp.dir, { 'etc/retried': 'ok\n' }),
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect((await waitForPushSettled(srv.store, lastLine(ok.stdout))).state).toBe('committed');
    expect(commitsWithMessage('retried')).toBe(1);
  });

  it('the store keeps the first push recorded under a key (the path of an upload that finished second)', () => {
    const k = newKey();
    const rec = (id: string, author = 'lab-client') =>
      srv.store.createPush({ id, profile: 'lab', parent: base, message: 'store-level', author, bytes: 1, pushKey: k });
    expect(rec('pidemstore00001').id).toBe('pidemstore00001');
    expect(rec('pidemstore00002').id).toBe('pidemstore00001');
    expect(rec('pidemstore00003', 'root').id).toBe('pidemstore00003');
    expect(() => srv.store.getPush('pidemstore00002')).toThrow(/no push/);
    expect(srv.store.findPushByKey('lab-client', 'lab', k)?.id).toBe('pidemstore00001');
    expect(srv.store.findPushByKey('lab-client', 'other', k)).toBeNull();
    expect(() =>
      srv.store.createPush({
        id: 'pidemstore00004',
        profile: 'lab',
        parent: base,
        message: 'x',
        author: 'k',
        bytes: 1,
        pushKey: 'bad key',
      }),
    ).toThrow(/not a push key/);
  });

  it('the key is found by word, not by text: a message "--push-key" stays a message', () => {
    expect(parseSshCommand(['push', 'lab', '--parent', 'abc', '-m', '--push-key'])).toEqual({
      cmd: 'push',
      profile: 'lab',
      parent: 'abc',
      message: '--push-key',
      pushKey: null,
    });
    expect(parseSshCommand(['push', 'lab', '--push-key', 'A'.repeat(16), '--parent', 'abc'])).toEqual({
      cmd: 'push',
      profile: 'lab',
      parent: 'abc',
      message: '',
      pushKey: 'A'.repeat(16),
    });
    expect(() => parseSshCommand(['push', 'lab', '--parent', 'abc', '--push-key', 'A'.repeat(16), '--push-key', 'B'.repeat(16)])).toThrow(
      /given twice/,
    );
    expect(parseSshCommand(['status', '--push-key'])).toEqual({ cmd: 'status', id: '--push-key' });
  });
});

describe('the agent', () => {
  let n = 0;
  function agentSetup(files: Record<string, string>) {
    const d = join(tmp.dir, `agent-${++n}`);
    const upper = join(d, 'upper');
    for (const [p, c] of Object.entries(files)) {
      mkdirSync(join(upper, p, '..'), { recursive: true });
      writeFileSync(join(upper, p), c);
    }
    const state = join(d, 'state');
    writeFileSync(join(d, 'agent.json'), JSON.stringify({ retryBaseMs: 200, retryMaxMs: 1000 }));
    const args = (port: number) => [
      '--config',
      join(d, 'agent.json'),
      '--server',
      '127.0.0.1',
      '--ssh-port',
      String(port),
      '--key',
      keys.lab.privateFile,
      '--upper',
      upper,
      '--state-dir',
      state,
      '--cmdline',
      '',
    ];
    const spoolMeta = () => {
      const name = readdirSync(join(state, 'spool')).find((f) => f.endsWith('.json') && !f.startsWith('.'))!;
      return {
        file: join(state, 'spool', name),
        meta: JSON.parse(readFileSync(join(state, 'spool', name), 'utf8')) as { id: string; pushKey?: string },
      };
    };
    const sentIds = () =>
      (JSON.parse(readFileSync(join(state, 'state.json'), 'utf8')) as { pushes: Array<{ pushId: string; pushKey?: string }> }).pushes;
    return { args, state, spoolMeta, sentIds };
  }

  it('the connection dies after the server stored the push, before the agent read its id: the retry gets the same id, one commit', async () => {
    const a = agentSetup({ 'etc/cut': 'cut\n' });
    const c = await runAgent([...a.args(proxy.port), 'commit', '-m', 'cut-after-store', '--profile', 'lab', '--parent', base, '--no-send']);
    expect(c.code, c.stderr).toBe(0);
    const { meta } = a.spoolMeta();
    expect(meta.pushKey).toMatch(/^[A-Za-z0-9_-]{22}$/); // 128 random bits, base64url, made at spool time

    const cutsBefore = seen.cuts;
    const recordedBefore = seen.recorded;
    cutNext = true;
    const s = await runAgent([...a.args(proxy.port), 'send']);
    expect(s.code, s.stderr).toBe(0);
    expect(seen.cuts).toBe(cutsBefore + 1); // the cut really happened, after the server recorded the push
    expect(s.stderr).toMatch(/push \S+ failed \(.*\); retry 1 in/);
    expect(seen.recorded).toBe(recordedBefore + 1); // the retry was answered from the stored push

    const stored = pushesWithMessage('cut-after-store');
    expect(stored).toHaveLength(1);
    expect(a.sentIds()).toEqual([expect.objectContaining({ pushId: stored[0]!.id, pushKey: meta.pushKey })]);
    expect((await waitForPushSettled(srv.store, stored[0]!.id)).state).toBe('committed');
    await new Promise((r) => setTimeout(r, 500));
    expect(commitsWithMessage('cut-after-store')).toBe(1);
    expect(srv.store.listRefs().filter((r) => r.name.startsWith('lab/push-'))).toEqual([]);
  });

  it('after an agent restart the spooled push keeps its key: a push the dead sender got stored is not stored again', async () => {
    const a = agentSetup({ 'etc/restart': 'restart\n' });
    const c = await runAgent([
      ...a.args(srv.sshPort),
      'commit',
      '-m',
      'stored-before-restart',
      '--profile',
      'lab',
      '--parent',
      base,
      '--no-send',
    ]);
    expect(c.code, c.stderr).toBe(0);
    const { meta } = a.spoolMeta();
    // What the killed sender did before it died: the same archive, the same key (as OpenSSH sends it).
    const archive = readFileSync(join(a.state, 'spool', `${meta.id}.tar.zst`));
    const first = await opensshExec(
      srv.sshPort,
      keys.lab.privateFile,
      `push lab --parent ${base} --push-key ${meta.pushKey} -m stored-before-restart`,
      archive,
    );
    expect(first.code, first.stderr).toBe(0);

    const s = await runAgent([...a.args(srv.sshPort), 'send']);
    expect(s.code, s.stderr).toBe(0);
    expect(a.sentIds()).toEqual([expect.objectContaining({ pushId: lastLine(first.stdout) })]);
    expect(pushesWithMessage('stored-before-restart')).toHaveLength(1);
    expect((await waitForPushSettled(srv.store, lastLine(first.stdout))).state).toBe('committed');
    expect(commitsWithMessage('stored-before-restart')).toBe(1);
  });

  it('an entry spooled by an older agent (no key) gets one, saved before its first send, and is still sent once over a cut', async () => {
    const a = agentSetup({ 'etc/old-entry': 'old\n' });
    const c = await runAgent([...a.args(proxy.port), 'commit', '-m', 'old-spool-entry', '--profile', 'lab', '--parent', base, '--no-send']);
    expect(c.code, c.stderr).toBe(0);
    const { file, meta } = a.spoolMeta();
    delete meta.pushKey;
    writeFileSync(file, JSON.stringify(meta));
    cutNext = true;
    const s = await runAgent([...a.args(proxy.port), 'send']);
    expect(s.code, s.stderr).toBe(0);
    expect(cutNext).toBe(false);
    const stored = pushesWithMessage('old-spool-entry');
    expect(stored).toHaveLength(1);
    expect(a.sentIds()[0]!.pushKey).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect((await waitForPushSettled(srv.store, stored[0]!.id)).state).toBe('committed');
    expect(commitsWithMessage('old-spool-entry')).toBe(1);
  });
});

describe('schema', () => {
  it('a data directory from before push keys is migrated: old pushes kept, keys unique per author and profile', () => {
    const file = join(tmp.dir, 'old.db');
    const db = openDb(file);
    // Make it look like schema version 1 (no push_key column), with one push in it.
    db.exec('DROP INDEX pushes_push_key; ALTER TABLE pushes DROP COLUMN push_key; UPDATE schema_version SET version = 1');
    db.prepare(
      "INSERT INTO pushes (id, profile, parent, message, author, state, bytes, created_at, updated_at) VALUES ('pold', 'lab', 'c', 'm', 'k', 'committed', 1, 1, 1)",
    ).run();
    db.close();
    const again = openDb(file);
    expect((again.prepare('SELECT version FROM schema_version').get() as { version: number }).version).toBe(SCHEMA_VERSION);
    expect(again.prepare('SELECT id, push_key FROM pushes').all()).toEqual([{ id: 'pold', push_key: null }]);
    const ins = again.prepare(
      "INSERT INTO pushes (id, profile, parent, message, author, state, bytes, created_at, updated_at, push_key) VALUES (?, 'lab', 'c', 'm', ?, 'queued', 1, 1, 1, ?)",
    );
    ins.run('p1', 'k', null);
    ins.run('p2', 'k', 'KKKKKKKKKKKKKKKK');
    ins.run('p3', 'other', 'KKKKKKKKKKKKKKKK');
    expect(() => ins.run('p4', 'k', 'KKKKKKKKKKKKKKKK')).toThrow(/UNIQUE/);
    again.close();
    const ro = new Database(file, { readonly: true });
    expect(ro.prepare('SELECT count(*) AS n FROM pushes').get()).toEqual({ n: 4 });
    ro.close();
  });
});
