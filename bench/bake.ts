/**
 * Bake benchmark: bakeTar against tar2sqfs alone on the same ~80 MB tar of
 * real system files, same compressor settings, same run.
 *
 *   node --import tsx bench/bake.ts
 *
 * Goals (issue 2): time ratio <= 1.3, size ratio <= 1.05, peak RSS of a bake
 * < 200 MB. Prints the numbers; never fails on a slow machine.
 */
import { execa } from 'execa';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bakeTar } from '../store/bake.ts';

const TARGET_BYTES = 80 * 1024 * 1024;
const SOURCES = ['usr/lib/x86_64-linux-gnu', 'usr/share', 'usr/lib', 'usr/bin'];
const LEVEL = 3;

export interface BakeBenchResult {
  tarBytes: number;
  tar2sqfsSeconds: number;
  bakeSeconds: number;
  timeRatio: number;
  tar2sqfsBytes: number;
  bakeBytes: number;
  sizeRatio: number;
  peakRssBytes: number;
}

/** Picks real files under / up to ~80 MB and tars them (GNU tar, xattrs). */
async function makeTar(dir: string): Promise<string> {
  const list: string[] = [];
  let total = 0;
  for (const src of SOURCES) {
    if (total >= TARGET_BYTES) break;
    const r = await execa('find', [src, '-xdev', '(', '-type', 'f', '-o', '-type', 'l', ')', '-printf', '%s %p\\n'], {
      cwd: '/',
      reject: false,
      maxBuffer: 256 * 1024 * 1024,
    });
    for (const line of r.stdout.split('\n')) {
      const sp = line.indexOf(' ');
      if (sp < 0) continue;
      const size = Number(line.slice(0, sp));
      const path = line.slice(sp + 1);
      if (total + size > TARGET_BYTES) continue;
      list.push(path);
      total += size;
      if (total >= TARGET_BYTES * 0.99) break;
    }
  }
  const listFile = join(dir, 'files');
  await writeFile(listFile, `${list.join('\n')}\n`);
  const tar = join(dir, 'system.tar');
  await execa('tar', ['--xattrs', '--xattrs-include=*', '-C', '/', '--no-recursion', '-cf', tar, '-T', listFile]);
  return tar;
}

async function timeTar2sqfs(tar: string, out: string, jobs: number | null): Promise<number> {
  await rm(out, { force: true });
  const t0 = process.hrtime.bigint();
  const jobArgs = jobs === null ? [] : ['-j', String(jobs)];
  await execa('tar2sqfs', ['-c', 'zstd', '-X', `level=${LEVEL}`, '-q', ...jobArgs, out], { inputFile: tar });
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function timeBake(tar: string, tmp: string): Promise<{ seconds: number; size: number }> {
  const t0 = process.hrtime.bigint();
  const img = await bakeTar(tar, { tmpDir: tmp, compressor: 'zstd', level: LEVEL, maxUncompressedBytes: 2 ** 40, maxEntries: 10_000_000 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await rm(img.path, { force: true });
  return { seconds, size: img.size };
}

/** Runs one bake in a fresh Node process and reads its peak RSS (so nothing else of this run is counted). */
async function peakRssOfBake(tar: string, tmp: string): Promise<number> {
  const r = await execa(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', tar, tmp], {
    cwd: join(fileURLToPath(import.meta.url), '..', '..'),
  });
  return Number(JSON.parse(r.stdout.trim().split('\n').pop()!).maxRssBytes);
}

async function child(tar: string, tmp: string): Promise<void> {
  const img = await bakeTar(createReadStream(tar), {
    tmpDir: tmp,
    compressor: 'zstd',
    level: LEVEL,
    maxUncompressedBytes: 2 ** 40,
    maxEntries: 10_000_000,
  });
  await rm(img.path, { force: true });
  // resourceUsage().maxRSS is in kilobytes.
  console.log(JSON.stringify({ maxRssBytes: process.resourceUsage().maxRSS * 1024 }));
}

export async function main(): Promise<BakeBenchResult> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-bench-bake-'));
  try {
    const tar = await makeTar(dir);
    const tarBytes = (await stat(tar)).size;
    const jobs = availableParallelism();
    const out = join(dir, 'plain.sqfs');
    console.log(`bake bench: ${(tarBytes / 1e6).toFixed(1)} MB tar of system files, zstd level ${LEVEL}, ${jobs} cores`);

    // Warm the page cache, then alternate so both see the same conditions; keep the best of 3.
    await timeTar2sqfs(tar, out, jobs);
    const plain: number[] = [];
    const plainDefaultJobs: number[] = [];
    const baked: number[] = [];
    let bakeBytes = 0;
    for (let i = 0; i < 3; i++) {
      plain.push(await timeTar2sqfs(tar, out, jobs));
      plainDefaultJobs.push(await timeTar2sqfs(tar, out, null));
      const b = await timeBake(tar, dir);
      baked.push(b.seconds);
      bakeBytes = b.size;
    }
    await timeTar2sqfs(tar, out, jobs);
    const tar2sqfsBytes = (await stat(out)).size;
    const tar2sqfsSeconds = Math.min(...plain);
    const bakeSeconds = Math.min(...baked);
    const peakRssBytes = await peakRssOfBake(tar, dir);

    const res: BakeBenchResult = {
      tarBytes,
      tar2sqfsSeconds,
      bakeSeconds,
      timeRatio: bakeSeconds / tar2sqfsSeconds,
      tar2sqfsBytes,
      bakeBytes,
      sizeRatio: bakeBytes / tar2sqfsBytes,
      peakRssBytes,
    };
    const mark = (ok: boolean) => (ok ? 'ok' : 'ABOVE GOAL');
    console.log(`  tar2sqfs alone (-j ${jobs}):   ${tar2sqfsSeconds.toFixed(2)} s, ${(tar2sqfsBytes / 1e6).toFixed(2)} MB`);
    console.log(`  tar2sqfs alone (default -j): ${Math.min(...plainDefaultJobs).toFixed(2)} s`);
    console.log(
      `  bakeTar:                     ${bakeSeconds.toFixed(2)} s, ${(bakeBytes / 1e6).toFixed(2)} MB (checks, sha256, fsync included)`,
    );
    console.log(`  time ratio: ${res.timeRatio.toFixed(2)} (goal <= 1.3, ${mark(res.timeRatio <= 1.3)})`);
    console.log(`  size ratio: ${res.sizeRatio.toFixed(3)} (goal <= 1.05, ${mark(res.sizeRatio <= 1.05)})`);
    console.log(`  peak RSS of a bake: ${(peakRssBytes / 1e6).toFixed(1)} MB (goal < 200 MB, ${mark(peakRssBytes < 200e6)})`);
    return res;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv[2] === '--child') {
    await child(process.argv[3]!, process.argv[4]!);
  } else {
    await main();
  }
}
