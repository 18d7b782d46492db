/**
 * Errors carry their meaning (protocol/errors.ts): a user's mistake answers
 * 4xx with its code over real HTTP and is not logged as a server error, and
 * `strata` and `strata-agent` exit with the same status for the same code.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { Store } from '../store/store.ts';
import { buildServer } from '../server/build-server.ts';
import { ERRORS, exitCodeFor, StrataError } from '../protocol/errors.ts';
import { importProfile, tempDir } from './helpers/server-fixture.ts';
import { runStrata } from './helpers/cli.ts';
import { runAgent } from './helpers/agent-overlay.ts';

let tmp: ReturnType<typeof tempDir>;
let store: Store;
let app: FastifyInstance;
let url: string;
let token: string;
let base: string;
const logged: string[] = [];

beforeAll(async () => {
  tmp = tempDir('strata-errors-');
  store = await Store.open(join(tmp.dir, 'data'), { create: true });
  base = (await importProfile(store, tmp.dir, 'lab')).base;
  token = store.createToken('tester').token;
  app = buildServer({ store, logger: true });
  // Keep what fastify logs: a user's mistake must not show up as a server error.
  const origError = app.log.error.bind(app.log);
  app.log.error = ((...a: unknown[]) => {
    logged.push(JSON.stringify(a));
    return (origError as (...x: unknown[]) => void)(...a);
  }) as typeof app.log.error;
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}, 180_000);

afterAll(async () => {
  await app?.close();
  store?.close();
  tmp?.cleanup();
});

describe('the error table', () => {
  it('answers 4xx for every caller’s fault and 5xx only for the server’s', () => {
    for (const [code, m] of Object.entries(ERRORS)) {
      if (m.userFault) expect(m.http, code).toBeLessThan(500);
      if (m.http >= 500) expect(m.userFault, code).toBe(false);
      expect(m.http >= 400 && m.http < 600, code).toBe(true);
      expect(m.hint.length, code).toBeGreaterThan(0);
    }
    for (const code of ['E_NOTHING_TO_DO', 'E_CHAIN_TOO_LONG', 'E_NOT_SQUASHFS', 'E_BAKE_FAILED'] as const) {
      expect(ERRORS[code].http, code).toBeGreaterThanOrEqual(400);
      expect(ERRORS[code].http, code).toBeLessThan(500);
    }
    expect(exitCodeFor(new StrataError('E_NOTHING_TO_DO', 'x'))).toBe(ERRORS.E_NOTHING_TO_DO.exit);
    expect(exitCodeFor(new Error('boom'))).toBe(1);
  });
});

describe('over HTTP', () => {
  it('a rollback to where the profile already is answers 409 E_NOTHING_TO_DO and logs no server error', async () => {
    const r = await fetch(`${url}/v1/profiles/lab/rollback`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: base }),
    });
    const body = (await r.json()) as { error: { code: string; message: string } };
    expect(r.status).toBe(409);
    expect(body.error.code).toBe('E_NOTHING_TO_DO');
    expect(body.error.message).toMatch(/already at/);
    expect(logged).toEqual([]);
  });
});

describe('exit codes', () => {
  it('strata and strata-agent exit with the same status for "nothing to do"', async () => {
    const data = join(tmp.dir, 'data');
    store.close();
    try {
      const cli = await runStrata(['rollback', 'lab', base], { data });
      expect(cli.stderr).toMatch(/already at/);
      expect(cli.code).toBe(ERRORS.E_NOTHING_TO_DO.exit);

      const upper = join(tmp.dir, 'empty-upper');
      mkdirSync(upper);
      const state = join(tmp.dir, 'agent-state');
      const agent = await runAgent([
        '--server',
        '127.0.0.1',
        '--upper',
        upper,
        '--state-dir',
        state,
        '--spool-dir',
        join(state, 'spool'),
        'commit',
        '-m',
        'nothing',
        '--profile',
        'lab',
        '--parent',
        base,
        '--no-send',
      ]);
      expect(agent.stderr).toMatch(/E_NOTHING_TO_DO/);
      expect(agent.code).toBe(cli.code);
    } finally {
      store = await Store.open(data);
    }
  });
});
