/**
 * `npm start` on a fresh checkout: `strata demo` creates the data directory
 * with a demo profile (busybox base, Debian kernel, strata initramfs),
 * assigns it as default and serves it; a client asking for its boot script
 * gets one that names the demo's kernel, initrd and pinned commit. Every
 * command line it prints works when pasted into a shell as printed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { STRATA, strataJson } from './helpers/cli.ts';
import type { Commit } from '../store/types.ts';

const work = mkdtempSync(join(tmpdir(), 'strata-demo-test-'));
const data = join(work, 'strata-data');
let child: ChildProcess | undefined;

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child!.on('close', r));
  }
  rmSync(work, { recursive: true, force: true });
});

function startDemo(): Promise<{ out: string; http: string }> {
  return new Promise((resolve, reject) => {
    child = spawn(STRATA, ['--data', data, 'demo', '--http', '127.0.0.1:0', '--ssh', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`demo did not start: ${out}\n${err}`)), 240_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /web UI and API\s+(http:\/\/[\d.]+:\d+)\//.exec(out);
      if (m && /Then:\n.* log demo\n/.test(out)) {
        clearTimeout(timer);
        resolve({ out, http: m[1]! });
      }
    });
    child.stderr!.on('data', (d) => {
      err += d;
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`demo exited ${code}: ${out}\n${err}`));
    });
  });
}

let started: Promise<{ out: string; http: string }> | undefined;
/** One demo server for the whole file. */
const demo = () => (started ??= startDemo());

describe('npm start (strata demo)', () => {
  it('creates ./strata-data with a bootable demo profile and serves it', async () => {
    const { out, http } = await demo();
    expect(existsSync(join(data, 'strata.db'))).toBe(true);
    expect(out).toMatch(/qemu-system-x86_64 -accel tcg/);
    expect(out).toMatch(/admin token: st_/);
    const log = await strataJson<Commit[]>(['log', 'demo'], { data });
    expect(log).toHaveLength(1);
    const head = log[0]!;
    expect(head.manifest.kernel).not.toBeNull();
    expect(head.manifest.initrd).not.toBeNull();
    const script = await (await fetch(`${http}/v1/boot/ipxe?mac=52:54:00:00:00:01`)).text();
    expect(script).toMatch(/^#!ipxe/);
    expect(script).toContain(`strata.commit=${head.id}`);
    expect(script).toContain('strata.profile=demo');
    expect(script).toContain(head.manifest.kernel!.digest);
    expect(script).toContain(head.manifest.initrd!.digest);
    expect(script).toContain('console=ttyS0');
  });

  it('prints command lines that work when pasted into a shell (placeholders filled in)', async () => {
    const { out } = await demo();
    const lines = out
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => /^(mkdir|qemu-system-x86_64|tar|\S*\/strata) /.test(l));
    expect(lines.map((l) => l.split(' ')[0]!.replace(/.*\//, ''))).toEqual(['mkdir', 'qemu-system-x86_64', 'strata', 'tar', 'strata']);
    // What a user has: an SSH key of their own (their ~/.ssh/config would pick it), an upper dir with a change.
    const key = join(work, 'user_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const bin = join(work, 'bin');
    mkdirSync(bin);
    const realSsh = execFileSync('sh', ['-c', 'command -v ssh']).toString().trim();
    writeFileSync(
      join(bin, 'ssh'),
      `#!/bin/sh\nexec ${realSsh} -i ${key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "$@"\n`,
    );
    chmodSync(join(bin, 'ssh'), 0o755);
    const upper = join(work, 'upper');
    mkdirSync(join(upper, 'etc'), { recursive: true });
    writeFileSync(join(upper, 'etc/motd'), 'pasted\n');
    const fill = (l: string) => l.replace('NAME', 'paster').replace('KEY.pub', `${key}.pub`).replace('-C UPPER', `-C ${upper}`);
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
    for (const line of lines.map(fill)) {
      // Booting QEMU is test/boot-e2e's job; here its line must at least be valid shell.
      const args = line.startsWith('qemu-system') ? ['-n', '-c', line] : ['-c', line];
      const r = spawnSync('sh', args, { env, encoding: 'utf8', timeout: 120_000 });
      expect(r.status, `${line}\n${r.stdout}\n${r.stderr}`).toBe(0);
    }
    expect(readFileSync('/tmp/strata-tftp/boot.ipxe', 'utf8')).toMatch(
      /^#!ipxe\ndhcp\nchain http:\/\/10\.0\.2\.2:\d+\/v1\/boot\/ipxe\?mac=\$\{net0\/mac\}\n$/,
    );
    // The pushed change lands with the message as typed.
    let log: Commit[] = [];
    for (let i = 0; i < 240 && log.length < 2; i++) {
      log = await strataJson<Commit[]>(['log', 'demo'], { data });
      if (log.length < 2) await new Promise((r) => setTimeout(r, 500));
    }
    expect(log[0]?.message).toBe('my change');
  });
});
