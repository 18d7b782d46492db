/**
 * `watch` on a real overlay: writes through the merged mount; no commit while
 * a burst of writes goes on, one commit after the quiet period, and it is sent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Mounts } from './helpers/mounts.ts';
import { AGENT_BIN, makeSquashfs, mountOverlay, writeBaseTree, type TestOverlay } from './helpers/agent-overlay.ts';
import { startFakePushServer, type FakePushServer } from './helpers/fake-push-server.ts';

let m: Mounts;
let ov: TestOverlay;
let srv: FakePushServer;
let watcher: ChildProcess | null = null;
let log = '';
const keyFile = () => join(m.base, 'agent_key');

beforeAll(async () => {
  m = new Mounts('strata-agent-watch-');
  const tree = m.dir('tree');
  writeBaseTree(tree);
  const sqfs = join(m.base, 'base.sqfs');
  makeSquashfs(tree, sqfs);
  ov = mountOverlay(m, sqfs);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyFile()]);
  srv = await startFakePushServer({ dir: m.dir('recv'), authorizedKey: readFileSync(`${keyFile()}.pub`, 'utf8') });
}, 180_000);

afterAll(async () => {
  if (watcher && watcher.exitCode === null) {
    watcher.kill('SIGKILL');
  }
  await srv?.close();
  m?.cleanup();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; agent log:\n${log}`);
    await sleep(100);
  }
}

const tarList = (file: string) => execFileSync('sh', ['-c', `zstd -dc '${file}' | tar -tf -`], { encoding: 'utf8' }).split('\n');

describe('watch', () => {
  it('commits after the quiet period, not during a burst of writes, never twice for one burst', async () => {
    const state = m.dir('state');
    watcher = spawn(
      AGENT_BIN,
      [
        '--server',
        '127.0.0.1',
        '--ssh-port',
        String(srv.port),
        '--key',
        keyFile(),
        '--upper',
        ov.upper,
        '--state-dir',
        state,
        '--cmdline',
        '',
        'watch',
        '--quiet',
        '2',
        '--profile',
        'lab',
        '--parent',
        'a'.repeat(64),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    watcher.stdout!.on('data', (b) => (log += b));
    watcher.stderr!.on('data', (b) => (log += b));
    await until(() => log.includes('watching'), 60_000, 'the watcher to start');

    // A burst: a write every 150 ms for 6 s, three times longer than the quiet time.
    const burstEnd = Date.now() + 6000;
    let n = 0;
    while (Date.now() < burstEnd) {
      writeFileSync(join(ov.merged, `etc/burst-${n % 5}`), `write ${n}\n`);
      writeFileSync(join(ov.merged, 'etc/hostname'), `host ${n}\n`);
      n++;
      await sleep(150);
      expect(srv.pushes, `a push arrived during the burst (write ${n}); log:\n${log}`).toHaveLength(0);
    }
    const lastContent = `host ${n - 1}\n`;
    await until(() => srv.pushes.length === 1, 60_000, 'the commit after the burst');
    await sleep(5000);
    expect(srv.pushes).toHaveLength(1);
    const p = srv.pushes[0]!;
    expect(p.message).toMatch(/^auto: \d+ changes? \(/);
    expect(tarList(p.file)).toEqual(expect.arrayContaining(['./etc/hostname', './etc/burst-0', './etc/burst-4']));
    const hostname = execFileSync('sh', ['-c', `zstd -dc '${p.file}' | tar -xOf - ./etc/hostname`], { encoding: 'utf8' });
    expect(hostname).toBe(lastContent);

    // A later change makes a second commit.
    writeFileSync(join(ov.merged, 'etc/after'), 'after\n');
    await until(() => srv.pushes.length === 2, 60_000, 'the second commit');
    expect(tarList(srv.pushes[1]!.file)).toContain('./etc/after');

    watcher.kill('SIGTERM');
    await new Promise((r) => watcher!.once('close', r));
  });
});
