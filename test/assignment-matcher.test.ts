/**
 * The assignment matcher is one file, protocol/match.js: the server decides
 * boots with it and the web page previews with it, served as the very same
 * bytes at /protocol/match.js.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { matchAssignment, parseMatch, previewChange } from '../protocol/match.js';
import { parseMatch as storeParse } from '../store/assignments.ts';
import { buildServer } from '../server/build-server.ts';
import { Store } from '../store/store.ts';
import type { Assignment } from '../store/types.ts';
import { tempDir } from './helpers/server-fixture.ts';

const rule = (match: string, profile = 'p'): Assignment => ({ ...storeParse(match), profile, pin: null, cmdline: '' });

describe('reading rule texts', () => {
  it('gives the canonical spelling of a MAC, IP, CIDR or default, and null for anything else', () => {
    const cases: [string, { match: string; kind: string } | null][] = [
      ['default', { match: 'default', kind: 'default' }],
      [' default ', { match: 'default', kind: 'default' }],
      ['AA:BB:CC:DD:EE:FF', { match: 'aa:bb:cc:dd:ee:ff', kind: 'mac' }],
      ['aa-bb-cc-dd-ee-ff', { match: 'aa:bb:cc:dd:ee:ff', kind: 'mac' }],
      ['aabb.ccdd.eeff', { match: 'aa:bb:cc:dd:ee:ff', kind: 'mac' }],
      ['aabbccddeeff', null],
      ['10.0.0.7', { match: '10.0.0.7', kind: 'ip' }],
      ['10.0.0.07', null],
      ['256.1.1.1', null],
      ['10.1.2.3/24', { match: '10.1.2.0/24', kind: 'cidr' }],
      ['10.1.2.3/33', null],
      ['0.0.0.0/0', { match: '0.0.0.0/0', kind: 'cidr' }],
      ['192.168.1.200/30', { match: '192.168.1.200/30', kind: 'cidr' }],
      ['fe80::1', null],
      ['lab', null],
      ['', null],
      ['1.2.3', null],
      ['1.2.3.4/', null],
      ['aa:bb:cc:dd:ee', null],
      ['12.34.56.78.90.12', { match: '12:34:56:78:90:12', kind: 'mac' }],
    ];
    for (const [text, want] of cases) expect(parseMatch(text), JSON.stringify(text)).toEqual(want);
    expect(() => storeParse('lab')).toThrow(/cannot read "lab" as a MAC/);
  });
});

describe('matching', () => {
  it('picks MAC, then exact IP, then the smallest CIDR, then default', () => {
    const rules = [rule('10.0.0.0/8', 'wide'), rule('10.1.0.0/16', 'narrow'), rule('10.1.2.3', 'exact'), rule('52:54:00:00:00:01', 'mac')];
    const all = [...rules, rule('default', 'def')];
    expect(matchAssignment(all, '52-54-00-00-00-01', '10.1.2.3')?.profile).toBe('mac');
    expect(matchAssignment(all, '52:54:00:00:00:02', '10.1.2.3')?.profile).toBe('exact');
    expect(matchAssignment(all, null, '10.1.9.9')?.profile).toBe('narrow');
    expect(matchAssignment(all, null, '::ffff:10.1.9.9')?.profile).toBe('narrow');
    expect(matchAssignment(all, null, '10.200.0.1')?.profile).toBe('wide');
    expect(matchAssignment(all, null, '192.168.1.1')?.profile).toBe('def');
    expect(matchAssignment(rules, null, '192.168.1.1')).toBeNull();
  });

  it('previews what a new or removed rule changes for known clients', () => {
    const rules = [rule('10.0.0.0/8', 'wide'), rule('default', 'fallback')];
    const clients = [
      { mac: '52:54:00:00:00:01', ip: '10.9.3.4' },
      { mac: '52:54:00:00:00:02', ip: '10.1.0.1' },
      { mac: '52:54:00:00:00:03', ip: '192.168.1.5' },
    ];
    const add = rule('10.9.0.0/16', 'lab');
    const rows = previewChange(rules, clients, { add });
    expect(rows.map((x) => [x.client.mac, x.before?.match, x.after?.match, x.caught])).toEqual([
      ['52:54:00:00:00:01', '10.0.0.0/8', '10.9.0.0/16', true],
    ]);
    const gone = previewChange(rules, clients, { remove: '10.0.0.0/8' });
    expect(gone.map((x) => [x.client.mac, x.after?.match, x.caught])).toEqual([
      ['52:54:00:00:00:01', 'default', false],
      ['52:54:00:00:00:02', 'default', false],
    ]);
  });
});

describe('served to the browser', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: Store;
  let app: FastifyInstance;
  let url: string;
  beforeAll(async () => {
    tmp = tempDir('strata-matcher-');
    store = await Store.open(`${tmp.dir}/data`, { create: true });
    app = buildServer({ store, webDir: new URL('../web/', import.meta.url).pathname });
    await app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await app?.close();
    store?.close();
    tmp?.cleanup();
  });

  it('GET /protocol/match.js is the file the server runs, as a JavaScript module', async () => {
    const r = await fetch(`${url}/protocol/match.js`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(await r.text()).toBe(readFileSync(new URL('../protocol/match.js', import.meta.url), 'utf8'));
  });

  it('serves no other kind of file from protocol/, and no path outside it', async () => {
    for (const p of ['/protocol/errors.ts', '/protocol/README.md', '/protocol/..%2Fpackage.json', '/protocol/nothing.js']) {
      const r = await fetch(`${url}${p}`);
      expect(r.status, p).toBe(404);
    }
  });

  it('the page imports the matcher from /protocol/ (no copy of it in web/)', () => {
    for (const f of ['views/assignments.js', 'views/commit-actions.js']) {
      expect(readFileSync(new URL(`../web/${f}`, import.meta.url), 'utf8'), f).toContain("from '../../protocol/match.js'");
    }
  });
});
