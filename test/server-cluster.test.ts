/**
 * `startServer({ httpWorkers: 2 })` as users see it: two real HTTP worker
 * processes (node:cluster) on one port, the primary with SSH and the baker,
 * events relayed between them, restarts, and nothing left running after
 * close() or SIGTERM.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { restartDelayMs } from '../server/cluster.ts';
import { startServer, type RunningServer } from '../server/main.ts';
import type { Push } from '../store/types.ts';
import { importProfile, tempDir } from './helpers/server-fixture.ts';
import { lastLine, makeKey, ssh2Run, zstdTar, type KeyPair } from './helpers/server-ssh.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

let tmp: ReturnType<typeof tempDir>;
let srv: RunningServer;
let key: KeyPair;
let token: string;
let kernel: { digest: string; bytes: Buffer };

beforeAll(async () => {
  tmp = tempDir('strata-cluster-');
  srv = await startServer({
    dataDir: join(tmp.dir, 'data'),
    http: '127.0.0.1:0',
    ssh: '127.0.0.1:0',
    handleSignals: false,
    log: () => {},
    httpWorkers: 2,
  });
  const p = await importProfile(srv.store, tmp.dir, 'lab');
  srv.store.assign('default', 'lab');
  const head = srv.store.getCommit(srv.store.getProfile('lab').head!);
  kernel = { digest: head.manifest.kernel!.digest, bytes: readFileSync(p.kernel) };
  key = makeKey(tmp.dir, 'lab');
  srv.store.addKey('lab-client', key.publicLine, { admin: false, profiles: ['lab'] });
  token = srv.store.createToken('ui').token;
}, 60_000);

afterAll(async () => {
  await srv?.close();
  tmp?.cleanup();
});

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function waitFor<T>(what: string, fn: () => T | undefined | false, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request on its own connection (no keep-alive), so the cluster hands each to a worker afresh. */
function get(path: string, headers: Record<string, string> = {}, port = srv.httpPort): Promise<Reply> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** The process that holds the server side of the TCP connection whose client port is `clientPort` (from /proc). */
function serverSidePid(clientPort: number, pids: number[]): number | undefined {
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');
  const line = readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .find((l) => {
      const f = l.trim().split(/\s+/);
      return f[1] === `0100007F:${hex(srv.httpPort)}` && f[2] === `0100007F:${hex(clientPort)}`;
    });
  if (!line) return undefined;
  const inode = line.trim().split(/\s+/)[9];
  return pids.find((pid) => {
    try {
      return readdirSync(`/proc/${pid}/fd`).some((fd) => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`;
        } catch {
          return false;
        }
      });
    } catch {
      return false;
    }
  });
}

interface SseClient {
  events: Array<{ type: string; data: Record<string, unknown> }>;
  localPort: number;
  close(): void;
}

function openSse(): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port: srv.httpPort, path: '/v1/events', agent: false, headers: { Authorization: `Bearer ${token}` } },
      (res) => {
        if (res.statusCode !== 200) return reject(new Error(`events: HTTP ${res.statusCode}`));
        const client: SseClient = { events: [], localPort: req.socket!.localPort!, close: () => req.destroy() };
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          buf += c;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const frame = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const type = /^event: (.*)$/m.exec(frame)?.[1];
            const data = /^data: (.*)$/m.exec(frame)?.[1];
            if (type && data) client.events.push({ type, data: JSON.parse(data) as Record<string, unknown> });
          }
        });
        res.on('error', () => {});
        // The first comment line means the worker has subscribed.
        res.once('data', () => resolve(client));
      },
    );
    req.on('error', reject);
  });
}

describe('httpWorkers = 2', () => {
  it('runs two worker processes besides this one', () => {
    const pids = srv.httpWorkerPids();
    expect(pids).toHaveLength(2);
    for (const pid of pids) {
      expect(pid).not.toBe(process.pid);
      expect(alive(pid)).toBe(true);
    }
  });

  it('serves many object requests with the same bytes, ETag, Range and 304 from either worker', async () => {
    const url = `/objects/sha256/${kernel.digest}`;
    const wantHash = createHash('sha256').update(kernel.bytes).digest('hex');
    expect(wantHash).toBe(kernel.digest);
    const replies = await Promise.all(
      Array.from({ length: 120 }, (_, i) => {
        if (i % 3 === 0) return get(url);
        if (i % 3 === 1) return get(url, { Range: 'bytes=1000-1999' });
        return get(url, { 'If-None-Match': `"${kernel.digest}"` });
      }),
    );
    replies.forEach((r, i) => {
      expect(r.headers.etag).toBe(`"${kernel.digest}"`);
      if (i % 3 === 0) {
        expect(r.status).toBe(200);
        expect(createHash('sha256').update(r.body).digest('hex')).toBe(kernel.digest);
      } else if (i % 3 === 1) {
        expect(r.status).toBe(206);
        expect(r.headers['content-range']).toBe(`bytes 1000-1999/${kernel.bytes.length}`);
        expect(r.body.equals(kernel.bytes.subarray(1000, 2000))).toBe(true);
      } else {
        expect(r.status).toBe(304);
        expect(r.body.length).toBe(0);
      }
    });
    const missing = await get(`/objects/sha256/${'0'.repeat(64)}`);
    expect(missing.status).toBe(404);
  });

  it('an SSE client on either worker receives the client event of a boot served by either worker, and the push the primary baked, once', async () => {
    const pids = srv.httpWorkerPids();
    // Sequential connections alternate between the workers; keep opening until both hold one.
    const clients: SseClient[] = [];
    const holders = new Set<number>();
    try {
      while (holders.size < 2 && clients.length < 12) {
        const c = await openSse();
        clients.push(c);
        const pid = await waitFor('the SSE socket in /proc', () => serverSidePid(c.localPort, pids), 5000);
        holders.add(pid);
      }
      expect(holders.size).toBe(2);

      const macs = Array.from({ length: 4 }, (_, i) => `52:54:00:00:00:0${i + 1}`);
      const boots = await Promise.all(macs.map((mac) => get(`/v1/boot/ipxe?mac=${mac}`)));
      for (const b of boots) {
        expect(b.status).toBe(200);
        expect(b.body.toString()).toContain('strata.profile=lab');
      }
      for (const c of clients) {
        await waitFor('client events on every stream', () =>
          macs.every((m) => c.events.some((e) => e.type === 'client' && e.data.mac === m)),
        );
        const clientEvents = c.events.filter((e) => e.type === 'client');
        expect(clientEvents.map((e) => e.data.mac).sort()).toEqual(macs);
        expect(clientEvents.every((e) => e.data.boot === true && e.data.profile === 'lab')).toBe(true);
      }

      // A push over SSH: landed by the primary's baker, seen by every stream.
      const parent = srv.store.getProfile('lab').head!;
      const r = await ssh2Run(
        { port: srv.sshPort, privateKey: key.privateKey },
        `push lab --parent ${parent} -m 'cluster push'`,
        zstdTar(tmp.dir, { 'etc/motd': 'from a cluster test\n', 'opt/blob': randomBytes(200_000) }),
      );
      expect(r.code).toBe(0);
      const id = lastLine(r.stdout);
      const done = await waitFor<Push>(
        'the bake',
        () => {
          const p = srv.store.getPush(id);
          return p.state === 'committed' || p.state === 'rejected' ? p : undefined;
        },
        60_000,
      );
      expect(done.state).toBe('committed');
      expect(srv.store.getProfile('lab').head).toBe(done.commit);
      expect(srv.store.log('lab').filter((c) => c.message === 'cluster push')).toHaveLength(1);
      for (const c of clients) {
        await waitFor('the committed push on every stream', () =>
          c.events.some((e) => e.type === 'push' && e.data.id === id && e.data.state === 'committed'),
        );
        expect(c.events.filter((e) => e.type === 'push' && e.data.id === id && e.data.state === 'committed')).toHaveLength(1);
      }
      // Workers serve the new commit at once: they read the same database.
      const boot = await get('/v1/boot/ipxe?mac=52:54:00:00:00:09');
      expect(boot.body.toString()).toContain(`strata.commit=${done.commit}`);
    } finally {
      for (const c of clients) c.close();
    }
  });

  it('a worker that dies is replaced and HTTP keeps answering on the same port', async () => {
    const before = srv.httpWorkerPids();
    process.kill(before[0]!, 'SIGKILL');
    const after = await waitFor('a replacement worker', () => {
      const now = srv.httpWorkerPids();
      return now.length === 2 && !now.includes(before[0]!) ? now : undefined;
    });
    expect(after).toContain(before[1]);
    // The surviving worker answers while the replacement starts: no request is refused.
    const replies = await Promise.all(Array.from({ length: 20 }, () => get(`/objects/sha256/${kernel.digest}`, { Range: 'bytes=0-9' })));
    for (const r of replies) expect(r.status).toBe(206);
  });

  it('close() stops every worker process', async () => {
    const tmp2 = tempDir('strata-cluster-close-');
    try {
      const s = await startServer({
        dataDir: join(tmp2.dir, 'data'),
        http: '127.0.0.1:0',
        ssh: '127.0.0.1:0',
        handleSignals: false,
        log: () => {},
        httpWorkers: 2,
      });
      const pids = s.httpWorkerPids();
      expect(pids).toHaveLength(2);
      expect((await get('/v1/boot/ipxe', {}, s.httpPort)).status).toBe(200);
      await s.close();
      for (const pid of pids) expect(alive(pid)).toBe(false);
      expect(s.httpWorkerPids()).toEqual([]);
      await expect(get('/v1/boot/ipxe', {}, s.httpPort)).rejects.toThrow();
    } finally {
      tmp2.cleanup();
    }
  }, 30_000);
});

describe('worker restart backoff', () => {
  it('restarts quickly after a one-off crash, backs off while workers keep dying young, never waits over 10 s', () => {
    expect(restartDelayMs(0)).toBe(250);
    expect(restartDelayMs(1)).toBe(500);
    expect(restartDelayMs(3)).toBe(2000);
    expect(restartDelayMs(40)).toBe(10_000);
  });
});

describe('strata serve --http-workers 2', () => {
  it('SIGTERM to the primary stops the workers and exits 0', async () => {
    const tmp3 = tempDir('strata-cluster-cli-');
    const child = spawn(
      join(ROOT, 'bin/strata'),
      ['--data', join(tmp3.dir, 'data'), 'serve', '--http', '127.0.0.1:0', '--ssh', '127.0.0.1:0', '--http-workers', '2'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    try {
      const port = await new Promise<number>((resolve, reject) => {
        createInterface({ input: child.stderr! }).on('line', (l) => {
          const m = /HTTP on 127\.0\.0\.1:(\d+) \(2 worker processes\)/.exec(l);
          if (m) resolve(Number(m[1]));
        });
        child.once('exit', (c) => reject(new Error(`strata serve exited ${c}`)));
      });
      const workers = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
      expect(workers).toHaveLength(2);
      expect((await get('/v1/boot/ipxe', {}, port)).status).toBe(200);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      for (const pid of workers) expect(alive(pid)).toBe(false);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      tmp3.cleanup();
    }
  }, 30_000);
});
