/**
 * A full disk does not stop boots (issue 11, item 3): the boot route records
 * the client's lease best-effort, so when that write fails (the data
 * directory's filesystem is full: a real small tmpfs, not a mock) the machine
 * still gets its real iPXE script, and the failure is logged. Once space is
 * back, the next boot records the lease.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../server/main.ts';
import { importProfile, tempDir } from './helpers/server-fixture.ts';

let tmp: ReturnType<typeof tempDir>;
let mnt: string;
let srv: RunningServer;
const logs: string[] = [];

beforeAll(async () => {
  tmp = tempDir('strata-boot-full-');
  mnt = join(tmp.dir, 'small');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'strata-test-boot-full', mnt]);
  srv = await startServer({
    dataDir: join(mnt, 'data'),
    http: '127.0.0.1:0',
    ssh: '127.0.0.1:0',
    handleSignals: false,
    log: (m) => logs.push(m),
  });
  await importProfile(srv.store, tmp.dir, 'lab');
  srv.store.assign('default', 'lab');
}, 120_000);

afterAll(async () => {
  await srv?.close();
  if (mnt) execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
  tmp?.cleanup();
});

/** Fills the filesystem to the last block, in files of 64 KiB then 512 bytes. */
function fill(dir: string): void {
  mkdirSync(dir, { recursive: true });
  let n = 0;
  for (const size of [1024 * 1024, 64 * 1024, 4096, 512, 1]) {
    for (;;) {
      try {
        writeFileSync(join(dir, `f${n++}`), Buffer.alloc(size, 1));
      } catch {
        break;
      }
    }
  }
}

const boot = (mac: string) => fetch(`${srv.httpUrl}/v1/boot/ipxe?mac=${mac}`, { signal: AbortSignal.timeout(10_000) });

describe('boot on a full disk', () => {
  it('serves the real iPXE script when the lease cannot be written, and records the lease once space is back', async () => {
    const filler = join(mnt, 'filler');
    fill(filler);
    // The disk really is full for the store: recording a lease fails.
    expect(() =>
      srv.store.recordClient({ mac: '52:54:00:cc:00:09', ip: '10.0.0.9', commit: null, profile: null, boot: true } as never),
    ).toThrow();

    const r = await boot('52:54:00:cc:00:01');
    expect(r.status).toBe(200);
    const text = await r.text();
    expect(text).toMatch(/^#!ipxe/);
    expect(text).toMatch(/\nkernel /);
    expect(text).toMatch(/\ninitrd /);
    expect(logs.some((l) => /served 52:54:00:cc:00:01 without recording its lease/.test(l))).toBe(true);

    rmSync(filler, { recursive: true, force: true });
    const again = await boot('52:54:00:cc:00:01');
    expect(again.status).toBe(200);
    expect(srv.store.listClients().some((c) => c.mac === '52:54:00:cc:00:01')).toBe(true);
  }, 60_000);
});
