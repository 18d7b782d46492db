/**
 * The admin API for enrollment over real HTTP handling (fastify inject) on a
 * real store: a pending key with a held push is listed with its MAC and IP,
 * approving it queues the push under its id for the profile given,
 * rejecting deletes the held archive; without a token nothing is shown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../server/build-server.ts';
import { Enrollment } from '../store/enrollment.ts';
import { Store } from '../store/store.ts';
import { importProfile, tempDir } from './helpers/server-fixture.ts';

let tmp: ReturnType<typeof tempDir>;
let store: Store;
let app: FastifyInstance;
let token: string;
let base: string;

/** A pending key (random ed25519-looking blob) with one held push of a few bytes. */
function heldPush(e: Enrollment, pushId: string): string {
  const blob = Buffer.concat([Buffer.from('\0\0\0\x0bssh-ed25519\0\0\0\x20'), randomBytes(32)]);
  const k = e.notePending({ algo: 'ssh-ed25519', keyData: blob, mac: '52:54:00:aa:bb:cc', ip: '10.0.2.15', hostname: 'lab-1' });
  writeFileSync(e.heldArchivePath(pushId), randomBytes(64));
  e.hold({ id: pushId, keyId: k.id, profile: 'lab', parent: base, message: 'held', pushKey: null, bytes: 64 });
  return k.id;
}

beforeAll(async () => {
  tmp = tempDir('strata-enroll-routes-');
  store = await Store.open(`${tmp.dir}/data`, { create: true });
  base = (await importProfile(store, tmp.dir, 'lab')).base;
  token = store.createToken('admin').token;
  app = buildServer({ store });
  await app.ready();
});

afterAll(async () => {
  await app?.close();
  store?.close();
  tmp?.cleanup();
});

const call = (method: 'GET' | 'POST', url: string, body?: unknown, auth = true) =>
  app.inject({ method, url, payload: body as object, headers: auth ? { authorization: `Bearer ${token}` } : {} });

describe('/v1/keys/pending', () => {
  it('needs a token', async () => {
    expect((await call('GET', '/v1/keys/pending', undefined, false)).statusCode).toBe(401);
  });

  it('lists a pending key with its MAC, IP and held push; approve queues the push under its id', async () => {
    const id = heldPush(new Enrollment(store), 'p0000000000000a1');
    const list = (await call('GET', '/v1/keys/pending')).json() as { pendingKeys: Array<Record<string, unknown>> };
    expect(list.pendingKeys).toEqual([
      expect.objectContaining({ id, mac: '52:54:00:aa:bb:cc', ip: '10.0.2.15', hostname: 'lab-1', heldPushes: 1 }),
    ]);
    const bad = await call('POST', `/v1/keys/pending/${id}/approve`, { profiles: ['nope'] });
    expect(bad.statusCode).toBe(404);
    const r = await call('POST', `/v1/keys/pending/${id}/approve`, { profiles: ['lab'] });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toMatchObject({ key: { name: `client-${id}`, profiles: ['lab'] }, released: ['p0000000000000a1'] });
    expect(store.getPush('p0000000000000a1')).toMatchObject({ state: 'queued', author: `client-${id}`, profile: 'lab' });
    expect(((await call('GET', '/v1/keys/pending')).json() as { pendingKeys: unknown[] }).pendingKeys).toEqual([]);
  });

  it('reject deletes the held archive and the key; an unknown id is a 404', async () => {
    const e = new Enrollment(store);
    const id = heldPush(e, 'p0000000000000b2');
    expect(existsSync(e.heldArchivePath('p0000000000000b2'))).toBe(true);
    const r = await call('POST', `/v1/keys/pending/${id}/reject`, {});
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toEqual({ deleted: ['p0000000000000b2'] });
    expect(existsSync(e.heldArchivePath('p0000000000000b2'))).toBe(false);
    expect(() => store.getPush('p0000000000000b2')).toThrow();
    expect((await call('POST', `/v1/keys/pending/${id}/reject`, {})).statusCode).toBe(404);
  });
});
