/**
 * `npm start` on a fresh checkout: `strata demo` creates the data directory
 * with a demo profile (busybox base, Debian kernel, strata initramfs),
 * assigns it as default and serves it; a client asking for its boot script
 * gets one that names the demo's kernel, initrd and pinned commit.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
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
      if (m && /Push a change/.test(out)) {
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

describe('npm start (strata demo)', () => {
  it('creates ./strata-data with a bootable demo profile and serves it', async () => {
    const { out, http } = await startDemo();
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
});
