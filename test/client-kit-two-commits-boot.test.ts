/**
 * Two commits from one boot of a real netbooted machine (busybox image,
 * QEMU through `strata serve`): the second layer holds only the second
 * change; reverting the first commit on the server leaves the second
 * change in the next boot, and takes the first one out. The profile
 * approves keys from QEMU's user network (--enroll-cidr), so no admin step.
 * no_timer_check: a loaded host makes TCG miss the kernel's IO-APIC timer
 * check, which then panics ("IO-APIC + timer doesn't work").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeBusyboxRoot } from '../cli/demo-base.ts';
import { buildInitrd } from '../cli/initrd-build.ts';
import { Enrollment } from '../store/enrollment.ts';
import { findKernel, proofs, runQemu, writeIpxeChain } from './helpers/qemu.ts';

type ServerModule = typeof import('../server/main.ts');
const serverMod: ServerModule = await import('../server/main.ts');

const kernel = findKernel();
let dir: string;
let srv: Awaited<ReturnType<ServerModule['startServer']>>;
let tftp: string;

const CLIENT_INIT = `#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
agent=/run/strata/bin/strata-agent
if [ -f /etc/second ]; then
	echo "PROOF next-commit=$(cat /run/strata/commit)"
	echo "PROOF next-second=$(cat /etc/second)"
	[ -e /etc/first ] && echo "PROOF next-first=present" || echo "PROOF next-first=gone"
	echo "PROOF next-motd=$(cat /etc/motd)"
else
	echo first > /etc/first
	echo "PROOF first=$($agent commit -m first --wait 2>/run/agent.err)"
	echo second > /etc/second
	echo changed > /etc/motd
	echo "PROOF second=$($agent commit -m second --wait 2>>/run/agent.err)"
	sed 's/^/AGENT /' /run/agent.err
fi
poweroff -f
`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-kit-two-'));
  const initrd = (await buildInitrd({ output: join(dir, 'initrd.img'), kernelVersion: kernel.version })).output;
  const root = join(dir, 'root');
  await makeBusyboxRoot(root, { init: CLIENT_INIT, motd: 'base motd\n' });
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
  srv.store.setCmdline('demo', `console=ttyS0 panic=-1 quiet no_timer_check strata.reboot.delay=0 strata.ssh=${srv.sshPort}`);
  srv.store.assign('default', 'demo');
  // QEMU's user network reaches the server from 127.0.0.1.
  new Enrollment(srv.store).setEnrollCidr('demo', '127.0.0.0/8');
  tftp = join(dir, 'tftp');
  mkdirSync(tftp, { recursive: true });
  await writeIpxeChain(tftp, srv.httpPort);
}, 180_000);

afterAll(async () => {
  await srv?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Paths of the layer a commit added, directories left out (a change brings its parents' metadata along). */
function topLayerPaths(commit: string): string[] {
  const layers = srv.store.getCommit(commit).manifest.layers;
  return srv.store
    .layerEntries(layers.at(-1)!.digest)
    .filter((e) => e.type !== 'dir')
    .map((e) => e.path)
    .sort();
}

describe('two commits from one boot of a netbooted machine', () => {
  it('the second layer holds only the second change; reverting the first keeps the second in the next boot', async () => {
    const base = srv.store.getProfile('demo').head!;
    const one = await runQemu({ tftpDir: tftp, memoryMb: 768, timeoutMs: 600_000 });
    const p1 = proofs(one.output);
    const why = `console:\n${one.output.slice(-4000)}`;
    expect(one.timedOut, why).toBe(false);
    expect(p1.first, why).toMatch(/^[0-9a-f]{64}$/);
    expect(p1.second, why).toMatch(/^[0-9a-f]{64}$/);
    const first = p1.first!;
    const second = p1.second!;
    expect(srv.store.getCommit(first).parent).toBe(base);
    expect(srv.store.getCommit(second).parent).toBe(first);
    expect(topLayerPaths(first)).toEqual(['etc/first']);
    expect(topLayerPaths(second)).toEqual(['etc/motd', 'etc/second']);

    const reverted = (await srv.store.revert('demo', first)).commit.id;
    expect(srv.store.getProfile('demo').head).toBe(reverted);
    const next = await runQemu({ tftpDir: tftp, memoryMb: 768, timeoutMs: 600_000 });
    const p2 = proofs(next.output);
    const why2 = `console:\n${next.output.slice(-4000)}`;
    expect(next.timedOut, why2).toBe(false);
    expect(p2['next-commit'], why2).toBe(reverted);
    expect(p2['next-second'], why2).toBe('second');
    expect(p2['next-motd'], why2).toBe('changed');
    expect(p2['next-first'], why2).toBe('gone');
  }, 1_300_000);
});
