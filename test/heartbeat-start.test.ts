/**
 * How the initramfs starts the booted system's heartbeat
 * (initrd-hooks/lib/client-kit.sh), run by the shells it meets at boot: a
 * root whose init is systemd gets a runtime unit in /run/systemd/system
 * wanted by multi-user.target; any other root gets nothing there (a
 * /run/systemd/system of ours would make programs think systemd runs) and
 * the hook answers "start the loop" instead. The boots themselves are in
 * test/client-kit-boot.test.ts (busybox init: the loop) and
 * test/client-kit-debian.test.ts (systemd: the unit).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const KIT_SH = fileURLToPath(new URL('../initrd-hooks/lib/client-kit.sh', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'strata-hb-start-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const shells: [string, string[]][] = [
  ['busybox ash', ['/usr/bin/busybox', 'sh']],
  ['dash', ['/bin/sh']],
  ['bash', ['/bin/bash']],
].filter(([, cmd]) => spawnSync(cmd[0]!, [...cmd.slice(1), '-c', 'true']).status === 0) as [string, string[]][];

let n = 0;
/** A fresh /run with the kit's agent in it, and a root laid out by LAYOUT (path -> symlink target, or null for a file). */
function setup(layout: Record<string, string | null>): { run: string; root: string } {
  n += 1;
  const run = join(tmp, `run${n}`);
  const root = join(tmp, `root${n}`);
  mkdirSync(join(run, 'strata/bin'), { recursive: true });
  writeFileSync(join(run, 'strata/bin/strata-agent'), '#!/bin/sh\n', { mode: 0o755 });
  for (const [p, target] of Object.entries(layout)) {
    mkdirSync(join(root, p, '..'), { recursive: true });
    if (target === null) writeFileSync(join(root, p), '', { mode: 0o755 });
    else symlinkSync(target, join(root, p));
  }
  return { run, root };
}

function unit(shell: string[], run: string, root: string, init = '/sbin/init'): { status: number; out: string } {
  const script = `strata_log() { echo "strata: $*"; }\nSTRATA_RUN=${run}/strata\n. "${KIT_SH}"\nstrata_kit_unit "${root}" "${init}"`;
  const r = spawnSync(shell[0]!, [...shell.slice(1), '-c', script], { encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}`.trim() };
}

describe.each(shells)('the heartbeat at boot, decided under %s', (_name, shell) => {
  it("a merged-/usr Debian root (/sbin -> usr/sbin, init -> ../lib/systemd/systemd) gets a runtime unit that runs the kit's heartbeat every minute", () => {
    const { run, root } = setup({ sbin: 'usr/sbin', 'usr/sbin/init': '../lib/systemd/systemd', 'usr/lib/systemd/systemd': null });
    const r = unit(shell, run, root);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toBe('strata: heartbeat: systemd unit strata-heartbeat.service');
    const text = readFileSync(join(run, 'systemd/system/strata-heartbeat.service'), 'utf8');
    expect(text).toContain('ExecStart=/run/strata/bin/strata-agent heartbeat --every 60');
    expect(text).toContain('Restart=always');
    expect(text).toMatch(/^\[Unit\]$/m);
    expect(readlinkSync(join(run, 'systemd/system/multi-user.target.wants/strata-heartbeat.service'))).toBe('../strata-heartbeat.service');
  });

  it('an absolute /sbin/init -> /lib/systemd/systemd link, or init=/lib/systemd/systemd, is systemd too', () => {
    const a = setup({ 'sbin/init': '/lib/systemd/systemd' });
    expect(unit(shell, a.run, a.root).status).toBe(0);
    const b = setup({ 'sbin/init': 'busybox' });
    expect(unit(shell, b.run, b.root, '/lib/systemd/systemd').status).toBe(0);
    expect(existsSync(join(b.run, 'systemd/system/strata-heartbeat.service'))).toBe(true);
  });

  it('a busybox root (or init=/bin/sh) gets no /run/systemd at all and is told to start the loop', () => {
    const { run, root } = setup({ 'bin/busybox': null, 'sbin/init': 'init.strata', 'sbin/init.strata': null });
    const r = unit(shell, run, root);
    expect(r.status).toBe(1);
    expect(existsSync(join(run, 'systemd'))).toBe(false);
    const d = setup({ sbin: 'usr/sbin', 'usr/sbin/init': '../lib/systemd/systemd' });
    expect(unit(shell, d.run, d.root, '/bin/sh').status).toBe(1);
    expect(existsSync(join(d.run, 'systemd'))).toBe(false);
  });
});
