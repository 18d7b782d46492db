/**
 * A push whose bake fails for the machine's reasons stays queued with its
 * archive and lands once the machine is fixed; a push whose archive is bad
 * is rejected. Real parts: the baker, tar2sqfs and zstd, with PATH made to
 * lack tar2sqfs for a while (what a server sees before squashfs-tools-ng is
 * installed, or while it is being upgraded).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Baker } from '../server/baker.ts';
import { Store } from '../store/store.ts';
import { importProfile, tempDir, waitForPushSettled } from './helpers/server-fixture.ts';
import { makeTar, type Spec } from './helpers/tars.ts';

let tmp: ReturnType<typeof tempDir>;
let store: Store;
let base: string;
const realPath = process.env.PATH;

beforeAll(async () => {
  tmp = tempDir('strata-push-retry-');
  store = await Store.open(join(tmp.dir, 'data'), { create: true });
  base = (await importProfile(store, tmp.dir, 'lab')).base;
}, 180_000);

afterAll(() => {
  process.env.PATH = realPath;
  store?.close();
  tmp?.cleanup();
});

/** A zstd-compressed upper tar in incoming/, recorded as a queued push (what the SSH endpoint leaves). */
async function queuePush(id: string, files: Record<string, Spec> | Buffer): Promise<string> {
  const archive = store.pushArchivePath(id);
  const tar = Buffer.isBuffer(files) ? files : await makeTar(files);
  writeFileSync(archive, execFileSync('zstd', ['-q', '-c'], { input: tar }));
  store.createPush({ id, profile: 'lab', parent: base, message: id, author: 'lab-client', bytes: tar.length });
  return archive;
}

/** A PATH with zstd (to read the archive) but no tar2sqfs. */
function pathWithoutTar2sqfs(): string {
  const bin = join(tmp.dir, 'bin-no-tar2sqfs');
  mkdirSync(bin, { recursive: true });
  const zstd = execFileSync('sh', ['-c', 'command -v zstd'], { encoding: 'utf8' }).trim();
  if (!existsSync(join(bin, 'zstd'))) symlinkSync(zstd, join(bin, 'zstd'));
  return bin;
}

describe('a bake that fails because tar2sqfs is missing', () => {
  it('leaves the push queued with its archive, and lands it once tar2sqfs is back', async () => {
    const archive = await queuePush('pretrytool00001', { 'etc/motd': 'pushed while tar2sqfs was gone\n' });
    const logs: string[] = [];
    const baker = new Baker({ store, watch: false, retryMs: 300, log: (m) => logs.push(m) });
    process.env.PATH = pathWithoutTar2sqfs();
    try {
      await expect(store.landPush('pretrytool00001')).rejects.toMatchObject({ code: 'E_BAKE_FAILED' });
      expect(store.getPush('pretrytool00001')).toMatchObject({ state: 'queued', reason: null, commit: null });
      expect(existsSync(archive)).toBe(true);

      // The baker keeps trying (every 300 ms here) while the tool is missing.
      baker.enqueue('pretrytool00001');
      const deadline = Date.now() + 60_000;
      while (logs.filter((l) => l.includes('will retry')).length < 2) {
        if (Date.now() > deadline) throw new Error(`the baker did not retry: ${logs.join('\n')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(logs.find((l) => l.includes('will retry'))).toMatch(/tar2sqfs/);
      expect(store.getPush('pretrytool00001').state).toMatch(/^(queued|baking)$/);
      expect(existsSync(archive)).toBe(true);
    } finally {
      process.env.PATH = realPath;
    }
    const p = await waitForPushSettled(store, 'pretrytool00001');
    await baker.stop();
    expect(p.state).toBe('committed');
    expect(store.getProfile('lab').head).toBe(p.commit);
    expect(store.diff(p.commit!).added).toContain('etc/motd');
    expect(existsSync(archive)).toBe(false);
  }, 180_000);

  it('a bad archive is still rejected and its archive removed (the pusher must fix it)', async () => {
    const archive = await queuePush('pretrybadtar001', Buffer.from('this is not a tar archive at all'.repeat(40)));
    const p = await store.landPush('pretrybadtar001');
    expect(p.state).toBe('rejected');
    expect(p.reason).toMatch(/not a tar archive/);
    expect(existsSync(archive)).toBe(false);
  }, 60_000);
});
