/**
 * Fixtures for the agent tests: a real overlay (squashfs base + upper/work in
 * a temp dir), a change set that exercises every overlay feature, baking a
 * received archive with tar2sqfs, and running bin/strata-agent as a process.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, linkSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Mounts } from './mounts.ts';

export const AGENT_BIN = join(import.meta.dirname, '..', '..', 'bin', 'strata-agent');

/** A small root-like tree for the base layer. */
export function writeBaseTree(dir: string): void {
  const f = (rel: string, content: string | Buffer, mode = 0o644) => {
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    writeFileSync(join(dir, rel), content);
    chmodSync(join(dir, rel), mode);
  };
  f('etc/hostname', 'base\n');
  f('etc/remove-me', 'bye\n');
  f('etc/conf.d/a', 'a\n');
  f('etc/conf.d/b', 'b\n');
  f('usr/bin/tool', '#!/bin/sh\necho tool\n', 0o755);
  f('usr/share/doc/x', 'doc\n');
  f('var/lib/data/f', 'data\n');
  f('opt/old/1', 'one\n');
  f('opt/old/sub/2', 'two\n');
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777);
  linkSync(join(dir, 'usr/share/doc/x'), join(dir, 'usr/share/doc/x-hard'));
  symlinkSync('../usr/bin/tool', join(dir, 'etc/tool-link'));
}

export function makeSquashfs(tree: string, out: string): void {
  execFileSync('sh', ['-c', `tar --xattrs --xattrs-include='*' -C '${tree}' -cf - . | tar2sqfs -q -f -c zstd -X level=3 '${out}'`]);
}

/** Bakes a received zstd tar into a squashfs layer, strictly (-s: refuse rather than skip entries). */
export function bakeArchive(archive: string, out: string): void {
  execFileSync('sh', ['-c', `zstd -dc '${archive}' | tar2sqfs -q -f -s -c zstd -X level=3 '${out}'`]);
}

export interface TestOverlay {
  upper: string;
  work: string;
  merged: string;
  lowerMount: string;
}

export function mountOverlay(m: Mounts, baseSqfs: string): TestOverlay {
  const lowerMount = m.squashfs(baseSqfs);
  const upper = m.dir('upper');
  const work = m.dir('work');
  chmodSync(upper, 0o755);
  const merged = m.overlay([lowerMount], { upper, work });
  return { upper, work, merged, lowerMount };
}

/** A read-only view of squashfs layers (top first), as a client booting that chain would see it. */
export function viewOf(m: Mounts, layersTopFirst: string[]): string {
  return m.overlay(layersTopFirst.map((l) => m.squashfs(l)));
}

const sh = (cmd: string, cwd: string) => execFileSync('sh', ['-c', cmd], { cwd, stdio: 'pipe' });

/** First change set, made through the merged mount like a user on the client would. */
/** `devices`: also a device node (the real server refuses those from client keys). */
export function makeChanges1(merged: string, opts: { devices?: boolean } = {}): void {
  const p = (rel: string) => join(merged, rel);
  writeFileSync(p('etc/new.conf'), 'new\n');
  chmodSync(p('etc/new.conf'), 0o640);
  chownSync(p('etc/new.conf'), 1234, 5678);
  writeFileSync(p('etc/hostname'), 'client-1\n');
  rmSync(p('etc/remove-me'));
  rmSync(p('opt/old'), { recursive: true });
  rmSync(p('etc/conf.d'), { recursive: true });
  mkdirSync(p('etc/conf.d'));
  writeFileSync(p('etc/conf.d/c'), 'c\n');
  chmodSync(p('usr/share/doc/x'), 0o600);
  symlinkSync('/etc/hostname', p('etc/link-new'));
  rmSync(p('usr/bin/tool'));
  symlinkSync('/bin/busybox', p('usr/bin/tool'));
  mkdirSync(p('data'));
  writeFileSync(p('data/h1'), 'hard\n');
  linkSync(p('data/h1'), p('data/h2'));
  linkSync(p('var/lib/data/f'), p('var/lib/data/f-link'));
  sh(
    `setfattr -n user.color -v blue etc/hostname && setfattr -n user.bin -v 0x00ff7f80 etc/new.conf && setfattr -n user.dir -v yes data`,
    merged,
  );
  mkdirSync(p('dev2'));
  if (opts.devices) sh('mknod dev2/null c 1 3', merged);
  sh('mkfifo var/fifo', merged);
  writeFileSync(p(`etc/${'long-name-'.repeat(14)}end`), 'long\n');
  writeFileSync(p('etc/ünïcødé file'), 'unicode\n');
  mkdirSync(p('srv/empty'), { recursive: true });
  writeFileSync(p('var/big.bin'), randomBytes(20 * 1024 * 1024));
  // Never committed:
  writeFileSync(p('tmp/junk'), 'junk\n');
  writeFileSync(p('etc/machine-id'), '0123456789abcdef0123456789abcdef\n');
  mkdirSync(p('etc/ssh'), { recursive: true });
  writeFileSync(p('etc/ssh/ssh_host_ed25519_key'), 'secret\n');
}

/** Second change set: deletes files the first commit added (no whiteout in the upper dir for those). */
export function makeChanges2(merged: string): void {
  const p = (rel: string) => join(merged, rel);
  rmSync(p('etc/new.conf'));
  rmSync(p('data/h2'));
  rmSync(p('srv/empty'), { recursive: true });
  writeFileSync(p('etc/conf.d/c'), 'c2\n');
  writeFileSync(p('etc/second'), 'second\n');
  rmSync(p('var/big.bin'));
}

export const NEVER_COMMITTED = ['tmp/junk', 'etc/machine-id', 'etc/ssh/ssh_host_ed25519_key'];
export const skipNeverCommitted = (rel: string) => NEVER_COMMITTED.includes(rel);

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs bin/strata-agent with args; resolves when it exits. */
export function runAgent(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(AGENT_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => (stdout += b));
    child.stderr.on('data', (b) => (stderr += b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}
