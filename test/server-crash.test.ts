/**
 * Crash safety of pushes: the server (a child process and its tar2sqfs)
 * is SIGKILLed in the middle of a bake; after a restart the push is baked,
 * committed exactly once, and fsck is clean.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Store } from '../store/store.ts';
import { importProfile, tempDir } from './helpers/server-fixture.ts';
import { lastLine, makeKey, opensshExec, ssh2Run, zstdTar, type KeyPair } from './helpers/server-ssh.ts';

const CHILD = fileURLToPath(new URL('./helpers/server-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

let tmp: ReturnType<typeof tempDir>;
let data: string;
let key: KeyPair;
let base: string;
const children = new Set<ChildProcess>();

function startChild(): Promise<{ child: ChildProcess; ssh: number; http: number; stderr: () => string }> {
  return new Promise((resolve, reject) => {
    // Its own process group, so a SIGKILL takes tar2sqfs down too, as a power cut would.
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, data], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let err = '';
    child.stderr!.on('data', (c) => (err += c));
    child.on('exit', () => children.delete(child));
    child.on('error', reject);
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', (line) => {
      const ports = JSON.parse(line) as { http: number; ssh: number };
      resolve({ child, ssh: ports.ssh, http: ports.http, stderr: () => err });
    });
    child.once('exit', (code) => reject(new Error(`server exited early (${code}): ${err}`)));
  });
}

function killGroup(child: ChildProcess, sig: NodeJS.Signals): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    try {
      process.kill(-child.pid!, sig);
    } catch {
      resolve();
    }
  });
}

async function status(port: number, id: string): Promise<string> {
  return (await ssh2Run({ port, privateKey: key.privateKey }, `status ${id}`)).stdout.trim();
}

async function waitStatus(port: number, id: string, want: RegExp, timeoutMs = 150_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await status(port, id);
    if (want.test(s)) return s;
    if (Date.now() > deadline) throw new Error(`push ${id}: still "${s}"`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  tmp = tempDir('strata-crash-');
  data = join(tmp.dir, 'data');
  const store = await Store.open(data, { create: true });
  base = (await importProfile(store, tmp.dir, 'lab')).base;
  // A slow compressor on incompressible data: the bake takes seconds, long enough to be killed in.
  store.setCompression('lab', 'zstd', 19);
  key = makeKey(tmp.dir, 'client');
  store.addKey('client', key.publicLine, { admin: false, profiles: ['lab'] });
  store.close();
}, 180_000);

afterAll(async () => {
  for (const c of [...children]) await killGroup(c, 'SIGKILL');
  tmp?.cleanup();
});

describe('SIGKILL during a bake', () => {
  it('the push is baked after restart, committed exactly once, and fsck is clean', async () => {
    const first = await startChild();
    const hostKey = readFileSync(join(data, 'ssh_host_ed25519'));
    const archive = zstdTar(tmp.dir, { 'opt/blob': randomBytes(32 * 1024 * 1024), 'etc/crash': 'survived\n' });
    const r = await opensshExec(first.ssh, key.privateFile, `push lab --parent ${base} -m crash-push`, archive);
    expect(r.code).toBe(0);
    const id = lastLine(r.stdout);
    await waitStatus(first.ssh, id, /^baking$/, 60_000);
    await new Promise((res) => setTimeout(res, 500)); // well inside tar2sqfs
    expect(await status(first.ssh, id)).toBe('baking');
    await killGroup(first.child, 'SIGKILL');

    const second = await startChild();
    expect(readFileSync(join(data, 'ssh_host_ed25519')).equals(hostKey)).toBe(true); // the host key is made once
    const done = await waitStatus(second.ssh, id, /^(committed|rejected)/);
    expect(done).toMatch(/^committed [0-9a-f]{64}$/);
    const commit = done.split(' ')[1];
    await killGroup(second.child, 'SIGTERM');

    // A third start must not bake it again.
    const third = await startChild();
    await new Promise((res) => setTimeout(res, 1500));
    expect(await status(third.ssh, id)).toBe(done);
    await killGroup(third.child, 'SIGTERM');

    const store = await Store.open(data);
    try {
      const log = store.log('lab');
      expect(log.map((c) => c.id)).toEqual([commit, base]);
      expect(log.filter((c) => c.message === 'crash-push')).toHaveLength(1);
      expect(store.listRefs().filter((ref) => ref.name.startsWith('lab/'))).toEqual([]);
      expect(store.getPush(id)).toMatchObject({ state: 'committed', commit });
      expect(readdirSync(store.incomingDir)).toEqual([]);
      const fsck = await store.fsck();
      expect(fsck.problems).toEqual([]);
      expect(fsck.ok).toBe(true);
    } finally {
      store.close();
    }
  }, 400_000);
});
