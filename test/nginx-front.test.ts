/**
 * A real nginx in front of a real strata server, configured only by what
 * `strata nginx-conf` prints (cli/nginx-conf.ts): objects come from nginx
 * with strata's headers, everything else is proxied to strata.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Store } from '../store/store.ts';
import { startServer, type RunningServer } from '../server/main.ts';
import { renderNginxConf } from '../cli/nginx-conf.ts';
import { freePort } from './helpers/ports.ts';
import { nginxMainConf } from './helpers/nginx.ts';
import { StrataError } from '../store/errors.ts';
import { runStrata } from './helpers/cli.ts';
import { importProfile, tempDir } from './helpers/server-fixture.ts';

const NGINX = '/usr/sbin/nginx';
const MAC = '52:54:00:12:34:56';

let tmp: ReturnType<typeof tempDir>;
let srv: RunningServer | null = null;
let nginx: ChildProcess | null = null;
let front: string; // http://127.0.0.1:<nginx port>
let direct: string; // http://127.0.0.1:<strata port>
let token: string;
let kernelBytes: Buffer;
let kernelHex: string;
let dataDir: string;

async function waitHttp(url: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await fetch(url);
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`nothing answers at ${url}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

interface Raw {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A request with the path exactly as written (fetch would resolve ../ first). */
function raw(base: string, path: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Raw> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path, method: opts.method ?? 'GET', headers: opts.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  tmp = tempDir('strata-nginx-front-');
  dataDir = join(tmp.dir, 'data');
  const store = await Store.open(dataDir, { create: true });
  const lab = await importProfile(store, tmp.dir, 'lab');
  store.assign('default', 'lab');
  token = store.createToken('tester').token;
  store.close();
  kernelBytes = readFileSync(lab.kernel);
  kernelHex = sha256(kernelBytes);
  // A file next to the store that no object URL may ever reach.
  writeFileSync(join(dataDir, 'secret.txt'), 'TOP-SECRET-NOT-AN-OBJECT\n');

  srv = await startServer({ dataDir, http: '127.0.0.1:0', ssh: '127.0.0.1:0', handleSignals: false, log: () => {} });
  direct = `http://127.0.0.1:${srv.httpPort}`;

  const port = await freePort();
  const ng = join(tmp.dir, 'nginx');
  mkdirSync(ng);
  const conf = join(ng, 'nginx.conf');
  const printed = await runStrata(['nginx-conf', '--listen', `127.0.0.1:${port}`, '--upstream', `127.0.0.1:${srv.httpPort}`], {
    data: dataDir,
  });
  if (printed.code !== 0) throw new Error(`strata nginx-conf failed: ${printed.stderr}`);
  writeFileSync(
    conf,
    nginxMainConf(ng, printed.stdout, { workers: 1, daemonAndPid: false, httpExtra: ['include /etc/nginx/mime.types;'] }),
  );
  nginx = spawn(NGINX, ['-p', ng, '-e', `${ng}/error.log`, '-c', conf, '-g', `daemon off; pid ${ng}/nginx.pid;`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  nginx.stderr!.on('data', (c) => (stderr += c));
  const exited = new Promise<never>((_, reject) => nginx!.once('exit', (code) => reject(new Error(`nginx exited ${code}: ${stderr}`))));
  front = `http://127.0.0.1:${port}`;
  await Promise.race([waitHttp(`${front}/v1/boot/ipxe`), exited]);
}, 180_000);

afterAll(async () => {
  const n = nginx;
  if (n && n.exitCode === null && n.signalCode === null) {
    // Our own child by its pid; SIGQUIT is nginx's graceful stop (workers go too).
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        n.kill('SIGKILL');
      }, 10_000);
      n.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      n.kill('SIGQUIT');
    });
  }
  await srv?.close();
  tmp?.cleanup();
}, 60_000);

describe('objects come from nginx', () => {
  it('same bytes, digest and headers as strata, for both URL shapes, GET and HEAD', async () => {
    for (const prefix of ['/objects/sha256/', '/v1/objects/sha256/']) {
      const r = await raw(front, prefix + kernelHex);
      expect(r.status).toBe(200);
      expect(r.body.equals(kernelBytes)).toBe(true);
      expect(sha256(r.body)).toBe(kernelHex);
      expect(r.headers.etag).toBe(`"${kernelHex}"`);
      expect(r.headers['cache-control']).toBe('public, max-age=31536000, immutable');
      expect(r.headers['content-type']).toBe('application/octet-stream');
      expect(r.headers['accept-ranges']).toBe('bytes');
      expect(r.headers.server).toMatch(/nginx/); // not proxied: nginx sent it itself
      const s = await raw(direct, prefix + kernelHex);
      expect(r.headers.etag).toBe(s.headers.etag);
      expect(r.headers['cache-control']).toBe(s.headers['cache-control']);

      const h = await raw(front, prefix + kernelHex, { method: 'HEAD' });
      expect(h.status).toBe(200);
      expect(Number(h.headers['content-length'])).toBe(kernelBytes.length);
      expect(h.body.length).toBe(0);
    }
  });

  it('Range gives 206 with the right slice; several ranges give it all, as strata does', async () => {
    const r = await raw(front, `/objects/sha256/${kernelHex}`, { headers: { range: 'bytes=1000-1999' } });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes 1000-1999/${kernelBytes.length}`);
    expect(r.body.equals(kernelBytes.subarray(1000, 2000))).toBe(true);
    expect(r.headers.etag).toBe(`"${kernelHex}"`);

    const tail = await raw(front, `/objects/sha256/${kernelHex}`, { headers: { range: 'bytes=-10' } });
    expect(tail.status).toBe(206);
    expect(tail.body.equals(kernelBytes.subarray(kernelBytes.length - 10))).toBe(true);

    const multi = await raw(front, `/objects/sha256/${kernelHex}`, { headers: { range: 'bytes=0-9,20-29' } });
    expect(multi.status).toBe(200);
    expect(multi.body.equals(kernelBytes)).toBe(true);

    const ifRange = await raw(front, `/objects/sha256/${kernelHex}`, { headers: { range: 'bytes=0-9', 'if-range': `"${kernelHex}"` } });
    expect(ifRange.status).toBe(206);
    const otherTag = await raw(front, `/objects/sha256/${kernelHex}`, {
      headers: { range: 'bytes=0-9', 'if-range': `"${'0'.repeat(64)}"` },
    });
    expect(otherTag.status).toBe(200);
    expect(otherTag.body.length).toBe(kernelBytes.length);
  });

  it('If-None-Match with the digest ETag gives 304 and no body; another ETag gives the object', async () => {
    const r = await raw(front, `/objects/sha256/${kernelHex}`, { headers: { 'if-none-match': `"${kernelHex}"` } });
    expect(r.status).toBe(304);
    expect(r.body.length).toBe(0);
    expect(r.headers.etag).toBe(`"${kernelHex}"`);
    expect(r.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    for (const inm of [`W/"${kernelHex}"`, `"${'1'.repeat(64)}", "${kernelHex}"`, '*']) {
      expect((await raw(front, `/v1/objects/sha256/${kernelHex}`, { headers: { 'if-none-match': inm } })).status, inm).toBe(304);
    }
    // A digest this server does not have is 404 even to a client that cached it elsewhere.
    const gone = await raw(front, `/objects/sha256/${'2'.repeat(64)}`, { headers: { 'if-none-match': `"${'2'.repeat(64)}"` } });
    expect(gone.status).toBe(404);
    const other = await raw(front, `/objects/sha256/${kernelHex}`, { headers: { 'if-none-match': `"${'1'.repeat(64)}"` } });
    expect(other.status).toBe(200);
    expect(other.body.equals(kernelBytes)).toBe(true);
  });

  it('an unknown digest is 404 and is not cached forever', async () => {
    const r = await raw(front, `/objects/sha256/${'0'.repeat(64)}`);
    expect(r.status).toBe(404);
    expect(JSON.parse(r.body.toString()).error.code).toBe('E_OBJECT_NOT_FOUND');
    expect(r.headers['cache-control']).toBeUndefined();
  });

  it('a name that is not 64 lowercase hex digits never reaches a file', async () => {
    const bad = [
      `/objects/sha256/${kernelHex.toUpperCase()}`,
      `/objects/sha256/${kernelHex.slice(0, 63)}`,
      `/objects/sha256/${kernelHex}0`,
      `/objects/sha256/${kernelHex.slice(0, 2)}/${kernelHex.slice(2)}`,
      '/objects/sha256/..%2F..%2Fsecret.txt',
      '/v1/objects/sha256/..%2f..%2fsecret.txt',
      '/objects/sha256/../../secret.txt',
      '/objects/sha256/%2e%2e/%2e%2e/secret.txt',
      '/objects/../secret.txt',
      '/secret.txt',
    ];
    for (const path of bad) {
      const r = await raw(front, path);
      expect([400, 404], path).toContain(r.status);
      expect(r.body.toString(), path).not.toContain('TOP-SECRET');
      expect(r.body.equals(kernelBytes), path).toBe(false);
    }
    const upper = await raw(front, `/objects/sha256/${kernelHex.toUpperCase()}`);
    expect(upper.status).toBe(400);
    expect(JSON.parse(upper.body.toString()).error.code).toBe('E_BAD_DIGEST');
  });
});

describe('everything else is proxied to strata', () => {
  it('the iPXE script names the nginx address, and its kernel URL downloads through nginx', async () => {
    const r = await fetch(`${front}/v1/boot/ipxe?mac=${encodeURIComponent(MAC)}`);
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe('no-store');
    const text = await r.text();
    expect(text.startsWith('#!ipxe')).toBe(true);
    expect(text).toContain(`kernel ${front}/objects/sha256/${kernelHex} `);
    expect(text).toContain(`strata.server=${front} `);
    expect(text).not.toContain(direct);
    const kernelUrl = /^kernel (\S+)/m.exec(text)![1];
    const k = Buffer.from(await (await fetch(kernelUrl)).arrayBuffer());
    expect(sha256(k)).toBe(kernelHex);
  });

  it("GRUB's config (GRUB sends Host without the port) names the nginx address with its port", async () => {
    const u = new URL(front);
    const r = await raw(front, `/v1/boot/grub?mac=${encodeURIComponent(MAC)}`, { headers: { Host: u.hostname } });
    expect(r.status).toBe(200);
    const text = r.body.toString();
    expect(text).toContain(`(http,${u.hostname}:${u.port})/objects/sha256/${kernelHex}`);
    expect(text).toContain(`strata.server=${front} `);
  });

  it('admin routes need the token through nginx too, and the token is passed on', async () => {
    const no = await fetch(`${front}/v1/profiles`);
    expect(no.status).toBe(401);
    expect(((await no.json()) as { error: { code: string } }).error.code).toBe('E_UNAUTHORIZED');
    const yes = await fetch(`${front}/v1/profiles`, { headers: { authorization: `Bearer ${token}` } });
    expect(yes.status).toBe(200);
    const body = (await yes.json()) as { profiles: { name: string }[] };
    expect(body.profiles.map((p) => p.name)).toContain('lab');
  });

  it('server-sent events stream through nginx as they happen', async () => {
    const ctl = new AbortController();
    const res = await fetch(`${front}/v1/events`, { headers: { authorization: `Bearer ${token}` }, signal: ctl.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    const mac = '52:54:00:aa:bb:cc';
    // The boot happens after the stream is open; its event must arrive while the stream stays open.
    await fetch(`${front}/v1/boot/ipxe?mac=${encodeURIComponent(mac)}`).then((r) => r.text());
    let seen = '';
    const deadline = Date.now() + 20_000;
    try {
      while (!seen.includes(mac)) {
        const next = await Promise.race([
          reader.read(),
          new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error(`no client event through nginx; got: ${seen}`)), Math.max(1, deadline - Date.now())),
          ),
        ]);
        if (next.done) throw new Error(`stream ended; got: ${seen}`);
        seen += Buffer.from(next.value).toString();
      }
    } finally {
      ctl.abort();
      await reader.cancel().catch(() => {});
    }
    expect(seen).toMatch(/event: client\ndata: .*"boot":true/);
  }, 30_000);
});

it('nginx was started by this test and logged no errors', () => {
  const log = join(tmp.dir, 'nginx', 'error.log');
  const text = existsSync(log) ? readFileSync(log, 'utf8') : '';
  expect(text).not.toMatch(/\[(emerg|alert|crit)\]/);
});

describe('strata nginx-conf refuses what nginx would misread', () => {
  it('bad addresses and data paths are E_BAD_ARGUMENT, not a broken config', async () => {
    const ok = { dataDir: '/srv/strata', listen: '0.0.0.0:80', upstream: '127.0.0.1:8080' };
    expect(renderNginxConf(ok)).toContain('alias "/srv/strata/objects/sha256/$strata_d2/$strata_d62";');
    expect(renderNginxConf({ ...ok, listen: '[::1]:8081' })).toContain('listen [::1]:8081;');
    for (const bad of [
      { listen: '0.0.0.0' },
      { listen: 'a b:80' },
      { upstream: '127.0.0.1:70000' },
      { upstream: 'x;y:1' },
      { dataDir: 'relative/data' },
      { dataDir: '/srv/$x' },
      { dataDir: '/srv/"x' },
      { dataDir: '/srv/x\ny' },
    ]) {
      let err: unknown = null;
      try {
        renderNginxConf({ ...ok, ...bad });
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(bad)).toBeInstanceOf(StrataError);
      expect((err as StrataError).code).toBe('E_BAD_ARGUMENT');
    }
    const cli = await runStrata(['nginx-conf', '--listen', 'nowhere'], { data: join(tmp.dir, 'data') });
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toMatch(/--listen must be HOST:PORT/);
    expect(cli.stdout).toBe('');
  }, 60_000);
});
