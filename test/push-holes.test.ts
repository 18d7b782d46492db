/**
 * Pushes a real server refuses at push time, before anything is stored:
 * names the kernel could not read, overlayfs xattrs that would make the
 * profile unflattenable, and a --parent outside the pushed profile.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../server/main.ts';
import { importProfile, tempDir, waitForPushSettled } from './helpers/server-fixture.ts';
import { lastLine, makeKey, opensshExec, type KeyPair } from './helpers/server-ssh.ts';
import { makeTar, type Spec } from './helpers/tars.ts';

let tmp: ReturnType<typeof tempDir>;
let srv: RunningServer;
let key: KeyPair;
let otherBase: string;

beforeAll(async () => {
  tmp = tempDir('strata-push-holes-');
  srv = await startServer({
    dataDir: join(tmp.dir, 'data'),
    http: '127.0.0.1:0',
    ssh: '127.0.0.1:0',
    handleSignals: false,
    log: () => {},
  });
  await importProfile(srv.store, tmp.dir, 'lab');
  otherBase = (await importProfile(srv.store, tmp.dir, 'secret')).base;
  key = makeKey(tmp.dir, 'lab');
  srv.store.addKey('lab-client', key.publicLine, { admin: false, profiles: ['lab'] });
}, 180_000);

afterAll(async () => {
  await srv?.close();
  tmp?.cleanup();
});

const head = (p = 'lab') => srv.store.getProfile(p).head!;
const zst = async (files: Record<string, Spec>) => execFileSync('zstd', ['-q', '-c'], { input: await makeTar(files) });

/** Pushes FILES on the head of lab; resolves to the settled push. */
async function pushSettled(files: Record<string, Spec>) {
  const r = await opensshExec(srv.sshPort, key.privateFile, `push lab --parent ${head()} -m holes`, await zst(files));
  expect(r.code).toBe(0);
  return waitForPushSettled(srv.store, lastLine(r.stdout));
}

describe('names longer than NAME_MAX', () => {
  it('a path component of 256 bytes is refused with the reason; 255 bytes is committed', async () => {
    const before = head();
    const bad = await pushSettled({ [`etc/${'a'.repeat(256)}`]: 'x\n' });
    expect(bad.state).toBe('rejected');
    expect(bad.reason).toMatch(/is 256 bytes; Linux allows at most 255 bytes per name/);
    expect(head()).toBe(before);
    const ok = await pushSettled({ [`etc/${'b'.repeat(255)}`]: 'x\n' });
    expect(ok.state).toBe('committed');
    expect(head()).toBe(ok.commit);
  });
});

describe('overlayfs xattrs', () => {
  for (const x of ['redirect', 'metacopy'] as const) {
    it(`a directory carrying trusted.overlay.${x} is refused at push time, naming the xattr`, async () => {
      const before = head();
      const p = await pushSettled({ moved: { dir: true, xattrs: { [`trusted.overlay.${x}`]: '/old' } }, 'moved/f': 'f\n' });
      expect(p.state).toBe('rejected');
      expect(p.reason).toContain(`'moved' carries the overlayfs xattr trusted.overlay.${x}`);
      expect(head()).toBe(before);
    });
  }

  it('origin and impure, which GNU tar of a real overlay upper carries, are accepted and the profile still flattens', async () => {
    const p = await pushSettled({
      copied: { dir: true, xattrs: { 'trusted.overlay.impure': 'y' } },
      'copied/f': { file: 'f\n', xattrs: { 'trusted.overlay.origin': 'x' } },
    });
    expect(p.state).toBe('committed');
    await expect(srv.store.flatten('lab')).resolves.toBeTruthy();
  });

  it('an opaque directory (trusted.overlay.opaque=y) and a whiteout are still accepted', async () => {
    const p = await pushSettled({ opt: { dir: true, opaque: true }, 'opt/new': 'n\n', 'etc/shared': { whiteout: true } });
    expect(p.state).toBe('committed');
    // The profile stays flattenable.
    await expect(srv.store.flatten('lab')).resolves.toBeTruthy();
  });
});

describe('push --parent', () => {
  it("another profile's commit is refused before the upload, like a commit that does not exist", async () => {
    const archive = await zst({ 'etc/x': 'x\n' });
    const before = srv.store.listPushes().length;
    for (const parent of [otherBase, 'secret', 'f'.repeat(64)]) {
      const r = await opensshExec(srv.sshPort, key.privateFile, `push lab --parent ${parent}`, archive);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('no such commit in the history of profile lab');
    }
    expect(srv.store.listPushes().length).toBe(before);
  });

  it('an older commit of the profile (the client booted it before a rollback) is still a parent', async () => {
    const old = head();
    const p = await pushSettled({ 'etc/y': 'y\n' });
    expect(p.state).toBe('committed');
    srv.store.rollback('lab', old);
    const newer = p.commit!;
    expect(head()).toBe(old);
    const r = await opensshExec(srv.sshPort, key.privateFile, `push lab --parent ${newer}`, await zst({ 'etc/z': 'z\n' }));
    expect(r.code).toBe(0);
    expect((await waitForPushSettled(srv.store, lastLine(r.stdout))).state).toBe('committed');
  });

  it('--parent given twice is an error, not "last wins"', async () => {
    const r = await opensshExec(
      srv.sshPort,
      key.privateFile,
      `push lab --parent ${head()} --parent ${head()}`,
      await zst({ 'etc/w': 'w\n' }),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('--parent given twice');
  });
});
