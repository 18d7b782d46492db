/**
 * Build bench (issue 15): what the shared apt cache and delta updates buy,
 * with the tools doing the same work in the same run.
 *
 *   1. strata's cache (mmdebstrap's sync-in/sync-out hooks): the recipe
 *      (bookworm minbase + less + procps) built with an empty cache (cold),
 *      then again in the same data directory (warm; identical tree, no
 *      commit).
 *   2. The recipe plus one package on the same profile: the bytes a client
 *      that holds the old base fetches for the update, delta layer against
 *      the full image.
 *   3. apt-cacher-ng, when installed (`apt-get install apt-cacher-ng`): the
 *      same recipe cold and warm through an apt-cacher-ng of its own on
 *      loopback, each build in a fresh data directory so that strata's own
 *      cache is empty and only the proxy's counts.
 *
 *   node --import tsx bench/build.ts
 *
 * Prints the numbers; never fails on a slow machine. A build takes minutes
 * (dpkg in the chroot), so this bench takes 10-20 on 2 cores.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store } from '../store/store.ts';

const MIRROR = 'http://deb.debian.org/debian';
const recipe = (mirror: string, packages: string[]) => `suite = "bookworm"
mirror = "${mirror}"
variant = "minbase"
packages = ${JSON.stringify(packages)}
`;

export interface BuildRun {
  state: string;
  seconds: number;
  mmdebstrapSeconds: number;
  debsDownloaded: number;
  bytesToGet: number;
  deltaBytes: number | null;
  fullBytes: number | null;
}

async function once(store: Store, text: string): Promise<BuildRun> {
  const b = store.enqueueBuild('bench', text);
  await store.buildRunner().kick();
  const done = store.getBuild(b.id);
  if (done.state === 'failed') throw new Error(done.error ?? 'build failed');
  return {
    state: done.state,
    seconds: (done.stats.totalMs ?? 0) / 1000,
    mmdebstrapSeconds: (done.stats.mmdebstrapMs ?? 0) / 1000,
    debsDownloaded: done.stats.debsDownloaded ?? 0,
    bytesToGet: done.stats.bytesToGet ?? 0,
    deltaBytes: done.stats.deltaBytes ?? null,
    fullBytes: done.stats.fullBytes ?? null,
  };
}

const line = (name: string, r: BuildRun) =>
  `${name}: ${r.seconds.toFixed(1)} s (mmdebstrap ${r.mmdebstrapSeconds.toFixed(1)} s), ${r.debsDownloaded} .debs / ${(r.bytesToGet / 1e6).toFixed(1)} MB fetched by apt, ${r.state}`;

/**
 * A free loopback port below 32768: apt-cacher-ng (Debian 12's 3.7.4) fails
 * with "Error resolving address for binding" on any port above 32767, which
 * is where the kernel's ephemeral ports (port 0) come from.
 */
async function freeLowPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const s = createServer();
    const ok = await new Promise<boolean>((r) => {
      s.once('error', () => r(false));
      s.listen(port, '127.0.0.1', () => r(true));
    });
    if (!ok) continue;
    await new Promise((r) => s.close(r));
    return port;
  }
}

/** An apt-cacher-ng of the bench's own (its cache and logs under DIR, loopback only), ready to answer. */
async function startAptCacherNg(dir: string): Promise<{ url: string; stop: () => void } | null> {
  if (!existsSync('/usr/sbin/apt-cacher-ng')) return null;
  const port = await freeLowPort();
  for (const d of ['cache', 'log', 'conf']) mkdirSync(join(dir, d), { recursive: true });
  // Debian's configuration, except the backend: its default sends /debian to
  // ftp.debian.org whatever host the URL names; this one fetches from the
  // mirror strata's own cache used, so both read the same server.
  copyFileSync('/etc/apt-cacher-ng/acng.conf', join(dir, 'conf/acng.conf'));
  writeFileSync(join(dir, 'conf/backends_debian'), `${MIRROR}/\n`);
  const child: ChildProcess = spawn(
    '/usr/sbin/apt-cacher-ng',
    [
      '-c',
      join(dir, 'conf'),
      'ForeGround=1',
      `CacheDir=${join(dir, 'cache')}`,
      `LogDir=${join(dir, 'log')}`,
      `Port=${port}`,
      'BindAddress=127.0.0.1',
      `PidFile=${join(dir, 'pid')}`,
      `SocketPath=${join(dir, 'socket')}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let said = '';
  child.stderr?.on('data', (d) => (said += d));
  for (let i = 0; i < 50; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/acng-report.html`).then(
      (r) => r.status < 500,
      () => false,
    );
    if (ok) return { url: `http://127.0.0.1:${port}/deb.debian.org/debian`, stop: () => child.kill() };
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill();
  console.log(`apt-cacher-ng did not answer on 127.0.0.1:${port}: ${said.trim() || 'no message'}`);
  return null;
}

async function inFreshStore<T>(f: (s: Store) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'strata-bench-build-'));
  const store = await Store.open(join(dir, 'data'), { create: true });
  try {
    return await f(store);
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function main(): Promise<{
  cold: BuildRun;
  warm: BuildRun;
  update: BuildRun;
  acng: { cold: BuildRun; warm: BuildRun } | null;
}> {
  const { cold, warm, update } = await inFreshStore(async (store) => {
    const cold = await once(store, recipe(MIRROR, ['less', 'procps']));
    console.log(line("strata's cache, cold", cold));
    const warm = await once(store, recipe(MIRROR, ['less', 'procps']));
    console.log(line("strata's cache, warm", warm));
    console.log(`  warm / cold build time: ${(warm.seconds / cold.seconds).toFixed(2)}x`);
    const update = await once(store, recipe(MIRROR, ['less', 'procps', 'tree']));
    console.log(line('the recipe plus tree', update));
    if (update.deltaBytes != null && update.fullBytes)
      console.log(
        `  the update a client holding the old base fetches: ${update.deltaBytes} bytes (delta layer) against ${update.fullBytes} (full image), ${((100 * update.deltaBytes) / update.fullBytes).toFixed(2)}%`,
      );
    else console.log(`  stored as a full image of ${update.fullBytes} bytes (the delta was not smaller than the share)`);
    return { cold, warm, update };
  });

  const acngDir = mkdtempSync(join(tmpdir(), 'strata-bench-acng-'));
  let acng: { cold: BuildRun; warm: BuildRun } | null = null;
  try {
    const proxy = await startAptCacherNg(acngDir);
    if (!proxy) console.log('apt-cacher-ng: not installed (apt-get install apt-cacher-ng) or not started, skipped');
    else {
      try {
        const text = recipe(proxy.url, ['less', 'procps']);
        const c = await inFreshStore((s) => once(s, text));
        console.log(line('apt-cacher-ng, cold', c));
        const w = await inFreshStore((s) => once(s, text));
        console.log(line('apt-cacher-ng, warm', w));
        console.log(`  warm / cold build time: ${(w.seconds / c.seconds).toFixed(2)}x`);
        console.log(
          `  apt-cacher-ng warm / strata's cache warm: ${(w.seconds / warm.seconds).toFixed(2)}x (apt fetched ${(w.bytesToGet / 1e6).toFixed(1)} MB from the proxy, strata's cache ${(warm.bytesToGet / 1e6).toFixed(1)} MB)`,
        );
        acng = { cold: c, warm: w };
      } finally {
        proxy.stop();
      }
    }
  } finally {
    rmSync(acngDir, { recursive: true, force: true });
  }
  return { cold, warm, update, acng };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
