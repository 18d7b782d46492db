/**
 * The whole loop on a Debian bookworm systemd machine with nothing of
 * strata in its image (mmdebstrap minbase + systemd-sysv, udev, iproute2
 * and its kernel; the tree test/helpers/debian-tree.ts caches for the
 * kernel tests): QEMU PXE-boots it through `strata serve`; a unit of the
 * image creates a file, removes a base file and runs
 * /run/strata/bin/strata-agent commit -m from-client --wait. The agent's
 * key is pending; the test approves it with `strata keys approve`, the
 * agent's retry lands, the client powers off. The next boot has the file,
 * not the removed one, and runs the new head; the heartbeat the initramfs
 * started as a systemd unit reports it, and `strata clients --json` shows
 * the machine with its MAC, the new commit, that heartbeat and its CPUs
 * and memory.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Heartbeat } from '../store/types.ts';
import { runStrata, strataJson } from './helpers/cli.ts';
import { debianKernelTree, OLD_KERNEL } from './helpers/debian-tree.ts';
import { proofs, runQemu, strataLines, writeIpxeChain } from './helpers/qemu.ts';

type ServerModule = typeof import('../server/main.ts');
const serverMod: ServerModule = await import('../server/main.ts');

/** The developer on the client, as a unit of the image: commit on the first boot, report on the next. */
const LOOP_SCRIPT = `#!/bin/sh
# A newline first: systemd's and the kernel's console output may leave a line unfinished.
say() { printf '\\nPROOF %s\\n' "$1" > /dev/console; }
agent=/run/strata/bin/strata-agent
if [ -f /etc/from-client ]; then
	say "second-file=$(cat /etc/from-client)"
	[ -e /etc/motd ] && say second-motd=present || say second-motd=gone
	say "second-commit=$(cat /run/strata/commit)"
	# The heartbeat unit the initramfs left in /run/systemd/system sends one at start.
	n=0
	until grep -q '^ok ' /run/strata/heartbeat 2>/dev/null || [ $n -ge 90 ]; do sleep 1; n=$((n + 1)); done
	say "heartbeat=$(cut -d' ' -f1 /run/strata/heartbeat 2>/dev/null)"
	say "heartbeat-unit=$(systemctl is-active strata-heartbeat.service)"
else
	say "first-commit=$(cat /run/strata/commit)"
	echo hello-from-client > /etc/from-client
	rm /etc/motd
	out=$($agent commit -m from-client --wait 2>/run/agent.err)
	say "commit-rc=$?"
	say "committed=$out"
	sed 's/^/AGENT /' /run/agent.err > /dev/console
fi
sync
systemctl --force poweroff
`;

const LOOP_UNIT = `[Unit]
Description=strata loop test: commit from the client, or report what the last commit did

[Service]
Type=oneshot
TimeoutStartSec=infinity
ExecStart=/usr/local/sbin/strata-loop

[Install]
WantedBy=multi-user.target
`;

const MAC = '52:54:00:12:34:56';
let dir: string;
let srv: Awaited<ReturnType<ServerModule['startServer']>>;
let tftp: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-kit-debian-'));
  const tarball = await debianKernelTree(OLD_KERNEL);
  srv = await serverMod.startServer({
    dataDir: join(dir, 'data'),
    http: '127.0.0.1:0',
    ssh: '127.0.0.1:0',
    handleSignals: false,
    log: () => {},
  });
  await srv.store.importBase('deb', tarball, { level: 3, message: 'bookworm minbase + systemd' });
  const unit = join(dir, 'unit');
  mkdirSync(join(unit, 'usr/local/sbin'), { recursive: true });
  mkdirSync(join(unit, 'etc/systemd/system/multi-user.target.wants'), { recursive: true });
  writeFileSync(join(unit, 'usr/local/sbin/strata-loop'), LOOP_SCRIPT);
  chmodSync(join(unit, 'usr/local/sbin/strata-loop'), 0o755);
  writeFileSync(join(unit, 'etc/systemd/system/strata-loop.service'), LOOP_UNIT);
  symlinkSync('../strata-loop.service', join(unit, 'etc/systemd/system/multi-user.target.wants/strata-loop.service'));
  const tar = join(dir, 'unit.tar');
  execFileSync('tar', ['-C', unit, '--numeric-owner', '--owner=0', '--group=0', '--sort=name', '-cf', tar, '.']);
  await srv.store.commitTar('deb', tar, { message: 'the loop unit' });
  srv.store.setCmdline(
    'deb',
    `console=ttyS0 panic=-1 no_timer_check quiet systemd.show_status=0 strata.reboot.delay=0 strata.retries=3 strata.ssh=${srv.sshPort}`,
  );
  srv.store.assign('default', 'deb');
  tftp = join(dir, 'tftp');
  mkdirSync(tftp, { recursive: true });
  await writeIpxeChain(tftp, srv.httpPort);
}, 45 * 60_000);

afterAll(async () => {
  await srv?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Pending {
  id: string;
  mac: string | null;
  heldPushes: number;
}

describe('boot -> change -> commit from the client -> boot the new commit (Debian systemd image)', () => {
  it(
    'a unit commits with the kit agent once `strata keys approve` admits its key; the next boot runs the change and heartbeats',
    async () => {
      const data = srv.store.dataDir;
      const base = srv.store.getProfile('deb').head!;
      // The admin: waits for the client's key to show up pending with a held push, then approves it with the CLI.
      let approved: Pending | null = null;
      let approving = false;
      let approveOut = '';
      const admin = setInterval(async () => {
        if (approving) return;
        approving = true;
        try {
          const k = (await strataJson<Pending[]>(['keys', 'pending'], { data })).find((x) => x.heldPushes > 0);
          if (k) {
            const r = await runStrata(['keys', 'approve', k.id, '--profile', 'deb'], { data });
            approveOut = `${r.code} ${r.stdout} ${r.stderr}`;
            if (r.code === 0) {
              approved = k;
              clearInterval(admin);
            }
          }
        } finally {
          approving = false;
        }
      }, 4000);
      const first = await runQemu({ tftpDir: tftp, memoryMb: 1024, timeoutMs: 900_000 }).finally(() => clearInterval(admin));
      const p1 = proofs(first.output);
      const why = `console:\n${first.output.slice(-5000)}\nstrata lines:\n${strataLines(first.output).join('\n')}\napprove: ${approveOut}`;
      expect(first.timedOut, why).toBe(false);
      expect(p1['first-commit'], why).toBe(base);
      expect(approved, why).not.toBeNull();
      expect(approved!.mac, why).toBe(MAC);
      expect(p1['commit-rc'], why).toBe('0');
      const head = srv.store.getProfile('deb').head!;
      expect(head).not.toBe(base);
      expect(p1.committed, why).toBe(head);
      expect(srv.store.getCommit(head).message).toBe('from-client');
      // The systemd unit started by the initramfs reported the first boot too.
      expect(first.output, why).toContain('strata: heartbeat: systemd unit strata-heartbeat.service');

      const secondBoot = Date.now();
      const second = await runQemu({ tftpDir: tftp, memoryMb: 1024, timeoutMs: 900_000 });
      const p2 = proofs(second.output);
      const why2 = `console:\n${second.output.slice(-5000)}`;
      expect(second.timedOut, why2).toBe(false);
      expect(p2['second-file'], why2).toBe('hello-from-client');
      expect(p2['second-motd'], why2).toBe('gone');
      expect(p2['second-commit'], why2).toBe(head);
      expect(p2.heartbeat, why2).toBe('ok');
      expect(p2['heartbeat-unit'], why2).toBe('active');

      const clients = await strataJson<Array<{ mac: string; commit: string; heartbeat: Heartbeat | null }>>(['clients'], { data });
      const me = clients.find((c) => c.mac === MAC);
      expect(me, JSON.stringify(clients)).toBeDefined();
      expect(me!.commit).toBe(head);
      expect(me!.heartbeat?.commit).toBe(head);
      expect(me!.heartbeat!.at).toBeGreaterThan(secondBoot);
      expect(me!.heartbeat!.inventory.cpus).toBe(1);
      expect(me!.heartbeat!.inventory.memoryKb).toBeGreaterThan(800_000);
      expect(me!.heartbeat!.inventory.nics?.map((n) => n.mac)).toContain(MAC);
      // The human view says the same.
      const text = await runStrata(['clients'], { data });
      expect(text.stdout).toMatch(new RegExp(`^${MAC}\\t.*\\t${head.slice(0, 12)}\\t`, 'm'));
      expect(text.stdout).toMatch(/^ {2}hardware: 1 CPU .*, \d+ MiB; /m);
    },
    40 * 60_000,
  );
});
