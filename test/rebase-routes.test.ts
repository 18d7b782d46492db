/**
 * The admin API behind the web page's rebase and delete buttons, over
 * loopback against buildServer() on a real store: rebase (refused with the
 * conflicts as data, then forced), deleting a branch and a tag, removing a
 * profile (refused while assigned), and rollback as the undo.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../server/build-server.ts';
import { Store } from '../store/store.ts';
import { commitFiles, importProfile, tempDir } from './helpers/server-fixture.ts';

let tmp: ReturnType<typeof tempDir>;
let store: Store;
let app: FastifyInstance;
let url: string;
let token: string;
const ids: Record<string, string> = {};

beforeAll(async () => {
  tmp = tempDir('strata-rebase-http-');
  store = await Store.open(`${tmp.dir}/data`, { create: true });
  await importProfile(store, tmp.dir, 'lab', { 'etc/hostname': 'lab\n', 'etc/shared': 'v0\n' });
  ids.mine = await commitFiles(store, tmp.dir, 'lab', { 'etc/shared': 'mine\n' }, 'mine');
  ids.newBase = (await importProfile(store, tmp.dir, 'base2', { 'etc/hostname': 'lab\n', 'etc/shared': 'v2\n' })).base;
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

// biome-ignore lint/suspicious/noExplicitAny: test responses are checked field by field
async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}

describe('rebase and deleting refs over the admin API', () => {
  it('refuses a conflicting rebase with the conflicts as data and moves nothing; force rebases', async () => {
    const r = await api('POST', '/v1/profiles/lab/rebase', { onto: ids.newBase });
    expect(r.status).toBe(409);
    expect(r.json.error.code).toBe('E_CONFLICT');
    expect(r.json.error.conflicts).toEqual([expect.objectContaining({ path: 'etc/shared', newBase: expect.stringMatching(/^file/) })]);
    expect(store.resolve('lab')).toBe(ids.mine);
    const forced = await api('POST', '/v1/profiles/lab/rebase', { onto: ids.newBase, force: true });
    expect(forced.status).toBe(200);
    expect(forced.json.reused).toEqual([store.getCommit(ids.mine!).addedLayer]);
    expect(store.resolve('lab')).toBe(forced.json.commit.id);
  });

  it('deletes a branch and a tag by name, and a profile unless an assignment boots it; rollback restores', async () => {
    store.branch('lab/push-x', ids.mine!);
    store.tag('t1', ids.mine!);
    expect((await api('DELETE', `/v1/branches?name=${encodeURIComponent('lab/push-x')}`)).status).toBe(200);
    expect((await api('DELETE', '/v1/tags?name=t1')).status).toBe(200);
    expect(store.listRefs().map((r) => r.name)).not.toContain('lab/push-x');
    expect((await api('POST', `/v1/profiles/${encodeURIComponent('lab/push-x')}/rollback`, {})).json.restored).toEqual(['lab/push-x']);

    store.assign('default', 'base2');
    const refused = await api('DELETE', '/v1/profiles/base2');
    expect(refused.status).toBe(409);
    expect(refused.json.error.code).toBe('E_IN_USE');
    store.unassign('default');
    expect((await api('DELETE', '/v1/profiles/base2')).status).toBe(200);
    expect((await api('GET', '/v1/profiles/base2')).status).toBe(404);
    expect((await api('POST', '/v1/profiles/base2/rollback', {})).json.restored).toEqual(['base2']);
    expect((await api('GET', '/v1/profiles/base2')).status).toBe(200);
  });
});
