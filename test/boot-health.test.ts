/**
 * Boot health and automatic fallback. The decisions are pure (holdBack in
 * store/boot-plan.ts, settle and judgeReport in store/boot-health.ts); the
 * routes run on a real store (fastify inject): a commit that fails to come up
 * healthy 3 times in a row on a client is replaced by the client's last good
 * commit, the held-back state shows in `strata clients --json`, `strata
 * clients clear` makes it try again, and forged or unknown reports are
 * refused without changing anything.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../server/build-server.ts';
import { judgeReport, settle } from '../store/boot-health.ts';
import { holdBack, planBoot, type BootFacts } from '../store/boot-plan.ts';
import { Store } from '../store/store.ts';
import type { HealthRow } from '../store/tables/boot-health.ts';
import type { Assignment, Profile } from '../store/types.ts';
import { runStrata, strataJson } from './helpers/cli.ts';
import { commitFiles, importProfile, tempDir } from './helpers/server-fixture.ts';

const MAC = '52:54:00:12:34:56';
const C = 'c'.repeat(64);
const G = 'a'.repeat(64);
const blob = (ch: string) => ({ digest: ch.repeat(64), size: 10 });
const profile: Profile = {
  name: 'lab',
  cmdline: 'console=ttyS0',
  compressor: 'zstd',
  level: null,
  kernel: blob('1'),
  initrd: blob('2'),
  head: C,
  createdAt: 0,
};
const assignment: Assignment = { match: 'default', kind: 'default', profile: 'lab', pin: null, cmdline: '' };
const lastGood = { commit: G, profile: 'lab', kernel: blob('7'), initrd: blob('8') };
const facts = (health: BootFacts['health'], over: Partial<BootFacts> = {}): BootFacts => ({
  mac: MAC,
  ip: '10.0.2.15',
  serverUrl: 'http://10.0.2.2:8080',
  hit: { assignment, profile, commit: C, kernel: blob('a'), initrd: blob('b') },
  health,
  ...over,
});

describe('the hold-back decision (pure)', () => {
  it('boots the assigned commit while it has failed fewer times in a row than allowed', () => {
    const p = planBoot(facts({ failures: 2, maxFailures: 3, lastGood }));
    expect(p).toMatchObject({ kind: 'boot', commit: C, kernel: 'a'.repeat(64), heldBack: null });
  });

  it('after 3 failures in a row serves the last good commit with its own kernel, and says why', () => {
    const p = planBoot(facts({ failures: 3, maxFailures: 3, lastGood }));
    expect(p.kind).toBe('boot');
    if (p.kind !== 'boot') return;
    expect(p.commit).toBe(G);
    expect(p.kernel).toBe('7'.repeat(64));
    expect(p.initrd).toBe('8'.repeat(64));
    expect(p.args).toContain(`strata.commit=${G}`);
    expect(p.lease?.commit).toBe(G);
    expect(p.heldBack).toEqual({ commit: C, failures: 3, reason: expect.stringContaining(`strata clients clear ${MAC}`) });
    expect(p.heldBack?.reason).toContain('3 times in a row');
  });

  it('keeps trying the commit when there is nothing better: no last good, the same commit, another profile, or no MAC', () => {
    expect(holdBack(facts({ failures: 5, maxFailures: 3, lastGood: null }))).toBeNull();
    expect(holdBack(facts({ failures: 5, maxFailures: 3, lastGood: { ...lastGood, commit: C } }))).toBeNull();
    expect(holdBack(facts({ failures: 5, maxFailures: 3, lastGood: { ...lastGood, profile: 'other' } }))).toBeNull();
    expect(holdBack(facts({ failures: 5, maxFailures: 3, lastGood }, { mac: null }))).toBeNull();
    expect(holdBack(facts(null))).toBeNull();
  });
});

describe('settling boots and judging reports (pure)', () => {
  const row = (over: Partial<HealthRow>): HealthRow => ({ mac: MAC, pending: null, lastGood: null, lastReport: null, held: null, ...over });

  it('a served boot without a report is a failure once the client asks again', () => {
    expect(settle(undefined)).toBeNull();
    expect(settle(row({}))).toBeNull();
    expect(settle(row({ pending: { commit: C, since: 0 } }))).toEqual({ commit: C, reason: expect.stringContaining('no health report') });
  });

  it('a report of the served boot is good or bad as it says; too late it is bad', () => {
    const r = row({ pending: { commit: C, since: 1000 } });
    expect(judgeReport(r, { mac: MAC, commit: C, ok: true, reason: '' }, 2000, 60_000)).toEqual({ kind: 'good', commit: C });
    expect(judgeReport(r, { mac: MAC, commit: C, ok: false, reason: 'sshd failed' }, 2000, 60_000)).toEqual({
      kind: 'bad',
      commit: C,
      reason: 'sshd failed',
    });
    expect(judgeReport(r, { mac: MAC, commit: C, ok: true, reason: '' }, 1000 + 61_000, 60_000)).toMatchObject({
      kind: 'bad',
      reason: expect.stringContaining('later than the 60 s allowed'),
    });
  });

  it('refuses a MAC never served and a commit it was not served; a repeated report changes nothing', () => {
    expect(() => judgeReport(undefined, { mac: MAC, commit: C, ok: true, reason: '' }, 0, 1)).toThrow(/never served a boot/);
    const r = row({ pending: { commit: C, since: 0 } });
    expect(() => judgeReport(r, { mac: MAC, commit: G, ok: true, reason: '' }, 0, 1000)).toThrow(/not the boot this server served/);
    const done = row({ lastReport: { commit: C, ok: true, reason: '', at: 5 } });
    expect(judgeReport(done, { mac: MAC, commit: C, ok: true, reason: '' }, 9, 1000)).toEqual({ kind: 'repeat', commit: C, ok: true });
    expect(() => judgeReport(done, { mac: MAC, commit: C, ok: false, reason: '' }, 9, 1000)).toThrow(/refused/);
  });
});

describe('boot health over HTTP on a real store', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: Store;
  let app: FastifyInstance;
  let base: string;
  let broken: string;

  beforeAll(async () => {
    tmp = tempDir('strata-health-');
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

  const boot = async (): Promise<string> => {
    const r = await app.inject({ method: 'GET', url: `/v1/boot/ipxe?mac=${MAC}` });
    expect(r.statusCode).toBe(200);
    return /strata\.commit=([0-9a-f]{64})/.exec(r.body)![1]!;
  };
  const report = (body: unknown) => app.inject({ method: 'POST', url: '/v1/boot-health', payload: body as object });
  type Row = { mac: string; commit: string; heldBack: { commit: string; served: string; reason: string } | null };
  const me = async () => (await strataJson<Row[]>(['clients'], { data: store.dataDir })).find((c) => c.mac === MAC)!;

  it('a commit that never comes up healthy is tried 3 times, then the client gets its last good commit until cleared', async () => {
    expect(await boot()).toBe(base);
    expect((await report({ mac: MAC, commit: base, ok: true })).statusCode).toBe(200);
    broken = await commitFiles(store, tmp.dir, 'lab', { 'etc/broken': 'yes\n' }, 'breaks boot');
    // Failure 1: the client says so; 2: no report before it asks again; 3: it says so again.
    expect(await boot()).toBe(broken);
    expect((await report({ mac: MAC, commit: broken, ok: false, reason: 'health check failed' })).statusCode).toBe(200);
    expect(await boot()).toBe(broken);
    expect(await boot()).toBe(broken);
    expect((await report({ mac: MAC, commit: broken, ok: false })).statusCode).toBe(200);
    expect((await me()).heldBack).toBeNull();
    // The 4th request: held back on the last good commit.
    expect(await boot()).toBe(base);
    const held = await me();
    expect(held.commit).toBe(base);
    expect(held.heldBack).toMatchObject({ commit: broken, served: base });
    expect(held.heldBack?.reason).toContain('3 times in a row');
    // The admin API shows it too.
    const { token } = store.createToken('health-test');
    const api = await app.inject({ method: 'GET', url: '/v1/clients', headers: { authorization: `Bearer ${token}` } });
    expect(api.json().clients.find((c: { mac: string }) => c.mac === MAC).health.heldBack.commit).toBe(broken);
    // A good boot of the last good commit does not forgive the broken one.
    expect((await report({ mac: MAC, commit: base, ok: true })).statusCode).toBe(200);
    expect(await boot()).toBe(base);
    // strata clients clear: the next boot tries the assigned commit again.
    const cleared = await runStrata(['clients', 'clear', MAC], { data: store.dataDir });
    expect(cleared.code, cleared.stderr).toBe(0);
    expect(cleared.stdout).toContain('cleared');
    expect((await me()).heldBack).toBeNull();
    expect(await boot()).toBe(broken);
  });

  it('refuses a report from an unknown MAC or naming a commit the client was not served, and nothing changes', async () => {
    const before = store.clientHealth(MAC);
    const unknown = await report({ mac: '52:54:00:00:00:99', commit: base, ok: true });
    expect(unknown.statusCode).toBe(403);
    expect(unknown.json().error.message).toMatch(/never served a boot/);
    const forged = await report({ mac: MAC, commit: 'f'.repeat(64), ok: true });
    expect(forged.statusCode).toBe(403);
    expect(forged.json().error.message).toMatch(/not the boot this server served/);
    expect((await report({ mac: 'nope', commit: base, ok: true })).statusCode).toBe(400);
    expect((await report({ mac: MAC, commit: base })).statusCode).toBe(400);
    expect(store.clientHealth(MAC)).toEqual(before);
    expect(store.clientHealth('52:54:00:00:00:99').lastGood).toBeNull();
  });

  it("serves a profile's health check to its clients; strata profile --health-check sets it", async () => {
    const empty = await app.inject({ method: 'GET', url: `/v1/boot-health/check?commit=${base}` });
    expect(empty.statusCode).toBe(200);
    expect(empty.body).toBe('');
    const setCmd = await runStrata(['profile', 'lab', '--health-check', 'test ! -e /etc/broken'], { data: store.dataDir });
    expect(setCmd.code, setCmd.stderr).toBe(0);
    const set = await app.inject({ method: 'GET', url: `/v1/boot-health/check?commit=${base}` });
    expect(set.body).toBe('test ! -e /etc/broken\n');
    expect((await app.inject({ method: 'GET', url: '/v1/boot-health/check?commit=zz' })).statusCode).toBe(400);
    expect((await app.inject({ method: 'GET', url: `/v1/boot-health/check?commit=${'e'.repeat(64)}` })).statusCode).toBe(404);
  });
});
