/**
 * Server down: `commit` returns at once, the push waits in the spool,
 * survives the sender being killed (an agent restart), and a new agent
 * process sends it exactly once when the server comes back. Refusals keep
 * the archive. Uses the small real ssh2 push endpoint of the helpers.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { freePort } from './helpers/ports.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { startFakePushServer, type FakePushServer } from './helpers/fake-push-server.ts';
import { runAgent } from './helpers/agent-overlay.ts';

const COMMIT0 = 'c'.repeat(64);
let dir: string;
let keyFile: string;
const servers: FakePushServer[] = [];
const started: number[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'strata-agent-spool-'));
  keyFile = join(dir, 'agent_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyFile]);
  writeFileSync(join(dir, 'agent.json'), JSON.stringify({ retryBaseMs: 200, retryMaxMs: 1500 }));
});

afterEach(async () => {
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already exited */
    }
  }
  for (const s of servers.splice(0)) await s.close();
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function upperWith(name: string, files: Record<string, string>): string {
  const u = join(dir, name);
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(join(u, p, '..'), { recursive: true });
    writeFileSync(join(u, p), c);
  }
  return u;
}

const args = (port: number, upper: string, state: string) => [
  '--config',
  join(dir, 'agent.json'),
  '--server',
  '127.0.0.1',
  '--ssh-port',
  String(port),
  '--key',
  keyFile,
  '--upper',
  upper,
  '--state-dir',
  state,
  '--cmdline',
  '',
];

async function server(port?: number, extra: Partial<Parameters<typeof startFakePushServer>[0]> = {}): Promise<FakePushServer> {
  const s = await startFakePushServer({
    dir: join(dir, `recv-${Math.random().toString(36).slice(2)}`),
    authorizedKey: readFileSync(`${keyFile}.pub`, 'utf8'),
    ...(port ? { port } : {}),
    ...extra,
  });
  servers.push(s);
  return s;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
const spoolArchives = (state: string) =>
  existsSync(join(state, 'spool')) ? readdirSync(join(state, 'spool')).filter((n) => n.endsWith('.tar.zst')) : [];

describe('spool and retries', () => {
  it('server down: commit returns at once; after a restart a new agent sends the push exactly once', async () => {
    const port = await freePort();
    const upper = upperWith('u1', { 'etc/hostname': 'one\n' });
    const state = join(dir, 's1');
    const c = await runAgent([
      ...args(port, upper, state),
      '--json',
      'commit',
      '-m',
      'while down',
      '--profile',
      'lab',
      '--parent',
      COMMIT0,
    ]);
    expect(c.code, c.stderr).toBe(0);
    const out = JSON.parse(c.stdout) as { spoolId: string; senderPid: number };
    started.push(out.senderPid);
    // "At once": the commit did not wait for the dead server (generous bound for slow CI).
    expect(c.ms).toBeLessThan(30_000);
    expect(spoolArchives(state)).toEqual([`${out.spoolId}.tar.zst`]);
    const spooledSha = sha(join(state, 'spool', `${out.spoolId}.tar.zst`));

    // The background sender keeps retrying with backoff...
    await until(
      () => /retry \d+ in/.test(existsSync(join(state, 'send.log')) ? readFileSync(join(state, 'send.log'), 'utf8') : ''),
      30_000,
      'a retry in send.log',
    );
    expect(alive(out.senderPid)).toBe(true);
    // ...until the agent is restarted (killed without warning).
    process.kill(out.senderPid, 'SIGKILL');
    await until(() => !alive(out.senderPid), 10_000, 'the sender to die');
    expect(spoolArchives(state)).toHaveLength(1);

    const s = await server(port);
    const send = await runAgent([...args(port, upper, state), '--json', 'send']);
    expect(send.code, send.stderr).toBe(0);
    expect(s.pushes).toHaveLength(1);
    expect(s.pushes[0]).toMatchObject({ profile: 'lab', parent: COMMIT0, message: 'while down', sha256: spooledSha });
    expect(spoolArchives(state)).toEqual([]);

    const again = await runAgent([...args(port, upper, state), 'send']);
    expect(again.code).toBe(0);
    expect(s.pushes).toHaveLength(1);

    const st = await runAgent([...args(port, upper, state), '--json', 'status']);
    const status = JSON.parse(st.stdout) as { pending: unknown[]; pushes: Array<{ pushId: string; status: string }> };
    expect(status.pending).toEqual([]);
    expect(status.pushes).toEqual([expect.objectContaining({ pushId: s.pushes[0]!.id, status: 'committed' })]);
  });

  it('the background sender delivers by itself once the server comes up, and a second commit stacks on the first', async () => {
    const port = await freePort();
    const upper = upperWith('u2', { 'etc/a': 'a\n' });
    const state = join(dir, 's2');
    const c1 = await runAgent([...args(port, upper, state), '--json', 'commit', '-m', 'one', '--profile', 'lab', '--parent', COMMIT0]);
    expect(c1.code, c1.stderr).toBe(0);
    writeFileSync(join(upper, 'etc/b'), 'b\n');
    const c2 = await runAgent([...args(port, upper, state), '--json', 'commit', '-m', 'two', '--profile', 'lab', '--parent', COMMIT0]);
    expect(c2.code, c2.stderr).toBe(0);
    for (const r of [c1, c2]) started.push((JSON.parse(r.stdout) as { senderPid: number }).senderPid);
    expect(spoolArchives(state)).toHaveLength(2);

    const s = await server(port);
    await until(() => s.pushes.length === 2 && spoolArchives(state).length === 0, 60_000, 'both pushes');
    await new Promise((r) => setTimeout(r, 1500));
    expect(s.pushes.map((p) => p.message)).toEqual(['one', 'two']);
    // The second push goes onto the commit the first became (the fake answers committed <sha of archive>).
    expect(s.pushes[1]!.parent).toBe(s.pushes[0]!.sha256);
  });

  it('a refused push is kept (not lost, not retried forever) and can be queued again', async () => {
    const upper = upperWith('u3', { 'etc/x': 'x\n' });
    const state = join(dir, 's3');
    let refuse = true;
    const s = await server(undefined, { refuse: () => (refuse ? 'profile lab is not yours' : null) });
    const c = await runAgent([...args(s.port, upper, state), 'commit', '-m', 'no', '--profile', 'lab', '--parent', COMMIT0, '--no-send']);
    expect(c.code, c.stderr).toBe(0);
    const r = await runAgent([...args(s.port, upper, state), 'send']);
    expect(r.stderr).toMatch(/refused.*profile lab is not yours/);
    expect(s.pushes).toHaveLength(0);
    expect(readdirSync(join(state, 'spool', 'failed')).filter((n) => n.endsWith('.tar.zst'))).toHaveLength(1);
    const st = JSON.parse((await runAgent([...args(s.port, upper, state), '--json', 'status', '--offline'])).stdout) as {
      failed: Array<{ reason: string }>;
    };
    expect(st.failed[0]!.reason).toMatch(/not yours/);
    refuse = false;
    const again = await runAgent([...args(s.port, upper, state), 'send', '--retry-failed']);
    expect(again.code, again.stderr).toBe(0);
    expect(s.pushes).toHaveLength(1);
  });

  it('refuses to talk to a server whose host key changed (trust on first use)', async () => {
    const upper = upperWith('u4', { 'etc/y': 'y\n' });
    const state = join(dir, 's4');
    const s1 = await server();
    await runAgent([...args(s1.port, upper, state), 'commit', '-m', 'a', '--profile', 'lab', '--parent', COMMIT0, '--no-send']);
    expect((await runAgent([...args(s1.port, upper, state), 'send', '--once'])).code).toBe(0);
    await s1.close();
    const s2 = await server(s1.port); // same address, new host key
    writeFileSync(join(upper, 'etc/z'), 'z\n');
    await runAgent([...args(s2.port, upper, state), 'commit', '-m', 'b', '--profile', 'lab', '--parent', COMMIT0, '--no-send']);
    const r = await runAgent([...args(s2.port, upper, state), 'send', '--once']);
    expect(r.code).toBe(1);
    expect(s2.pushes).toHaveLength(0);
    expect(spoolArchives(state)).toHaveLength(1);
  });
});
