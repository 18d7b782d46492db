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
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
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

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** An apt-cacher-ng of the bench's own (its cache and logs under DIR, loopback only), ready to answer. */
async function startAptCacherNg(dir: string): Promise<{ url: string; stop: () => void } | null> {
  if (!existsSync('/usr/sbin/apt-cacher-ng')) return null;
  const port = await freePort();
  for (const d of ['cache', 'log']) mkdirSync(join(dir, d), { recursive: true });
  const child: ChildProcess = spawn(
    '/usr/sbin/apt-cacher-ng',
    [
      '-c',
      '/etc/apt-cacher-ng',
      'ForeGround=1',
      `CacheDir=${join(dir, 'cache')}`,
      `LogDir=${join(dir, 'log')}`,
      `Port=${port}`,
      'BindAddress=127.0.0.1',
      `PidFile=${join(dir, 'pid')}`,
      `SocketPath=${join(dir, 'socket')}`,
    ],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 50; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/acng-report.html`).then(
      (r) => r.status < 500,
      () => false,
    );
    if (ok) return { url: `http://127.0.0.1:${port}/deb.debian.org/debian`, stop: () => child.kill() };
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill();
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
    if (!proxy) console.log('apt-cacher-ng: not installed (apt-get install apt-cacher-ng), skipped');
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
