/**
 * The HTTP server as PXE firmware, caches and admins see it: real requests
 * over loopback against buildServer() on a real store.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { Store } from '../store/store.ts';
import { buildServer } from '../server/build-server.ts';
import { commitFiles, importProfile, tempDir } from './helpers/server-fixture.ts';

let tmp: ReturnType<typeof tempDir>;
let store: Store;
let app: FastifyInstance;
let url: string;
let token: string;
const ids: Record<string, string> = {};
let kernelFile: string;

beforeAll(async () => {
  tmp = tempDir('strata-http-');
  // Reflog entries keep commits alive for 30 days by default; 0 lets the GC test see leases and pins alone.
  store = await Store.open(`${tmp.dir}/data`, { create: true, config: { reflogKeepMs: 0 } });
  const lab = await importProfile(store, tmp.dir, 'lab');
  kernelFile = lab.kernel;
  ids.labBase = lab.base;
  ids.lab1 = await commitFiles(store, tmp.dir, 'lab', { 'etc/motd': 'hi\n' }, 'motd');
  store.tag('v1', ids.labBase);
  ids.otherBase = (await importProfile(store, tmp.dir, 'other')).base;
  token = store.createToken('tester').token;
  app = buildServer({ store });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}, 180_000);

afterAll(async () => {
  await app?.close();
  store?.close();
  tmp?.cleanup();
});

const auth = () => ({ authorization: `Bearer ${token}` });
// biome-ignore lint/suspicious/noExplicitAny: test responses are checked field by field
async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(url + path, {
    method,
    headers: { ...auth(), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  return { status: r.status, json: await r.json() };
}
async function script(flavour: 'ipxe' | 'grub', q: string): Promise<{ status: number; text: string; headers: Headers }> {
  const r = await fetch(`${url}/v1/boot/${flavour}?${q}`);
  return { status: r.status, text: await r.text(), headers: r.headers };
}
const param = (text: string, name: string) => new RegExp(`${name.replace('.', '\\.')}=(\\S+)`).exec(text)?.[1];

/** Raw request without URL normalisation (fetch would resolve ../). */
function rawGet(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    http
      .get({ host: u.hostname, port: u.port, path }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

describe('boot scripts', () => {
  it('behind a proxy on the same host, the client address comes from X-Forwarded-For', async () => {
    store.assign('10.77.0.0/16', 'other');
    try {
      const viaProxy = await fetch(`${url}/v1/boot/ipxe?mac=52:54:00:77:00:01`, { headers: { 'x-forwarded-for': '10.77.3.4' } });
      expect(param(await viaProxy.text(), 'strata.profile')).toBe('other');
      expect(store.listClients().find((c) => c.mac === '52:54:00:77:00:01')?.ip).toBe('10.77.3.4');
    } finally {
      store.unassign('10.77.0.0/16');
    }
  });

  it('match order: MAC over IP over smallest CIDR over default, pins resolved in the script', async () => {
    expect((await api('PUT', '/v1/assignments', { match: 'default', target: 'other' })).status).toBe(200);
    expect((await api('PUT', '/v1/assignments', { match: '10.0.0.0/8', target: 'lab@v1' })).status).toBe(200);
    expect((await api('PUT', '/v1/assignments', { match: '10.1.0.0/16', target: 'other', cmdline: 'quiet' })).status).toBe(200);
    expect((await api('PUT', '/v1/assignments', { match: '10.1.2.3', target: 'lab', cmdline: 'ip-exact=1' })).status).toBe(200);
    expect(
      (await api('PUT', '/v1/assignments', { match: '52:54:00:AA:BB:01', target: `other@${ids.otherBase}`, cmdline: 'by-mac=1' })).status,
    ).toBe(200);

    const mac = await script('ipxe', 'mac=52-54-00-aa-bb-01&ip=10.1.2.3');
    expect(mac.status).toBe(200);
    expect(mac.headers.get('cache-control')).toBe('no-store');
    expect(param(mac.text, 'strata.profile')).toBe('other');
    expect(param(mac.text, 'strata.commit')).toBe(ids.otherBase);
    expect(mac.text).toContain('by-mac=1');

    const ip = await script('ipxe', 'mac=52:54:00:aa:bb:02&ip=10.1.2.3');
    expect(param(ip.text, 'strata.profile')).toBe('lab');
    expect(param(ip.text, 'strata.commit')).toBe(ids.lab1); // follows the head
    expect(ip.text).toContain('ip-exact=1');

    const small = await script('ipxe', 'mac=52:54:00:aa:bb:03&ip=10.1.9.9');
    expect(param(small.text, 'strata.profile')).toBe('other');
    expect(small.text).toContain(' quiet');

    const wide = await script('ipxe', 'mac=52:54:00:aa:bb:04&ip=10.200.0.1');
    expect(param(wide.text, 'strata.profile')).toBe('lab');
    expect(param(wide.text, 'strata.commit')).toBe(ids.labBase); // pinned at tag v1, not the head

    const dflt = await script('ipxe', 'mac=52:54:00:aa:bb:05&ip=192.168.7.7');
    expect(param(dflt.text, 'strata.profile')).toBe('other');
  });

  it('the script names kernel and initrd URLs (from the Host header) that serve the right bytes', async () => {
    const s = await script('ipxe', 'mac=52:54:00:aa:bb:06&ip=10.1.2.3');
    expect(param(s.text, 'strata.server')).toBe(url);
    const kernelUrl = /^kernel (\S+) /m.exec(s.text)![1];
    expect(kernelUrl.startsWith(`${url}/objects/sha256/`)).toBe(true);
    const bytes = Buffer.from(await (await fetch(kernelUrl)).arrayBuffer());
    expect(bytes.equals(readFileSync(kernelFile))).toBe(true);
    const viaName = await new Promise<string>((resolve, reject) => {
      const u = new URL(url);
      http
        .get({ host: u.hostname, port: u.port, path: '/v1/boot/ipxe?ip=10.1.2.3', headers: { host: `boot.example:${u.port}` } }, (res) => {
          let b = '';
          res.on('data', (c) => (b += c));
          res.on('end', () => resolve(b));
        })
        .on('error', reject);
    });
    expect(viaName).toContain(`strata.server=http://boot.example:${new URL(url).port} `);
  });

  it('--public-url overrides the Host header', async () => {
    const other = buildServer({ store, publicUrl: 'http://pxe.lan:9000/' });
    const r = await other.inject({ method: 'GET', url: '/v1/boot/ipxe?ip=10.1.2.3' });
    expect(r.body).toContain('kernel http://pxe.lan:9000/objects/sha256/');
    expect(r.body).toContain('strata.server=http://pxe.lan:9000 ');
    await other.close();
  });

  it('GRUB gets the same boot as a GRUB config', async () => {
    const s = await script('grub', 'mac=52:54:00:aa:bb:07&ip=10.1.2.3');
    expect(s.text).toMatch(/linux \(http,127\.0\.0\.1:\d+\)\/objects\/sha256\/[0-9a-f]{64} strata\.server=/);
    expect(s.text).toMatch(/initrd \(http,127\.0\.0\.1:\d+\)\/objects\/sha256\/[0-9a-f]{64}/);
    expect(param(s.text, 'strata.commit')).toBe(ids.lab1);
  });

  /** A request as GRUB 2.06 writes it (Host without the port), answered as raw bytes so header spelling shows. */
  function asGrub(path: string, extra: Record<string, string> = {}): Promise<{ head: string; body: string }> {
    const port = Number(new URL(url).port);
    const lines = [
      `GET ${path} HTTP/1.1`,
      'Host: 10.0.2.2',
      'User-Agent: GRUB 2.06-13+deb12u2',
      ...Object.entries(extra).map(([k, v]) => `${k}: ${v}`),
    ];
    return new Promise((resolve, reject) => {
      let raw = '';
      const c = net.connect(port, '127.0.0.1', () => c.write(`${lines.join('\r\n')}\r\n\r\n`));
      c.on('data', (d) => {
        raw += d.toString('latin1');
        const at = raw.indexOf('\r\n\r\n');
        const len = /^Content-Length: (\d+)$/im.exec(raw.slice(0, at))?.[1];
        if (at >= 0 && len !== undefined && raw.length >= at + 4 + Number(len)) {
          c.destroy();
          resolve({ head: raw.slice(0, at), body: raw.slice(at + 4) });
        }
      });
      c.on('error', reject);
    });
  }

  it('GRUB sends Host without the port: the config names the port it connected to, with Content-Length spelled as GRUB reads it', async () => {
    const port = new URL(url).port;
    const g = await asGrub('/v1/boot/grub?mac=52:54:00:aa:bb:07&ip=10.1.2.3');
    // GRUB 2.06 matches "Content-Length: " case-sensitively; without it the config never loads.
    expect(g.head).toMatch(/^Content-Length: \d+$/m);
    expect(g.body).toMatch(
      new RegExp(
        `^  linux \\(http,10\\.0\\.2\\.2:${port}\\)/objects/sha256/[0-9a-f]{64} strata\\.server=http://10\\.0\\.2\\.2:${port} `,
        'm',
      ),
    );
    expect(g.body).toMatch(new RegExp(`^  initrd \\(http,10\\.0\\.2\\.2:${port}\\)/objects/sha256/[0-9a-f]{64}$`, 'm'));
    // The iPXE answer to the same request is as before: iPXE puts the port in Host when it is not 80.
    const i = await asGrub('/v1/boot/ipxe?mac=52:54:00:aa:bb:07&ip=10.1.2.3');
    expect(i.body).toContain(' strata.server=http://10.0.2.2 ');
  });

  it('GRUB through a proxy on loopback: the port comes from X-Forwarded-Port, else the Host header stands (port 80)', async () => {
    const fwd = await asGrub('/v1/boot/grub?mac=52:54:00:aa:bb:07', { 'X-Forwarded-For': '10.1.2.3', 'X-Forwarded-Port': '8088' });
    expect(fwd.body).toContain('linux (http,10.0.2.2:8088)/objects/sha256/');
    expect(fwd.body).toContain(' strata.server=http://10.0.2.2:8088 ');
    const bare = await asGrub('/v1/boot/grub?mac=52:54:00:aa:bb:07', { 'X-Forwarded-For': '10.1.2.3' });
    expect(bare.body).toContain('linux (http,10.0.2.2:80)/objects/sha256/');
    expect(bare.body).toContain(' strata.server=http://10.0.2.2 ');
  });

  it('ip defaults to the address the request came from', async () => {
    await api('PUT', '/v1/assignments', { match: '127.0.0.1', target: 'lab', cmdline: 'from-loopback=1' });
    const s = await script('ipxe', 'mac=52:54:00:aa:bb:08');
    expect(s.text).toContain('from-loopback=1');
    await api('DELETE', '/v1/assignments?match=127.0.0.1');
  });

  it('an unknown client with no default gets a script that says why and retries in 30 s', async () => {
    expect((await api('DELETE', '/v1/assignments', { match: 'default' })).status).toBe(200);
    const s = await script('ipxe', 'mac=52:54:00:aa:bb:09&ip=192.168.7.7');
    expect(s.status).toBe(200);
    expect(s.text).toMatch(/^#!ipxe\necho strata: no assignment matches this client \(52:54:00:aa:bb:09 192\.168\.7\.7\)/);
    expect(s.text).toContain(`sleep 30\nchain ${url}/v1/boot/ipxe?mac=52%3A54%3A00%3Aaa%3Abb%3A09&ip=192.168.7.7`);
    const g = await script('grub', 'ip=192.168.7.7');
    expect(g.text).toMatch(/sleep 30\n$/); // the grub.cfg loop asks again (no nested configfile)
    await api('PUT', '/v1/assignments', { match: 'default', target: 'other' });
  });

  it('each boot is recorded: clients lists who runs what', async () => {
    await script('ipxe', 'mac=52:54:00:aa:bb:0a&ip=10.200.0.9');
    const { json } = await api('GET', '/v1/clients');
    const c = json.clients.find((x: { mac: string }) => x.mac === '52:54:00:aa:bb:0a');
    expect(c).toMatchObject({ ip: '10.200.0.9', commit: ids.labBase, profile: 'lab' });
    expect(c.lastBoot).toBeGreaterThan(0);
  });
});

describe('objects and manifests', () => {
  let digest: string;
  let size: number;
  beforeAll(() => {
    const k = readFileSync(kernelFile);
    digest = createHash('sha256').update(k).digest('hex');
    size = k.length;
  });

  it('GET: bytes, strong ETag, immutable caching', async () => {
    for (const prefix of ['/objects/sha256/', '/v1/objects/sha256/']) {
      const r = await fetch(`${url}${prefix}${digest}`);
      expect(r.status).toBe(200);
      expect(r.headers.get('etag')).toBe(`"${digest}"`);
      expect(r.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expect(r.headers.get('accept-ranges')).toBe('bytes');
      const b = Buffer.from(await r.arrayBuffer());
      expect(createHash('sha256').update(b).digest('hex')).toBe(digest);
    }
  });

  it('HEAD: length and validators, no body', async () => {
    const r = await fetch(`${url}/objects/sha256/${digest}`, { method: 'HEAD' });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-length')).toBe(String(size));
    expect(r.headers.get('etag')).toBe(`"${digest}"`);
    expect((await r.arrayBuffer()).byteLength).toBe(0);
  });

  it('Range, suffix range, 416, If-None-Match 304, If-Range', async () => {
    const whole = readFileSync(kernelFile);
    const r1 = await fetch(`${url}/objects/sha256/${digest}`, { headers: { range: 'bytes=100-199' } });
    expect(r1.status).toBe(206);
    expect(r1.headers.get('content-range')).toBe(`bytes 100-199/${size}`);
    expect(Buffer.from(await r1.arrayBuffer()).equals(whole.subarray(100, 200))).toBe(true);

    const r2 = await fetch(`${url}/objects/sha256/${digest}`, { headers: { range: 'bytes=-10' } });
    expect(r2.status).toBe(206);
    expect(Buffer.from(await r2.arrayBuffer()).equals(whole.subarray(size - 10))).toBe(true);

    const r3 = await fetch(`${url}/objects/sha256/${digest}`, { headers: { range: `bytes=${size}-` } });
    expect(r3.status).toBe(416);
    expect(r3.headers.get('content-range')).toBe(`bytes */${size}`);
    await r3.arrayBuffer();

    const r4 = await fetch(`${url}/objects/sha256/${digest}`, { headers: { 'if-none-match': `"${digest}"` } });
    expect(r4.status).toBe(304);
    expect(r4.headers.get('etag')).toBe(`"${digest}"`);

    const r5 = await fetch(`${url}/objects/sha256/${digest}`, { headers: { range: 'bytes=0-9', 'if-range': `"${digest}"` } });
    expect(r5.status).toBe(206);
    await r5.arrayBuffer();
    const r6 = await fetch(`${url}/objects/sha256/${digest}`, { headers: { range: 'bytes=0-9', 'if-range': '"something-else"' } });
    expect(r6.status).toBe(200);
    expect((await r6.arrayBuffer()).byteLength).toBe(size);
  });

  it('unknown objects: 404 with a clear JSON body', async () => {
    const r = await fetch(`${url}/objects/sha256/${'0'.repeat(64)}`);
    expect(r.status).toBe(404);
    const j = await r.json();
    expect(j.error.code).toBe('E_OBJECT_NOT_FOUND');
    expect(j.error.message).toContain('0'.repeat(64));
  });

  it('path traversal and non-digests are refused with 400, never served', async () => {
    for (const p of [
      '/objects/sha256/..%2F..%2Fstrata.db',
      '/objects/sha256/..%2fstrata.db',
      `/objects/sha256/${digest.toUpperCase()}`,
      `/objects/sha256/${digest.slice(0, 62)}`,
      '/objects/sha256/%2e%2e',
    ]) {
      const r = await rawGet(p);
      expect([p, r.status]).toEqual([p, 400]);
      expect(JSON.parse(r.body).error.code).toBe('E_BAD_DIGEST');
    }
    const up = await rawGet('/objects/sha256/../../strata.db');
    expect(up.status).toBe(404);
    expect(up.body).not.toContain('SQLite');
  });

  it('manifests: sha256(body) == id, strong ETag, refs redirect to the immutable URL', async () => {
    const r = await fetch(`${url}/v1/commits/${ids.lab1}/manifest`);
    expect(r.status).toBe(200);
    const body = await r.text();
    expect(createHash('sha256').update(body).digest('hex')).toBe(ids.lab1);
    expect(body.startsWith('strata-manifest 1\n')).toBe(true);
    expect(r.headers.get('etag')).toBe(`"${ids.lab1}"`);
    expect(r.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    const redirected = await fetch(`${url}/v1/commits/lab/manifest`, { redirect: 'manual' });
    expect(redirected.status).toBe(302);
    expect(redirected.headers.get('location')).toBe(`/v1/commits/${ids.lab1}/manifest`);
    const missing = await fetch(`${url}/v1/commits/${'1'.repeat(64)}/manifest`);
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.code).toBe('E_COMMIT_NOT_FOUND');
  });
});

describe('admin API', () => {
  const adminRoutes: [string, string][] = [
    ['GET', '/v1/profiles'],
    ['GET', '/v1/profiles/lab'],
    ['PUT', '/v1/profiles/lab/cmdline'],
    ['GET', '/v1/profiles/lab/log'],
    ['GET', '/v1/profiles/lab/graph'],
    ['GET', '/v1/profiles/lab/reflog'],
    ['POST', '/v1/profiles/lab/rollback'],
    ['POST', '/v1/profiles/lab/revert'],
    ['POST', '/v1/profiles/lab/cherry-pick'],
    ['POST', '/v1/profiles/lab/flatten'],
    ['GET', '/v1/commits/lab'],
    ['GET', '/v1/commits/lab/diff'],
    ['GET', '/v1/refs'],
    ['POST', '/v1/tags'],
    ['POST', '/v1/branches'],
    ['GET', '/v1/assignments'],
    ['PUT', '/v1/assignments'],
    ['DELETE', '/v1/assignments'],
    ['GET', '/v1/clients'],
    ['GET', '/v1/pushes'],
    ['GET', '/v1/pushes/p1'],
    ['POST', '/v1/gc'],
    ['GET', '/v1/events'],
  ];

  it('every admin route answers 401 without a token or with a wrong one, and changes nothing', async () => {
    const before = store.getProfile('lab');
    for (const [method, path] of adminRoutes) {
      for (const headers of [{} as Record<string, string>, { authorization: 'Bearer nope' }, { authorization: `Basic ${token}` }]) {
        const r = await fetch(url + path, {
          method,
          headers: { ...headers, 'content-type': 'application/json' },
          body: method === 'GET' ? undefined : JSON.stringify({ cmdline: 'x', to: ids.labBase }),
        });
        expect([method, path, r.status]).toEqual([method, path, 401]);
        expect((await r.json()).error.code).toBe('E_UNAUTHORIZED');
      }
    }
    expect(store.getProfile('lab')).toEqual(before);
    // A token in the URL is never accepted, not even by the event stream.
    for (const path of ['/v1/profiles', '/v1/events']) {
      const q = await fetch(`${url}${path}?token=${token}`);
      expect(q.status).toBe(401);
    }
  });

  it('profiles, cmdline, log, commits, diff, refs, tags', async () => {
    const list = await api('GET', '/v1/profiles');
    expect(list.json.profiles.map((p: { name: string }) => p.name).sort()).toEqual(['lab', 'other']);
    const set = await api('PUT', '/v1/profiles/lab/cmdline', { cmdline: 'console=ttyS0 loglevel=3' });
    expect(set.json.profile.cmdline).toBe('console=ttyS0 loglevel=3');
    const s = await script('ipxe', 'ip=10.1.2.3');
    expect(s.text).toContain(`strata.profile=lab console=ttyS0 loglevel=3 ip-exact=1`);
    const log = await api('GET', '/v1/profiles/lab/log');
    expect(log.json.commits.map((c: { id: string }) => c.id)).toEqual([ids.lab1, ids.labBase]);
    expect((await api('GET', '/v1/profiles/lab/log?limit=1')).json.commits).toHaveLength(1);
    expect((await api('GET', `/v1/commits/${ids.lab1.slice(0, 10)}`)).json.commit.id).toBe(ids.lab1);
    const diff = await api('GET', `/v1/commits/${ids.lab1}/diff`);
    expect(diff.json.diff.added).toContain('etc/motd');
    const graph = await api('GET', '/v1/profiles/lab/graph');
    expect(graph.json.commits.length).toBeGreaterThanOrEqual(2);
    const tag = await api('POST', '/v1/tags', { name: 'v2', commit: ids.lab1 });
    expect(tag.status).toBe(200);
    expect(tag.json.ref).toMatchObject({ name: 'v2', type: 'tag', commit: ids.lab1 });
    const again = await api('POST', '/v1/tags', { name: 'v2', commit: ids.lab1 });
    expect(again.status).toBe(409);
    expect(again.json.error.code).toBe('E_REF_EXISTS');
    expect((await api('GET', '/v1/refs')).json.refs.some((r: { name: string }) => r.name === 'v2')).toBe(true);
  });

  it('errors carry stable codes: 404 unknown profile, 400 bad body, 400 bad JSON', async () => {
    const nf = await api('GET', '/v1/profiles/nope');
    expect(nf.status).toBe(404);
    expect(nf.json.error.code).toBe('E_PROFILE_NOT_FOUND');
    const bad = await api('POST', '/v1/tags', { name: 'x' });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatchObject({ code: 'E_BAD_ARGUMENT', field: 'commit' });
    const r = await fetch(`${url}/v1/tags`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: '{nope' });
    expect(r.status).toBe(400);
    expect((await r.json()).error.code).toBe('E_BAD_ARGUMENT');
    const route = await fetch(`${url}/v1/nothing-here`, { headers: auth() });
    expect(route.status).toBe(404);
    expect((await route.json()).error.code).toBe('E_NOT_FOUND');
  });

  it('rollback and the reflog', async () => {
    const r = await api('POST', '/v1/profiles/lab/rollback', {});
    expect(r.json).toEqual({ from: ids.lab1, to: ids.labBase });
    expect(store.getProfile('lab').head).toBe(ids.labBase);
    const undo = await api('POST', '/v1/profiles/lab/rollback', { to: ids.lab1 });
    expect(undo.status).toBe(200);
    expect(store.getProfile('lab').head).toBe(ids.lab1);
    const rl = await api('GET', '/v1/profiles/lab/reflog');
    expect(rl.json.reflog.length).toBeGreaterThanOrEqual(3);
  });

  it('heartbeat records a lease without a token; bad MACs and unknown commits are refused', async () => {
    const r = await fetch(`${url}/v1/clients/52-54-00-cc-dd-01/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ commit: ids.lab1, ip: '10.9.9.9' }),
    });
    expect(r.status).toBe(200);
    const c = (await api('GET', '/v1/clients')).json.clients.find((x: { mac: string }) => x.mac === '52:54:00:cc:dd:01');
    expect(c).toMatchObject({ ip: '10.9.9.9', commit: ids.lab1 });
    const bad = await fetch(`${url}/v1/clients/zz/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ commit: ids.lab1 }),
    });
    expect(bad.status).toBe(400);
    const unknown = await fetch(`${url}/v1/clients/52:54:00:cc:dd:01/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ commit: '2'.repeat(64) }),
    });
    expect(unknown.status).toBe(404);
  });

  it('server-sent events reach a client authenticated by its Authorization header', async () => {
    const ac = new AbortController();
    const r = await fetch(`${url}/v1/events`, { signal: ac.signal, headers: { authorization: `Bearer ${token}` } });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/event-stream');
    const reader = r.body!.getReader();
    await api('PUT', '/v1/profiles/other/cmdline', { cmdline: 'sse=1' });
    let text = '';
    while (!text.includes('event: ref')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    expect(text).toMatch(/event: ref\ndata: \{[^\n]*"profile":"other"/);
    ac.abort();
  });

  it('a flatten started over the API reports its progress as events, the last one complete, before its ref event', async () => {
    await importProfile(store, tmp.dir, 'flat');
    await commitFiles(store, tmp.dir, 'flat', { 'opt/a': 'a\n'.repeat(1000) }, 'a');
    const ac = new AbortController();
    const r = await fetch(`${url}/v1/events`, { signal: ac.signal, headers: { authorization: `Bearer ${token}` } });
    const reader = r.body!.getReader();
    const flattened = await api('POST', '/v1/profiles/flat/flatten', {});
    expect(flattened.status).toBe(200);
    let text = '';
    while (!/event: ref\ndata: [^\n]*"action":"flatten"/.test(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    ac.abort();
    const progress = [...text.matchAll(/event: progress\ndata: (\{[^\n]*\})/g)].map(
      (m) => JSON.parse(m[1]!) as { action: string; profile: string; done: number; total: number },
    );
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.every((p) => p.action === 'flatten' && p.profile === 'flat')).toBe(true);
    const last = progress.at(-1)!;
    expect(last.done).toBeGreaterThan(0);
    expect(last.done).toBe(last.total);
    expect(text.lastIndexOf('event: progress')).toBeLessThan(text.indexOf('event: ref'));
  });
});

describe('garbage collection', () => {
  it('never removes a commit a leased client booted or an assignment pins', async () => {
    const b = (await importProfile(store, tmp.dir, 'gcp')).base;
    const x1 = await commitFiles(store, tmp.dir, 'gcp', { 'a/1': '1\n' }, 'x1');
    const x2 = await commitFiles(store, tmp.dir, 'gcp', { 'a/2': '2\n' }, 'x2');
    const x3 = await commitFiles(store, tmp.dir, 'gcp', { 'a/3': '3\n' }, 'x3');
    await api('PUT', '/v1/assignments', { match: '52:54:00:ee:00:01', target: `gcp@${x2}` });
    // A client boots x3 (the head), then the profile moves away from it.
    await api('PUT', '/v1/assignments', { match: '52:54:00:ee:00:02', target: 'gcp' });
    expect(param((await script('ipxe', 'mac=52:54:00:ee:00:02')).text, 'strata.commit')).toBe(x3);
    await api('DELETE', '/v1/assignments', { match: '52:54:00:ee:00:02' });
    expect((await api('POST', '/v1/profiles/gcp/rollback', { to: b })).status).toBe(200);
    const y1 = await commitFiles(store, tmp.dir, 'gcp', { 'b/1': 'y\n' }, 'y1');
    expect((await api('POST', '/v1/profiles/gcp/rollback', { to: b })).status).toBe(200);

    const dry = await api('POST', '/v1/gc', { dryRun: true });
    expect(dry.status).toBe(200);
    expect(dry.json.commits).toContain(y1);
    expect(store.getCommit(y1).id).toBe(y1);
    const gc = await api('POST', '/v1/gc', {});
    expect(gc.json.commits).toContain(y1);
    for (const keep of [x1, x2, x3]) {
      expect(gc.json.commits).not.toContain(keep);
      const r = await fetch(`${url}/v1/commits/${keep}/manifest`);
      expect(r.status).toBe(200);
      const manifest = await r.text();
      for (const d of manifest.matchAll(/^(?:layer|kernel|initrd) sha256:([0-9a-f]{64})/gm)) {
        const o = await fetch(`${url}/objects/sha256/${d[1]}`, { method: 'HEAD' });
        expect(o.status).toBe(200);
      }
    }
    expect((await fetch(`${url}/v1/commits/${y1}/manifest`)).status).toBe(404);
    expect((await store.fsck()).ok).toBe(true);
  });
});

describe('web UI files', () => {
  it('serves web/index.html at /, flat assets, and dagre at /vendor; nothing outside', async () => {
    const web = tempDir('strata-web-');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(`${web.dir}/index.html`, '<!doctype html><title>strata</title>');
    writeFileSync(`${web.dir}/app.js`, 'console.log(1)');
    const ui = buildServer({ store, webDir: web.dir });
    await ui.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(ui.server.address() as AddressInfo).port}`;
    try {
      const index = await fetch(`${base}/`);
      expect(index.headers.get('content-type')).toContain('text/html');
      expect(await index.text()).toContain('<title>strata</title>');
      const js = await fetch(`${base}/app.js`);
      expect(js.headers.get('content-type')).toContain('javascript');
      const dagre = await fetch(`${base}/vendor/dagre.min.js`);
      expect(dagre.status).toBe(200);
      expect((await dagre.text()).length).toBeGreaterThan(10_000);
      expect((await fetch(`${base}/..%2Fpackage.json`)).status).toBe(404);
      expect((await fetch(`${base}/missing.js`)).status).toBe(404);
    } finally {
      await ui.close();
      web.cleanup();
    }
  });
});
