/**
 * After a crash, incoming/ holds uploads cut short and archives of pushes
 * that had already landed. The server at start and gc remove exactly those:
 * never the archive of a push still queued (it is baked and committed after
 * the restart), never the temp file of an upload in progress (its writer is
 * alive, or it was written to within the grace time). Real store, real
 * server start, real bakes.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../server/main.ts';
import { Store } from '../store/store.ts';
import { importProfile, tempDir, waitForPushSettled } from './helpers/server-fixture.ts';
import { zstdTar } from './helpers/server-ssh.ts';

let tmp: ReturnType<typeof tempDir>;
let data: string;
let incoming: string;
let srv: RunningServer | undefined;
const live = spawn('sleep', ['600'], { stdio: 'ignore' });

/** The pid of a process that has exited: the writer of an upload that crashed. */
const deadPid = (): number => {
  const r = spawnSync('sh', ['-c', 'echo $$']);
  return Number(r.stdout.toString().trim());
};

const twoHoursAgo = () => (Date.now() - 2 * 3600 * 1000) / 1000;
const put = (name: string, old = false) => {
  const p = join(incoming, name);
  writeFileSync(p, 'leftover bytes');
  if (old) utimesSync(p, twoHoursAgo(), twoHoursAgo());
};

beforeAll(async () => {
  tmp = tempDir('strata-incoming-');
  data = join(tmp.dir, 'data');
  incoming = join(data, 'incoming');
}, 60_000);

afterAll(async () => {
  live.kill();
  await srv?.close();
  tmp?.cleanup();
});

describe('incoming/ after a crash', () => {
  it('the server at start removes dead uploads and archives of landed pushes, and keeps the queued push and live uploads', async () => {
    const store = await Store.open(data, { create: true });
    const base = (await importProfile(store, tmp.dir, 'lab')).base;
    const queue = (id: string, text: string) => {
      writeFileSync(store.pushArchivePath(id), zstdTar(tmp.dir, { 'etc/motd': text }));
      store.createPush({ id, profile: 'lab', parent: base, message: id, author: 'lab-client', bytes: 100 });
    };
    // Landed before the crash, whose archives the crash kept (killed between the commit and the rm).
    queue('plandedcommit01', 'committed\n');
    expect((await store.landPush('plandedcommit01')).state).toBe('committed');
    writeFileSync(store.pushArchivePath('plandedcommit01'), 'archive of a committed push');
    queue('plandedreject01', 'rejected\n');
    writeFileSync(store.pushArchivePath('plandedreject01'), 'not a tar at all, so it is rejected'.repeat(20));
    expect((await store.landPush('plandedreject01')).state).toBe('rejected');
    writeFileSync(store.pushArchivePath('plandedreject01'), 'archive of a rejected push');
    // Queued when the server died: must survive and land.
    queue('pstillqueued001', 'still queued\n');
    store.close();

    put(`pdeadupload0001.tar.zst.tmp-${deadPid()}`); // its writer died
    put(`pliveupload0001.tar.zst.tmp-${live.pid}`); // another process still uploading
    put('poldupload00001.tar.zst.tmp', true); // an older strata's name, untouched for two hours
    put('pnewupload00001.tar.zst.tmp'); // the same, written to just now
    put('porphanold00001.tar.zst', true); // renamed into place, never recorded, two hours ago
    put('porphannew00001.tar.zst'); // renamed a moment ago, its row comes next
    put('held-pheldgone0001.tar.zst', true); // its pending key was dropped
    put('notes.txt'); // not ours: left alone

    srv = await startServer({ dataDir: data, http: '127.0.0.1:0', ssh: '127.0.0.1:0', handleSignals: false, log: () => {} });
    const queued = await waitForPushSettled(srv.store, 'pstillqueued001');
    expect(queued.state).toBe('committed');
    // The baker deletes a landed push's archive just after its commit.
    for (let i = 0; i < 100 && existsSync(srv.store.pushArchivePath('pstillqueued001')); i++) await new Promise((r) => setTimeout(r, 50));
    expect(readdirSync(incoming).sort()).toEqual(
      [`pliveupload0001.tar.zst.tmp-${live.pid}`, 'pnewupload00001.tar.zst.tmp', 'porphannew00001.tar.zst', 'notes.txt'].sort(),
    );
  }, 180_000);

  it('gc removes what a later crash left, and lists it (dry run first)', async () => {
    const store = srv!.store;
    writeFileSync(store.pushArchivePath('plandedcommit01'), 'archive of a committed push, again');
    const dead = `pdeadupload0002.tar.zst.tmp-${deadPid()}`;
    put(dead);
    const dry = await store.gc({ dryRun: true });
    expect(dry.incoming).toEqual([dead, 'plandedcommit01.tar.zst']);
    expect(existsSync(store.pushArchivePath('plandedcommit01'))).toBe(true);
    const r = await store.gc();
    expect(r.incoming).toEqual([dead, 'plandedcommit01.tar.zst']);
    expect(existsSync(store.pushArchivePath('plandedcommit01'))).toBe(false);
    expect(readdirSync(incoming).some((f) => f.startsWith('pdeadupload0002'))).toBe(false);
    expect(readdirSync(incoming)).toContain(`pliveupload0001.tar.zst.tmp-${live.pid}`);
  }, 120_000);
});
