/**
 * Build bench: the same recipe (bookworm minbase + less + procps) built
 * twice in a fresh data directory, first with an empty apt cache (cold),
 * then with the cache the first build filled (warm). Prints each build's
 * time, mmdebstrap's share, and what apt fetched (its own counters). The
 * second build's tree is identical, so it also shows the cost of finding
 * that out (bake + compare, no commit).
 *
 * The delta-vs-full bytes of an update are printed by the rebase/delta
 * work once a rebuilt base is stored as a delta.
 *
 *   node --import tsx bench/build.ts
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store } from '../store/store.ts';

const RECIPE = `suite = "bookworm"
variant = "minbase"
packages = ["less", "procps"]
`;

export interface BuildRun {
  state: string;
  seconds: number;
  mmdebstrapSeconds: number;
  debsDownloaded: number;
  bytesToGet: number;
}

async function once(store: Store): Promise<BuildRun> {
  const b = store.enqueueBuild('bench', RECIPE);
  await store.buildRunner().kick();
  const done = store.getBuild(b.id);
  if (done.state === 'failed') throw new Error(done.error ?? 'build failed');
  return {
    state: done.state,
    seconds: (done.stats.totalMs ?? 0) / 1000,
    mmdebstrapSeconds: (done.stats.mmdebstrapMs ?? 0) / 1000,
    debsDownloaded: done.stats.debsDownloaded ?? 0,
    bytesToGet: done.stats.bytesToGet ?? 0,
  };
}

export async function main(): Promise<{ cold: BuildRun; warm: BuildRun }> {
  const dir = mkdtempSync(join(tmpdir(), 'strata-bench-build-'));
  const store = await Store.open(join(dir, 'data'), { create: true });
  try {
    const cold = await once(store);
    const warm = await once(store);
    const line = (name: string, r: BuildRun) =>
      `${name}: ${r.seconds.toFixed(1)} s (mmdebstrap ${r.mmdebstrapSeconds.toFixed(1)} s), ${r.debsDownloaded} .debs / ${(r.bytesToGet / 1e6).toFixed(1)} MB fetched, ${r.state}`;
    console.log(line('cold cache', cold));
    console.log(line('warm cache', warm));
    console.log(`warm / cold time: ${(warm.seconds / cold.seconds).toFixed(2)}x`);
    return { cold, warm };
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
