/**
 * Metadata bench (issue 11): the memory of baking pushes that carry a lot of
 * metadata, against tar2sqfs alone on the same tar.
 *
 *   node --import tsx bench/bake-metadata.ts
 *
 * Two archives, generated streaming into zstd: the metadata bomb (75,000
 * empty files with a 60 KB xattr each, ~4.6 GB of tar, refused by the
 * metadata budget while it streams) and one just under the default budget
 * (28,000 files with a 4 KB xattr each), baked completely and its listing
 * encoded as the commit stores it. Each bake runs in a fresh Node process,
 * whose peak RSS is read, so nothing else of this run is counted. Goal: a
 * bake's memory is bounded whatever the archive (the bomb no higher than the
 * archive under the budget). Prints the numbers; never fails on a slow machine.
 */
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bakeTar } from '../store/bake.ts';
import { gzipListing } from '../store/tables/layers.ts';
import { DEFAULT_CONFIG } from '../store/types.ts';
import { metadataBombZstd } from '../test/helpers/metadata-bomb.ts';

const LEVEL = 3;

interface ChildResult {
  ms: number;
  maxRssBytes: number;
  outcome: string;
}

async function child(archive: string, tmp: string): Promise<void> {
  const t0 = Date.now();
  let outcome: string;
  try {
    const img = await bakeTar(archive, {
      tmpDir: tmp,
      compressor: 'zstd',
      level: LEVEL,
      maxUncompressedBytes: DEFAULT_CONFIG.maxUncompressedBytes,
      maxEntries: DEFAULT_CONFIG.maxEntries,
      maxMetadataBytes: DEFAULT_CONFIG.maxMetadataBytes,
      maxEntryMetadataBytes: DEFAULT_CONFIG.maxEntryMetadataBytes,
    });
    const listing = gzipListing(img.entries);
    outcome = `baked, ${img.entries.length} entries, listing ${(listing.length / 1e6).toFixed(1)} MB gzip'd`;
    await rm(img.path, { force: true });
  } catch (e) {
    outcome = `refused: ${(e as { code?: string }).code ?? ''} ${(e as Error).message.slice(0, 90)}...`;
  }
  // resourceUsage().maxRSS is in kilobytes.
  console.log(JSON.stringify({ ms: Date.now() - t0, maxRssBytes: process.resourceUsage().maxRSS * 1024, outcome }));
}

async function bakeInChild(archive: string, tmp: string): Promise<ChildResult> {
  const r = await execa(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', archive, tmp], {
    cwd: join(fileURLToPath(import.meta.url), '..', '..'),
  });
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildResult;
}

/** tar2sqfs alone on the decompressed tar: its peak RSS (GNU time) and wall time. */
async function plainTool(archive: string, out: string): Promise<{ ms: number; maxRssBytes: number } | null> {
  if (!existsSync('/usr/bin/time')) return null;
  const t0 = Date.now();
  const r = await execa('sh', ['-c', `zstd -dc '${archive}' | /usr/bin/time -f '%M' tar2sqfs -q -c zstd -X level=${LEVEL} '${out}'`], {
    reject: false,
  });
  const kb = Number(r.stderr.trim().split('\n').pop());
  await rm(out, { force: true });
  return Number.isFinite(kb) ? { ms: Date.now() - t0, maxRssBytes: kb * 1024 } : null;
}

export async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-bench-meta-'));
  try {
    const mb = (n: number) => `${(n / 1e6).toFixed(0)} MB`;
    const underBudget = join(dir, 'under-budget.tar.zst');
    await writeFile(underBudget, await metadataBombZstd({ entries: 28_000, xattrBytes: 4_000, level: LEVEL }));
    const bomb = join(dir, 'bomb.tar.zst');
    await writeFile(bomb, await metadataBombZstd({ entries: 75_000, xattrBytes: 60_000, level: LEVEL }));
    console.log(`metadata bench: default budget ${mb(DEFAULT_CONFIG.maxMetadataBytes)} per archive`);

    const under = await bakeInChild(underBudget, dir);
    const plain = await plainTool(underBudget, join(dir, 'plain.sqfs'));
    console.log(`  under the budget (28,000 files x 4 KB xattr, ~115 MB of tar): ${under.outcome}`);
    console.log(`    bake: peak RSS ${mb(under.maxRssBytes)}, ${(under.ms / 1000).toFixed(1)} s`);
    if (plain) {
      console.log(`    tar2sqfs alone: peak RSS ${mb(plain.maxRssBytes)}, ${(plain.ms / 1000).toFixed(1)} s`);
      console.log(
        `    ratio: RSS ${(under.maxRssBytes / plain.maxRssBytes).toFixed(2)}x, time ${(under.ms / plain.ms).toFixed(2)}x (the bake keeps the listing; tar2sqfs only its inode table)`,
      );
    } else console.log('    tar2sqfs alone: not measured (no /usr/bin/time)');

    const b = await bakeInChild(bomb, dir);
    console.log(`  the bomb (75,000 files x 60 KB xattr, ~4.6 GB of tar, 870 KB of zstd): ${b.outcome}`);
    console.log(`    bake: peak RSS ${mb(b.maxRssBytes)}, refused after ${(b.ms / 1000).toFixed(1)} s`);
    if (plain) console.log(`    ratio: RSS ${(b.maxRssBytes / plain.maxRssBytes).toFixed(2)}x tar2sqfs on the archive under the budget`);
    const bounded = b.maxRssBytes <= under.maxRssBytes * 1.25;
    console.log(`  bounded (bomb <= 1.25x the archive under the budget): ${bounded ? 'ok' : 'ABOVE GOAL'}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv[2] === '--child') await child(process.argv[3]!, process.argv[4]!);
  else await main();
}
