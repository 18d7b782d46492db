/**
 * Killed CLI operations (STRATA_FAULT makes the process wait at a named
 * point; the test SIGKILLs it there): a rollback killed inside its
 * transaction changes nothing, a gc killed between its transaction and its
 * blob deletions loses nothing and leaves orphan blobs the next gc removes;
 * fsck stays clean throughout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../store/store.ts';
import { runStrata, STRATA } from './helpers/cli.ts';
import { commitFiles, importProfile } from './helpers/server-fixture.ts';

let work: string;
let data: string;

/** SIGKILLs P once READY says it is at its fault point. */
async function killWhen(p: ChildProcess, ready: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && p.exitCode === null && !ready()) await new Promise((r) => setTimeout(r, 20));
  expect(p.exitCode, 'the process finished before the point it was to be killed at').toBeNull();
  p.kill('SIGKILL');
  await new Promise((r) => p.on('close', r));
}

const strataAt = (args: string[], fault: string) =>
  spawn(STRATA, ['--data', data, ...args], { stdio: 'ignore', env: { ...process.env, STRATA_FAULT: `${fault}:30000` } });

const readDb = <T>(f: (db: Database.Database) => T): T => {
  const db = new Database(join(data, 'strata.db'), { readonly: true, timeout: 0 });
  try {
    return f(db);
  } finally {
    db.close();
  }
};

const writeLocked = () => {
  const db = new Database(join(data, 'strata.db'), { timeout: 0 });
  try {
    db.exec('BEGIN IMMEDIATE; ROLLBACK;');
    return false;
  } catch {
    return true;
  } finally {
    db.close();
  }
};

/** In-process store work between the killed CLI runs (each CLI start costs seconds). */
async function withStore<T>(f: (s: Store) => Promise<T> | T, create = false): Promise<T> {
  const store = await Store.open(data, { create });
  try {
    return await f(store);
  } finally {
    store.close();
  }
}

const commit = (name: string) => withStore((s) => commitFiles(s, work, 'lab', { [`etc/${name}`]: `${name}\n` }, name));
const logIds = () => withStore((s) => s.log('lab').map((c) => c.id));

async function expectFsckClean() {
  const f = await withStore((s) => s.fsck());
  expect(f.problems).toEqual([]);
  expect(f.ok).toBe(true);
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'strata-fault-'));
  data = join(work, 'data');
  await withStore((s) => importProfile(s, work, 'lab'), true);
  // gc may take what only the reflog keeps, at once: the test needs dead commits now.
  writeFileSync(join(data, 'config.json'), JSON.stringify({ reflogKeepMs: 0, gcGraceMs: 0, leaseMs: 0 }));
}, 120_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('SIGKILL at injected fault points', () => {
  it('a rollback killed inside its transaction leaves the head and the reflog as they were; the next rollback works', async () => {
    const c1 = await commit('one');
    const c2 = await commit('two');
    const reflog = await withStore((s) => s.reflog('lab'));
    await killWhen(strataAt(['rollback', 'lab'], 'rollback'), writeLocked);
    expect(readDb((db) => db.prepare("SELECT commit_id FROM refs WHERE name = 'lab'").get())).toEqual({ commit_id: c2 });
    expect(await withStore((s) => s.reflog('lab'))).toEqual(reflog);
    await expectFsckClean();
    await withStore((s) => s.rollback('lab'));
    expect((await logIds())[0]).toBe(c1);
  });

  it('a gc killed after its transaction, before deleting blobs, loses nothing live; the next gc removes the orphans', async () => {
    const log = await logIds();
    const dead = await commit('doomed');
    const { blob } = await withStore((s) => {
      const layer = s.getCommit(dead).manifest.layers.at(-1)!.digest;
      s.rollback('lab', log[0]);
      return { blob: s.objects.pathOf(layer) };
    });
    await new Promise((r) => setTimeout(r, 50)); // the reflog entries are now older than reflogKeepMs (0)
    expect(existsSync(blob)).toBe(true);

    const commitRow = () => readDb((db) => db.prepare('SELECT id FROM commits WHERE id = ?').get(dead));
    await killWhen(strataAt(['gc'], 'gc-delete'), () => commitRow() === undefined && !writeLocked());
    // The rows went in gc's transaction; the blob file is an orphan now, nothing names it.
    expect(commitRow()).toBeUndefined();
    expect(existsSync(blob)).toBe(true);
    await expectFsckClean();
    expect(await logIds()).toEqual(log);

    const again = await runStrata(['gc'], { data });
    expect(again.code, again.stderr).toBe(0);
    expect(existsSync(blob)).toBe(false);
    await expectFsckClean();
    expect(await logIds()).toEqual(log);
  });
});
