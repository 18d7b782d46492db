/**
 * What gc keeps and why, with every reason per commit (store.gcRoots(), GET
 * /v1/gc/roots, the page's held commits), and the store's one commit cache
 * seeing what other processes and gc did to the history.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { Store } from '../store/store.ts';
import { gcReasonText } from '../store/gc.ts';
import { buildServer } from '../server/build-server.ts';
import { collectHeld, heldReasons, rootMayBelong, type GcRoot, type Known } from '../web/held.js';
import { commitFiles, importProfile, tempDir } from './helpers/server-fixture.ts';

let tmp: ReturnType<typeof tempDir>;
let store: Store;
let app: FastifyInstance;
let url: string;
let token: string;
const ids: Record<string, string> = {};
const MAC = '52:54:00:aa:00:01';

beforeAll(async () => {
  tmp = tempDir('strata-gc-roots-');
  store = await Store.open(`${tmp.dir}/data`, { create: true });
  ids.base = (await importProfile(store, tmp.dir, 'lab')).base;
  ids.l1 = await commitFiles(store, tmp.dir, 'lab', { 'etc/motd': 'hi\n' }, 'motd');
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

describe('gc roots keep every reason', () => {
  it('a head that is tagged, pinned, booted and under a pending push names all of them, in order, once each', () => {
    store.tag('v1', ids.l1!);
    store.assign(MAC, 'lab@v1');
    store.recordClient({ mac: MAC, ip: '10.0.0.5', commit: ids.l1!, profile: 'lab', boot: true });
    store.createPush({ id: 'pgcroots0000001', profile: 'lab', parent: ids.l1!, message: 'x', author: 'k', bytes: 1 });
    const roots = store.gcRoots();
    expect(roots.get(ids.l1!)).toEqual([
      { kind: 'ref', refType: 'branch', ref: 'lab' },
      { kind: 'ref', refType: 'tag', ref: 'v1' },
      { kind: 'reflog', ref: 'lab' },
      { kind: 'reflog', ref: 'v1' },
      { kind: 'assignment', match: MAC },
      { kind: 'lease', mac: MAC },
      { kind: 'push', push: 'pgcroots0000001' },
    ]);
    expect(roots.get(ids.l1!)!.map(gcReasonText)).toEqual([
      'branch lab',
      'tag v1',
      'reflog of lab',
      'reflog of v1',
      `pinned by assignment ${MAC}`,
      `booted by client ${MAC}`,
      'parent of pending push pgcroots0000001',
    ]);
    // Two reflog entries of lab name the base (its import and the commit on it): one reason.
    expect(roots.get(ids.base!)).toEqual([{ kind: 'reflog', ref: 'lab' }]);
  });

  it("GET /v1/gc/roots sends every reason as data with its words, and the first one's words as `reason`", async () => {
    const r = await fetch(`${url}/v1/gc/roots`, { headers: { authorization: `Bearer ${token}` } });
    expect(r.status).toBe(200);
    const { roots } = (await r.json()) as { roots: GcRoot[] };
    const l1 = roots.find((x) => x.commit === ids.l1);
    expect(l1?.reason).toBe('branch lab');
    expect(l1?.reasons).toEqual(
      store
        .gcRoots()
        .get(ids.l1!)!
        .map((x) => ({ ...x, text: gcReasonText(x) })),
    );
    expect(l1?.reasons[5]).toEqual({ kind: 'lease', mac: MAC, text: `booted by client ${MAC}` });
    for (const x of roots) expect(x.reason).toBe(x.reasons[0]!.text);
  });

  it('gc keeps a commit whose only reasons outlive the reflog (a client lease and a pin)', async () => {
    const gone = await commitFiles(store, tmp.dir, 'lab', { 'tmp/x': 'x\n' }, 'to drop');
    const leased = await commitFiles(store, tmp.dir, 'lab', { 'tmp/y': 'y\n' }, 'leased');
    store.rollback('lab', ids.l1!);
    // The reflog has expired; the lease is young (a boot moments before `now`).
    const now = Date.now() + store.config.reflogKeepMs + 1000;
    const lab2 = '52:54:00:aa:00:02';
    store.recordClient({ mac: lab2, ip: '10.0.0.6', commit: leased, profile: 'lab', boot: true });
    store.db.prepare('UPDATE clients SET last_seen = ? WHERE mac = ?').run(now - 1000, lab2);
    expect(store.gcRoots(now).get(leased)).toEqual([{ kind: 'lease', mac: lab2 }]);
    const dry = await store.gc({ dryRun: true, now });
    expect(dry.commits).not.toContain(leased);
    expect(dry.commits).not.toContain(gone); // the leased commit's parent
    expect(dry.commits).not.toContain(ids.l1);
  });
});

describe('the commit cache follows other writers and gc', () => {
  it('a warm store sees commits another process made: log, NAME~N and the graph', async () => {
    expect(store.log('lab')[0]!.id).toBe(ids.l1);
    const other = await Store.open(`${tmp.dir}/data`);
    try {
      const a = await commitFiles(other, tmp.dir, 'lab', { 'srv/a': 'a\n' }, 'from another process');
      const b = await commitFiles(other, tmp.dir, 'lab', { 'srv/b': 'b\n' }, 'and another');
      expect(
        store
          .log('lab')
          .slice(0, 3)
          .map((c) => c.id),
      ).toEqual([b, a, ids.l1]);
      expect(store.resolve('lab~2')).toBe(ids.l1);
      expect(store.graph('lab').commits.map((c) => c.id)).toContain(b);
      expect(store.log('lab', { limit: 1 })[0]!.message).toBe('and another');
    } finally {
      other.close();
    }
  });

  it('after gc deletes the newest commits, commits made next still show in the log', async () => {
    const dropped = await commitFiles(store, tmp.dir, 'lab', { 'srv/c': 'c\n' }, 'dropped');
    store.rollback('lab');
    store.db.prepare('DELETE FROM clients').run();
    store.db.prepare('DELETE FROM pushes').run();
    const r = await store.gc({ now: Date.now() + store.config.reflogKeepMs + 1000 });
    expect(r.commits).toContain(dropped);
    expect(() => store.getCommit(dropped)).toThrow(/no commit/);
    // SQLite may reuse the deleted rows' rowids for these.
    const other = await Store.open(`${tmp.dir}/data`);
    try {
      const n1 = await commitFiles(other, tmp.dir, 'lab', { 'srv/d': 'd\n' }, 'next 1');
      const n2 = await commitFiles(store, tmp.dir, 'lab', { 'srv/e': 'e\n' }, 'next 2');
      const log = store.log('lab').map((c) => c.id);
      expect(log.slice(0, 2)).toEqual([n2, n1]);
      expect(log).not.toContain(dropped);
      expect(other.log('lab').map((c) => c.id)).toEqual(log);
    } finally {
      other.close();
    }
    expect((await store.fsck()).problems).toEqual([]);
  });
});

describe('the page reads every reason (web/held.js)', () => {
  const known: Known = {
    assignments: [{ match: 'pin-a', profile: 'lab', pin: 'c2' }],
    clients: [
      { mac: 'm-lab', profile: 'lab', commit: 'c3' },
      { mac: 'm-other', profile: 'other', commit: null },
    ],
    pushes: [{ id: 'p-lab', profile: 'lab' }],
  };
  const commits: Record<string, { id: string; profile: string; parent: string | null; mergeParent: string | null }> = {
    c1: { id: 'c1', profile: 'lab', parent: 'drawn', mergeParent: null },
    c2: { id: 'c2', profile: 'lab', parent: 'drawn', mergeParent: null },
    c3: { id: 'c3', profile: 'lab', parent: 'drawn', mergeParent: null },
    o1: { id: 'o1', profile: 'other', parent: null, mergeParent: null },
    o2: { id: 'o2', profile: 'other', parent: null, mergeParent: null },
  };
  const get = async (id: string) => {
    const c = commits[id];
    if (!c) throw new Error('gone');
    return c;
  };

  const R = {
    reflog: (ref: string) => ({ kind: 'reflog' as const, ref, text: `reflog of ${ref}` }),
    lease: (mac: string) => ({ kind: 'lease' as const, mac, text: `booted by client ${mac}` }),
    push: (push: string) => ({ kind: 'push' as const, push, text: `parent of pending push ${push}` }),
    branch: (ref: string) => ({ kind: 'ref' as const, refType: 'branch' as const, ref, text: `branch ${ref}` }),
  };

  it("only this profile's reflog makes a commit held here", async () => {
    const roots: GcRoot[] = [
      { commit: 'c1', reasons: [R.reflog('lab')] },
      { commit: 'o1', reasons: [R.reflog('other')] },
    ];
    const held = await collectHeld(roots, new Set(['drawn']), 'lab', known, get);
    expect(held.commits.map((c) => c.id)).toEqual(['c1']);
    expect(heldReasons('c1', held.why.get('c1')!, known, new Set())).toEqual(['reflog']);
  });

  it('a reason of a kind the page does not know is shown in the words the server sent', async () => {
    const odd = { kind: 'snapshot', text: 'kept by snapshot s1' } as unknown as GcRoot['reasons'][number];
    const held = await collectHeld([{ commit: 'c1', reasons: [odd] }], new Set(['drawn']), 'lab', known, get);
    expect(heldReasons('c1', held.why.get('c1')!, known, new Set())).toEqual(['kept by snapshot s1']);
  });

  it('every reason of a root counts: a pending push behind a client lease is named too', async () => {
    const roots: GcRoot[] = [{ commit: 'c3', reasons: [R.lease('m-lab'), R.push('p-lab')] }];
    const held = await collectHeld(roots, new Set(['drawn']), 'lab', known, get);
    expect(held.commits.map((c) => c.id)).toEqual(['c3']);
    expect(heldReasons('c3', held.why.get('c3')!, known, new Set())).toEqual(['pinned by 1 client', 'pending push']);
  });

  it('a root on a branch or tag is not held, whatever else keeps it', () => {
    expect(rootMayBelong({ commit: 'c1', reasons: [R.branch('other'), R.reflog('lab')] }, 'lab', known)).toBe(false);
    expect(rootMayBelong({ commit: 'c1', reasons: [R.reflog('other'), R.reflog('lab')] }, 'lab', known)).toBe(true);
    expect(rootMayBelong({ commit: 'c1', reasons: [R.reflog('other'), R.lease('m-other')] }, 'lab', known)).toBe(false);
  });

  it("another profile's commit is held only when this profile's own reflog or pin names it", async () => {
    const roots: GcRoot[] = [
      // Another profile's reflog and a lab client: the commit is other's, and lab's reflog does not name it.
      { commit: 'o1', reasons: [R.reflog('other'), R.lease('m-lab')] },
      // lab's reflog names it: lab's graph shows it.
      { commit: 'o2', reasons: [R.reflog('other'), R.reflog('lab/x')] },
    ];
    const held = await collectHeld(roots, new Set(['drawn']), 'lab', known, get);
    expect(held.commits.map((c) => c.id)).toEqual(['o2']);
  });
});
