/**
 * POST /v1/heartbeat on a real store (fastify inject): a known client's
 * report is kept and shown by `strata clients --json`; a heartbeat from a
 * MAC the server never booted that names a commit it does not have is
 * refused; malformed reports get a 400 that says what is wrong. GET
 * /v1/clients and `strata clients` show the last heartbeat and hardware.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../server/build-server.ts';
import { Store } from '../store/store.ts';
import { runStrata, strataJson } from './helpers/cli.ts';
import { importProfile, tempDir } from './helpers/server-fixture.ts';

let tmp: ReturnType<typeof tempDir>;
let store: Store;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  tmp = tempDir('strata-heartbeat-');
  store = await Store.open(`${tmp.dir}/data`, { create: true });
  base = (await importProfile(store, tmp.dir, 'lab')).base;
  store.assign('default', 'lab');
  app = buildServer({ store });
  await app.ready();
});

afterAll(async () => {
  await app?.close();
  store?.close();
  tmp?.cleanup();
});

const beat = (body: unknown) => app.inject({ method: 'POST', url: '/v1/heartbeat', payload: body as object });
const inventory = { cpus: 2, memoryKb: 1024000, nics: [{ name: 'eth0', mac: '52:54:00:00:00:01' }], disks: [{ name: 'vda', bytes: 1e9 }] };

describe('POST /v1/heartbeat', () => {
  it('keeps a booted client report; strata clients --json shows its inventory', async () => {
    // The client booted through the boot route first.
    const boot = await app.inject({ method: 'GET', url: '/v1/boot/ipxe?mac=52:54:00:00:00:01' });
    expect(boot.statusCode).toBe(200);
    const r = await beat({ mac: '52:54:00:00:00:01', commit: base, uptimeSec: 42, inventory });
    expect(r.statusCode, r.body).toBe(200);
    const clients = await strataJson<Array<{ mac: string; heartbeat: { uptimeSec: number; inventory: typeof inventory } }>>(['clients'], {
      data: store.dataDir,
    });
    const c = clients.find((x) => x.mac === '52:54:00:00:00:01');
    expect(c?.heartbeat.uptimeSec).toBe(42);
    expect(c?.heartbeat.inventory).toEqual(inventory);
    // The lease moved too: the client was seen now, not only at its boot.
    const lease = store.listClients().find((x) => x.mac === '52:54:00:00:00:01');
    expect(lease?.lastSeen).toBeGreaterThanOrEqual(c ? Date.now() - 60_000 : 0);
    expect(lease?.commit).toBe(base);
  });

  it('GET /v1/clients and `strata clients` show each client with its last heartbeat and hardware', async () => {
    const full = {
      ...inventory,
      cpuModel: 'QEMU Virtual CPU version 2.5+',
      dmi: { vendor: 'QEMU', product: 'Standard PC (i440FX + PIIX, 1996)', serial: '' },
    };
    await app.inject({ method: 'GET', url: '/v1/boot/ipxe?mac=52:54:00:00:00:02' });
    expect((await beat({ mac: '52:54:00:00:00:02', commit: base, uptimeSec: 3700, inventory: full })).statusCode).toBe(200);
    await app.inject({ method: 'GET', url: '/v1/boot/ipxe?mac=52:54:00:00:00:03' });
    const token = store.createToken('heartbeat-test').token;
    const r = await app.inject({ method: 'GET', url: '/v1/clients', headers: { authorization: `Bearer ${token}` } });
    expect(r.statusCode, r.body).toBe(200);
    const clients = r.json().clients as Array<{ mac: string; heartbeat: { uptimeSec: number; inventory: unknown; at: number } | null }>;
    const two = clients.find((c) => c.mac === '52:54:00:00:00:02');
    expect(two?.heartbeat?.uptimeSec).toBe(3700);
    expect(two?.heartbeat?.inventory).toEqual(full);
    expect(clients.find((c) => c.mac === '52:54:00:00:00:03')?.heartbeat).toBeNull();

    const text = await runStrata(['clients'], { data: store.dataDir });
    expect(text.code, text.stderr).toBe(0);
    const block = text.stdout.slice(text.stdout.indexOf('52:54:00:00:00:02'));
    expect(block).toMatch(/^52:54:00:00:00:02\t.*\n {2}heartbeat: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ, runs [0-9a-f]{12}, up 61m\n/);
    expect(block).toContain(
      '  hardware: 2 CPUs (QEMU Virtual CPU version 2.5+), 1000 MiB; eth0 52:54:00:00:00:01; vda 954 MiB; QEMU Standard PC (i440FX + PIIX, 1996)\n',
    );
    expect(text.stdout).toMatch(/^52:54:00:00:00:03\t.*\n {2}heartbeat: none yet$/m);
  });

  it('refuses an unknown MAC with a forged commit id, and bad input', async () => {
    const forged = await beat({ mac: '52:54:00:00:00:99', commit: 'f'.repeat(64), uptimeSec: 1 });
    expect(forged.statusCode).toBe(403);
    expect(forged.json().error.message ?? forged.body).toMatch(/never booted/);
    expect((await beat({ mac: 'nope', commit: base })).statusCode).toBe(400);
    expect((await beat({ mac: '52:54:00:00:00:99', commit: 'x' })).statusCode).toBe(400);
    // An unknown MAC that names a real commit is a machine booted elsewhere (e.g. from its backup disk): kept.
    expect((await beat({ mac: '52:54:00:00:00:98', commit: base })).statusCode).toBe(200);
  });
});
