/**
 * Delta-update benchmark: a new base for an existing profile, stored as a
 * delta layer over the old base, against storing it as a full image. What a
 * client that holds the old base fetches for the update is the delta layer
 * (delta) or the whole new image (full); both are printed with the time to
 * make each, from one Debian tree (the test cache's, or a copy of /usr/bin
 * and /usr/lib when there is none) plus one "package" of real files.
 *
 *   node --import tsx bench/delta.ts
 *
 * Prints the numbers; never fails on a slow machine.
 */
import { execa } from 'execa';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store } from '../store/store.ts';

const CACHE = process.env.STRATA_TEST_CACHE ?? '/var/cache/strata-test';

async function baseTree(dir: string): Promise<string> {
  const root = join(dir, 'v1');
  await execa('mkdir', ['-p', root]);
  const tar = existsSync(CACHE) ? readdirSync(CACHE).find((f) => /^debian-.*\.tar$/.test(f)) : undefined;
  if (tar) await execa('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', root, '-xf', join(CACHE, tar)]);
  else await execa('cp', ['-a', '/usr/bin', '/usr/lib', root]);
  return root;
}

export async function main(): Promise<{ fullBytes: number; deltaBytes: number; deltaSeconds: number; fullSeconds: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-bench-delta-'));
  try {
    const v1 = await baseTree(dir);
    const v2 = join(dir, 'v2');
    await execa('cp', ['-a', v1, v2]);
    // One more "package": 300 small real files (a few MB) in new paths, and a changed version file.
    await execa('mkdir', ['-p', join(v2, 'opt/newpkg')]);
    await execa('sh', [
      '-c',
      `find /usr/share/doc -type f -size -100k | head -300 | xargs cp --parents -t ${join(v2, 'opt/newpkg')} 2>/dev/null; true`,
    ]);
    await writeFile(join(v2, 'etc/strata-bench-version'), 'v2\n');

    const store = await Store.open(join(dir, 'data'), { create: true });
    try {
      await store.importBase('a', v1, { level: 3 });
      await store.importBase('b', v1, { level: 3 });
      let t = performance.now();
      const delta = await store.newBase('a', v2, { level: 3 });
      const deltaSeconds = (performance.now() - t) / 1000;
      t = performance.now();
      const full = await store.newBase('b', v2, { level: 3, full: true });
      const fullSeconds = (performance.now() - t) / 1000;
      const deltaBytes = delta.mode === 'delta' ? store.getLayer(delta.base.addedLayer!).size : full.fullBytes;
      const fullBytes = full.fullBytes;
      const mb = (n: number) => (n / 1048576).toFixed(1);
      console.log(`new base stored as:             ${delta.mode}`);
      console.log(
        `bytes a client fetches, delta:  ${mb(deltaBytes)} MB (${((100 * deltaBytes) / fullBytes).toFixed(1)}% of the full image)`,
      );
      console.log(`bytes a client fetches, full:   ${mb(fullBytes)} MB`);
      console.log(
        `time to store, delta vs full:   ${deltaSeconds.toFixed(1)} s vs ${fullSeconds.toFixed(1)} s (both bake the full image; a full base with no parent also decides its kernel and initramfs afresh)`,
      );
      return { fullBytes, deltaBytes, deltaSeconds, fullSeconds };
    } finally {
      store.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
