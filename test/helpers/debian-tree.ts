/**
 * Debian trees for boot tests, made with mmdebstrap and cached as tarballs so
 * one test run (and the next) builds each distinct tree once. The cache key
 * is the mmdebstrap arguments plus the apt sources they resolve against, so a
 * changed package list or mirror builds a new tree instead of reusing a
 * stale one. Other test files (a Debian tree for the agent, for backup-disk
 * boots) ask for the same arguments and get the same file.
 *
 * Kernel versions used by the kernel tests: the configured mirror (Debian
 * bookworm, see /etc/apt/sources.list.d/debian.sources) lists
 * linux-image-6.1.0-47 ... -57-cloud-amd64; the tests take -54 (older than
 * the host's -57) as the tree's kernel and -56 as the upgrade.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { skipDebianInitramfs } from '../../store/recipe.ts';

const run = promisify(execFile);

/** The older kernel a test tree is built with, and the newer one an upgrade layer brings. */
export const OLD_KERNEL = '6.1.0-54-cloud-amd64';
export const NEW_KERNEL = '6.1.0-56-cloud-amd64';

/** Stable across runs and worktrees; override with STRATA_TEST_CACHE. */
export const CACHE_DIR = process.env.STRATA_TEST_CACHE ?? '/var/cache/strata-test';

export interface DebianTreeOptions {
  suite?: string;
  variant?: string;
  include: string[];
}

function aptSources(): string {
  const parts: string[] = [];
  for (const f of ['/etc/apt/sources.list']) if (existsSync(f)) parts.push(readFileSync(f, 'utf8'));
  const d = '/etc/apt/sources.list.d';
  if (existsSync(d)) {
    for (const n of readdirSync(d).sort()) if (/\.(list|sources)$/.test(n)) parts.push(readFileSync(join(d, n), 'utf8'));
  }
  return parts.join('\n');
}

const building = new Map<string, Promise<string>>();

/**
 * A tarball of the tree (uncompressed tar, as mmdebstrap writes it). Built
 * into a temp name and renamed, so a killed run never leaves half a tarball
 * under the final name.
 */
export function debianTree(opts: DebianTreeOptions): Promise<string> {
  const suite = opts.suite ?? 'bookworm';
  const variant = opts.variant ?? 'minbase';
  const include = [...opts.include].sort();
  // As strata's own builds do: strata boots the tree with its own initramfs, so Debian's is not made (a minute saved).
  const args = [`--variant=${variant}`, `--include=${include.join(',')}`, ...skipDebianInitramfs(), suite];
  const key = createHash('sha256')
    .update(JSON.stringify({ args, sources: aptSources() }))
    .digest('hex')
    .slice(0, 16);
  const out = join(CACHE_DIR, `debian-${suite}-${key}.tar`);
  const cached = building.get(out);
  if (cached) return cached;
  const p = (async () => {
    if (existsSync(out)) return out;
    await mkdir(CACHE_DIR, { recursive: true });
    // Test files run in parallel workers (and other checkouts share the
    // cache): the first takes a lock file naming its pid and builds; the
    // others wait for the tarball instead of building the same tree again,
    // which doubled the ~12 min cold build on 2 cores.
    if (!(await takeBuildLock(`${out}.lock`, out))) return out;
    // mmdebstrap picks its output format from the name: keep the .tar suffix.
    const tmp = out.replace(/\.tar$/, `.tmp-${process.pid}.tar`);
    try {
      await run('mmdebstrap', ['--quiet', ...args, tmp], { maxBuffer: 64 << 20, timeout: 30 * 60_000 });
      await rename(tmp, out);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    } finally {
      await rm(`${out}.lock`, { force: true });
    }
    return out;
  })();
  building.set(out, p);
  p.catch(() => building.delete(out));
  return p;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * True when this process now holds LOCK and must build OUT; false when
 * another live process built OUT meanwhile. A lock left by a dead process
 * (a killed run) is taken over.
 */
async function takeBuildLock(lock: string, out: string): Promise<boolean> {
  for (;;) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx' });
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const holder = Number(await readFile(lock, 'utf8').catch(() => '0'));
    if (holder && !alive(holder)) {
      await rm(lock, { force: true });
      continue;
    }
    if (existsSync(out)) return false;
    await new Promise((r) => setTimeout(r, 2000));
    if (existsSync(out)) return false;
  }
}

/** The tree the kernel tests boot: systemd, udev, iproute2 and an older cloud kernel. */
export function debianKernelTree(kernel = OLD_KERNEL): Promise<string> {
  return debianTree({ include: ['systemd-sysv', 'udev', 'iproute2', `linux-image-${kernel}`] });
}

/**
 * The kernel package KERNEL unpacked (dpkg-deb -x) into DIR: what an upper
 * dir looks like after "apt install linux-image-..." minus the maintainer
 * scripts. The .deb is cached next to the trees.
 */
export async function unpackKernelPackage(kernel: string, dir: string): Promise<void> {
  const debDir = join(CACHE_DIR, 'debs');
  await mkdir(debDir, { recursive: true });
  const name = `linux-image-${kernel}`;
  let deb = readdirSync(debDir).find((n) => n.startsWith(`${name}_`) && n.endsWith('.deb'));
  if (!deb) {
    await run('apt-get', ['download', '-q', name], { cwd: debDir, maxBuffer: 16 << 20, timeout: 10 * 60_000 });
    deb = readdirSync(debDir).find((n) => n.startsWith(`${name}_`) && n.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${name} left no .deb in ${debDir}`);
  }
  await mkdir(dir, { recursive: true });
  await run('dpkg-deb', ['-x', join(debDir, deb), dir], { maxBuffer: 16 << 20 });
}
