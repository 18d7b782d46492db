/**
 * Boot health and automatic fallback on a netbooted machine (QEMU, the
 * busybox demo root, a backup disk). The profile's health check is
 * `test ! -e /etc/broken`. The base boots healthy: the backup disk's last
 * good commit becomes it. A commit whose top layer adds /etc/broken is tried
 * 3 times: each boot reports itself unhealthy and the backup disk keeps the
 * base as last good. The 4th boot gets the base again (held back), which
 * `strata clients --json` shows with the reason; `strata clients clear`
 * makes the boot route serve the broken commit again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeBusyboxRoot } from '../cli/demo-base.ts';
import { buildInitrd } from '../cli/initrd-build.ts';
import { runStrata, strataJson } from './helpers/cli.ts';
import { findKernel, proofs, runQemu, writeIpxeChain } from './helpers/qemu.ts';
import { writeTar } from './helpers/server-fixture.ts';

type ServerModule = typeof import('../server/main.ts');
const serverMod: ServerModule = await import('../server/main.ts');

const MAC = '52:54:00:12:34:56';
const kernel = findKernel();
let dir: string;
let srv: Awaited<ReturnType<ServerModule['startServer']>>;
let tftp: string;
let disk: string;

/** Waits for the kit's verdict on this boot, then says what booted and what the backup disk holds. */
const HEALTH_INIT = `#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
i=0
while [ ! -f /run/strata/health/state ] && [ "$i" -lt 150 ]; do sleep 1; i=$((i + 1)); done
echo "PROOF commit=$(cat /run/strata/commit)"
echo "PROOF health=$(cat /run/strata/health/state 2>/dev/null || echo none)"
echo "PROOF last-good=$(cat /run/strata/backup/strata/last-good.id 2>/dev/null || echo none)"
sync
poweroff -f
`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-health-boot-'));
  const initrd = (await buildInitrd({ output: join(dir, 'initrd.img'), kernelVersion: kernel.version })).output;
  const root = join(dir, 'root');
  await makeBusyboxRoot(root, { init: HEALTH_INIT });
  srv = await serverMod.startServer({
    dataDir: join(dir, 'data'),
    http: '127.0.0.1:0',
    ssh: '127.0.0.1:0',
    handleSignals: false,
    log: () => {},
  });
  await srv.store.importBase('demo', root, { kernel: kernel.path, initrd, message: 'busybox demo' } as Parameters<
    typeof srv.store.importBase
  >[2]);
  srv.store.setCmdline('demo', 'console=ttyS0 panic=-1 quiet strata.reboot.delay=0 strata.backup=/dev/vda strata.backup.format=1');
  srv.store.assign('default', 'demo');
  tftp = join(dir, 'tftp');
  mkdirSync(tftp, { recursive: true });
  await writeIpxeChain(tftp, srv.httpPort);
  disk = join(dir, 'backup.img');
  execFileSync('truncate', ['-s', '64M', disk]);
}, 180_000);

afterAll(async () => {
  await srv?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const boot = async () => {
  const r = await runQemu({ tftpDir: tftp, disks: [disk], memoryMb: 512, timeoutMs: 300_000 });
  const why = `console:\n${r.output.slice(-3000)}`;
  expect(r.timedOut, why).toBe(false);
  return { p: proofs(r.output), why };
};

type Row = { mac: string; commit: string; heldBack: { commit: string; served: string; reason: string } | null };

describe('boot health: a commit that never comes up healthy is held back', () => {
  it('tries the broken commit 3 times, then boots the last good one until cleared', async () => {
    const set = await runStrata(['profile', 'demo', '--health-check', 'test ! -e /etc/broken'], { data: srv.store.dataDir });
    expect(set.code, set.stderr).toBe(0);
    const base = srv.store.getProfile('demo').head!;

    const good = await boot();
    expect(good.p.commit, good.why).toBe(base);
    expect(good.p.health, good.why).toBe('good');
    expect(good.p['last-good'], good.why).toBe(base);

    const tar = await writeTar(dir, 'broken.tar', { 'etc/broken': 'this layer breaks the health check\n' });
    const broken = (await srv.store.commitTar('demo', tar, { message: 'breaks boot' })).commit.id;
    for (let n = 1; n <= 3; n++) {
      const b = await boot();
      expect(b.p.commit, b.why).toBe(broken);
      expect(b.p.health, b.why).toMatch(/^bad: the profile's health check \(test ! -e \/etc\/broken\) exited 1/);
      // The last good commit moves only on a good boot.
      expect(b.p['last-good'], b.why).toBe(base);
    }
    expect(srv.store.clientHealth(MAC).failures).toEqual([expect.objectContaining({ commit: broken, count: 3 })]);

    const held = await boot();
    expect(held.p.commit, held.why).toBe(base);
    expect(held.p.health, held.why).toBe('good');
    const me = (await strataJson<Row[]>(['clients'], { data: srv.store.dataDir })).find((c) => c.mac === MAC);
    expect(me?.commit).toBe(base);
    expect(me?.heldBack).toMatchObject({ commit: broken, served: base });
    expect(me?.heldBack?.reason).toContain('3 times in a row');

    const cleared = await runStrata(['clients', 'clear', MAC], { data: srv.store.dataDir });
    expect(cleared.code, cleared.stderr).toBe(0);
    const script = await fetch(`http://127.0.0.1:${srv.httpPort}/v1/boot/ipxe?mac=${MAC}`).then((r) => r.text());
    expect(script).toContain(`strata.commit=${broken}`);
  }, 1_800_000);
});
