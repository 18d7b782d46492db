/**
 * Pushes under random power cuts: a real `strata serve` is SIGKILLed 20
 * times (with its tar2sqfs: its own process group) while 8 clients make 80
 * pushes, each with its own push key, retrying whatever fails exactly as the
 * agent does. Once a server stays up, every push key has become exactly one
 * commit (lost = 0, duplicated = 0) and fsck is clean.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Store } from '../store/store.ts';
import { STRATA } from './helpers/cli.ts';
import { freePort, waitPort } from './helpers/ports.ts';
import { importProfile, tempDir } from './helpers/server-fixture.ts';
import { lastLine, makeKey, ssh2Run, zstdTar, type KeyPair } from './helpers/server-ssh.ts';

const KILLS = 20;
const CLIENTS = 8;
const PUSHES_PER_CLIENT = 10;

let tmp: ReturnType<typeof tempDir>;
let data: string;
let key: KeyPair;
let base: string;
let ports: { http: number; ssh: number };
const servers = new Set<ChildProcess>();

function serve(): ChildProcess {
  const child = spawn(STRATA, ['--data', data, 'serve', '--http', `127.0.0.1:${ports.http}`, '--ssh', `127.0.0.1:${ports.ssh}`], {
    detached: true, // its own process group: a SIGKILL takes tar2sqfs down too, as a power cut would
    stdio: 'ignore',
  });
  servers.add(child);
  child.on('exit', () => servers.delete(child));
  return child;
}

function kill(child: ChildProcess, sig: NodeJS.Signals): Promise<void> {
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One attempt; null when the server was down or went down meanwhile. */
async function attempt(command: string, input?: Buffer): Promise<{ code: number | null; stdout: string } | null> {
  const timeout = sleep(20_000).then(() => null);
  const run = ssh2Run({ port: ports.ssh, privateKey: key.privateKey }, command, input).catch(() => null);
  return Promise.race([run, timeout]);
}

/** Pushes until a push id is answered, as the agent does: the same push key on every retry. */
async function pushWithRetries(pushKey: string, archive: Buffer): Promise<{ id: string; attempts: number }> {
  for (let attempts = 1; ; attempts++) {
    const r = await attempt(`push lab --parent ${base} --push-key ${pushKey} -m ${pushKey}`, archive);
    const id = r?.code === 0 ? lastLine(r.stdout) : '';
    if (/^p[0-9a-z]{15}$/.test(id)) return { id, attempts };
    await sleep(200 + Math.random() * 300);
  }
}

beforeAll(async () => {
  tmp = tempDir('strata-crash-pushes-');
  data = join(tmp.dir, 'data');
  const store = await Store.open(data, { create: true });
  base = (await importProfile(store, tmp.dir, 'lab')).base;
  store.setCompression('lab', 'lz4', null); // fast bakes: the test is about kills, not compression
  key = makeKey(tmp.dir, 'client');
  store.addKey('client', key.publicLine, { admin: false, profiles: ['lab'] });
  store.close();
  ports = { http: await freePort(), ssh: await freePort() };
}, 180_000);

afterAll(async () => {
  for (const c of [...servers]) await kill(c, 'SIGKILL');
  tmp?.cleanup();
});

describe('SIGKILL under concurrent pushes', () => {
  it(`${KILLS} kills of strata serve during ${CLIENTS * PUSHES_PER_CLIENT} pushes with push keys: lost = 0, duplicated = 0, fsck clean`, async () => {
    const jobs = Array.from({ length: CLIENTS }, (_, c) =>
      Array.from({ length: PUSHES_PER_CLIENT }, (_, i) => {
        const pushKey = `crash-c${c}-p${i}-${Math.random().toString(36).slice(2, 10)}`;
        return { pushKey, archive: zstdTar(tmp.dir, { [`srv/${pushKey}`]: `${pushKey}\n` }) };
      }),
    );
    let kills = 0;
    let last: ChildProcess | null = null;
    const killer = (async () => {
      while (kills < KILLS) {
        const child = serve();
        await waitPort(ports.ssh, 60_000).catch(() => {});
        // Up for a while: long enough for uploads and bakes to be under way, short enough to cut some.
        await sleep(500 + Math.random() * 2000);
        await kill(child, 'SIGKILL');
        kills++;
      }
      // Then a server that stays up: it finishes every push.
      last = serve();
    })();
    const answered = await Promise.all(
      jobs.map(async (pushes) => {
        const got: { pushKey: string; id: string; attempts: number }[] = [];
        for (const p of pushes) {
          got.push({ pushKey: p.pushKey, ...(await pushWithRetries(p.pushKey, p.archive)) });
          await sleep(Math.random() * 800);
        }
        return got;
      }),
    ).then((a) => a.flat());
    await killer;
    expect(kills).toBe(KILLS);
    expect(answered.some((a) => a.attempts > 1)).toBe(true); // the kills did cut pushes

    await waitPort(ports.ssh, 60_000);
    const deadline = Date.now() + 180_000;
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        for (const a of answered.filter((_, i) => i % CLIENTS === c)) {
          for (;;) {
            const s = (await attempt(`status ${a.id}`))?.stdout.trim() ?? '';
            if (/^(committed|rejected)/.test(s)) {
              expect(s, a.pushKey).toMatch(/^committed [0-9a-f]{64}$/);
              break;
            }
            if (Date.now() > deadline) throw new Error(`push ${a.id} (${a.pushKey}) still "${s}"`);
            await sleep(300);
          }
        }
      }),
    );
    await kill(last!, 'SIGTERM');

    const store = await Store.open(data);
    try {
      const commits = store.graph('lab').commits;
      const lost: string[] = [];
      const duplicated: string[] = [];
      for (const a of answered) {
        // One push per key, the one the client was told, and exactly one commit of it.
        const push = store.findPushByKey('client', 'lab', a.pushKey);
        expect(push?.id, a.pushKey).toBe(a.id);
        const n = commits.filter((c) => c.message === a.pushKey).length;
        if (n === 0) lost.push(a.pushKey);
        if (n > 1) duplicated.push(a.pushKey);
      }
      expect({ lost, duplicated }).toEqual({ lost: [], duplicated: [] });
      expect(store.listPushes({ limit: 1000 }).length).toBe(CLIENTS * PUSHES_PER_CLIENT);
      // Every pushed file is in the head.
      const head = store.getProfile('lab').head!;
      const added = store.diff(base, head).added;
      for (const a of answered) expect(added).toContain(`srv/${a.pushKey}`);
      const fsck = await store.fsck();
      expect(fsck.problems).toEqual([]);
    } finally {
      store.close();
    }
  }, 600_000);
});
