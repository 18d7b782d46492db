/**
 * The whole loop on a netbooted machine with nothing of strata in its
 * image (the busybox demo root): QEMU boots through `strata serve`; on the
 * client, init creates a file, removes a base file and runs
 * /run/strata/bin/strata-agent commit --wait (the client kit the initramfs
 * left there); the agent's own key is held as pending with the client's
 * MAC, the test approves it, the agent's retry lands, the client powers off. The next
 * boot runs the new head: the file is there, the removed one is gone,
 * /run/strata/commit is the new commit, and the heartbeat loop the
 * initramfs started (busybox init is not systemd) has reported it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeBusyboxRoot } from '../cli/demo-base.ts';
import { buildInitrd } from '../cli/initrd-build.ts';
import { Enrollment, type PendingKey } from '../store/enrollment.ts';
import { strataJson } from './helpers/cli.ts';
import { findKernel, proofs, runQemu, writeIpxeChain } from './helpers/qemu.ts';

type ServerModule = typeof import('../server/main.ts');
const serverMod: ServerModule = await import('../server/main.ts');

const kernel = findKernel();
let dir: string;
let srv: Awaited<ReturnType<ServerModule['startServer']>>;
let tftp: string;

/** The client's init: first boot changes and commits, a later boot reports. */
const CLIENT_INIT = `#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
if [ -f /etc/from-client ]; then
	echo "PROOF second-file=$(cat /etc/from-client)"
	[ -e /etc/motd ] && echo "PROOF second-motd=present" || echo "PROOF second-motd=gone"
	echo "PROOF second-commit=$(cat /run/strata/commit)"
	# The loop the initramfs started before switch_root sends one at boot.
	n=0
	until grep -q '^ok ' /run/strata/heartbeat 2>/dev/null || [ $n -ge 60 ]; do sleep 1; n=$((n + 1)); done
	echo "PROOF heartbeat=$(cut -d' ' -f1 /run/strata/heartbeat 2>/dev/null)"
	echo "PROOF status=$(/run/strata/bin/strata-agent status 2>&1 | grep '^last heartbeat: ' | cut -d' ' -f3)"
else
	echo "PROOF first-commit=$(cat /run/strata/commit)"
	echo "PROOF key=$(/run/strata/bin/strata-agent key)"
	echo hello-from-client > /etc/from-client
	rm /etc/motd
	out=$(/run/strata/bin/strata-agent commit -m from-client --wait 2>/tmp/agent.err)
	echo "PROOF commit-rc=$?"
	echo "PROOF committed=$out"
	sed 's/^/AGENT /' /tmp/agent.err
fi
poweroff -f
`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-kit-boot-'));
  const initrd = (await buildInitrd({ output: join(dir, 'initrd.img'), kernelVersion: kernel.version })).output;
  const root = join(dir, 'root');
  await makeBusyboxRoot(root, { init: CLIENT_INIT });
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
  tftp = join(dir, 'tftp');
  mkdirSync(tftp, { recursive: true });
  await writeIpxeChain(tftp, srv.httpPort);
}, 180_000);

afterAll(async () => {
  await srv?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('boot -> change -> commit from the client -> boot the new commit (busybox image)', () => {
  it('commits with the kit agent and the next boot has the change', async () => {
    const base = srv.store.getProfile('demo').head!;
    // The admin's side: the client's key shows up as pending with its held push; approve it.
    const enrollment = new Enrollment(srv.store);
    let approved: PendingKey | null = null;
    const admin = setInterval(() => {
      const k = enrollment.list().find((x) => x.heldPushes > 0);
      if (k && !approved) {
        approved = k;
        enrollment.approve(k.id, { admin: false, profiles: ['demo'] });
      }
    }, 500);
    const first = await runQemu({ tftpDir: tftp, memoryMb: 768, timeoutMs: 420_000 }).finally(() => clearInterval(admin));
    const p1 = proofs(first.output);
    const why = `console:\n${first.output.slice(-4000)}`;
    expect(first.timedOut, why).toBe(false);
    expect(p1['first-commit'], why).toBe(base);
    expect(approved, why).not.toBeNull();
    // QEMU's default NIC address, as the agent reported it.
    expect(approved!.mac).toBe('52:54:00:12:34:56');
    expect(p1.key).toContain(approved!.publicKey);
    expect(p1['commit-rc'], why).toBe('0');
    const head = srv.store.getProfile('demo').head!;
    expect(head).not.toBe(base);
    expect(p1.committed, why).toBe(head);
    expect(srv.store.getCommit(head).message).toBe('from-client');

    const secondBoot = Date.now();
    const second = await runQemu({ tftpDir: tftp, memoryMb: 768, timeoutMs: 300_000 });
    const p2 = proofs(second.output);
    const why2 = `console:\n${second.output.slice(-3000)}`;
    expect(second.timedOut, why2).toBe(false);
    expect(p2['second-file'], why2).toBe('hello-from-client');
    expect(p2['second-motd'], why2).toBe('gone');
    expect(p2['second-commit'], why2).toBe(head);
    expect(second.output, why2).toContain('strata: heartbeat: background loop');
    expect(p2.heartbeat, why2).toBe('ok');
    expect(p2.status, why2).toBe('ok');
    // `strata clients --json` shows the machine with its MAC, the new commit and its inventory.
    const clients = await strataJson<
      Array<{ mac: string; commit: string; heartbeat: { commit: string; at: number; inventory: { cpus: number; memoryKb: number } } }>
    >(['clients'], { data: srv.store.dataDir });
    const me = clients.find((c) => c.mac === '52:54:00:12:34:56');
    expect(me?.commit).toBe(head);
    expect(me?.heartbeat.commit).toBe(head);
    expect(me?.heartbeat.at).toBeGreaterThan(secondBoot);
    expect(me?.heartbeat.inventory.cpus).toBe(1);
    expect(me?.heartbeat.inventory.memoryKb).toBeGreaterThan(500_000);
  }, 800_000);
});
