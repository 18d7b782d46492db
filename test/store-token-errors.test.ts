/**
 * Creating an admin token: a name already taken and a database that cannot
 * store it are different failures with different messages (only the first
 * is fixed by revoking the old token).
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { StrataError } from '../store/errors.ts';
import { Store } from '../store/store.ts';
import { tempDir } from './helpers/server-fixture.ts';

let tmp: ReturnType<typeof tempDir>;
let store: Store;

beforeEach(async () => {
  tmp = tempDir('strata-token-errors-');
  store = await Store.open(join(tmp.dir, 'data'), { create: true });
});

afterEach(() => {
  store?.close();
  tmp?.cleanup();
});

function failure(f: () => unknown): StrataError {
  try {
    f();
  } catch (e) {
    return e as StrataError;
  }
  throw new Error('expected a failure');
}

describe('createToken', () => {
  it('a duplicate name says the name is taken', () => {
    store.createToken('ci');
    const e = failure(() => store.createToken('ci'));
    expect(e.code).toBe('E_REF_EXISTS');
    expect(e.message).toBe('a token named ci already exists; revoke it first');
    // The first token still works.
    expect(store.listTokens().map((t) => t.name)).toEqual(['ci']);
  });

  it('a database error is reported as itself, not as a taken name', () => {
    // Another process (an admin with sqlite3, a broken migration) dropped the table.
    const other = new Database(join(tmp.dir, 'data', 'strata.db'));
    other.exec('DROP TABLE tokens');
    other.close();
    const e = failure(() => store.createToken('ci'));
    expect(e.code).not.toBe('E_REF_EXISTS');
    expect(e.message).not.toMatch(/already exists/);
    expect(e.message).toMatch(/cannot store the token ci: .*no such table: tokens/);
  });

  it('a read-only database is reported as itself too', async () => {
    store.close();
    store = await Store.open(join(tmp.dir, 'data'));
    store.db.pragma('query_only = ON');
    const e = failure(() => store.createToken('ci'));
    expect(e.code).not.toBe('E_REF_EXISTS');
    expect(e.message).toMatch(/cannot store the token ci: .*readonly/i);
  });
});
