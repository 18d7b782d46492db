/**
 * `strata import NAME X.iso` on ISOs built with xorriso in each layout: the
 * profile's first commit carries the ISO's root squashfs (byte for byte) and
 * kernel; refused ISOs leave no profile and no objects. These ISOs carry fake
 * kernels and no modules, so they import with --initrd; the ISO whose
 * initramfs is built from its root image's modules boots in
 * test/kernel-follows-tree.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeIso, type IsoFixture } from './helpers/make-iso.ts';
import { runStrata, strataJson } from './helpers/cli.ts';
import type { Commit } from '../store/types.ts';

let work: string;
let data: string;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'strata-isoimport-'));
  data = join(work, 'data');
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const layouts: [IsoFixture, string][] = [
  ['debian-live', 'debian'],
  ['ubuntu-casper', 'ubuntu'],
  ['fedora-liveos', 'fedora'],
  ['alt', 'alt'],
  ['ubuntu-casper-layered', 'layered'],
];

describe('strata import of live ISOs', () => {
  for (const [fixture, name] of layouts) {
    it(`${fixture}: base and kernel come from the ISO, the initramfs from --initrd`, async () => {
      const built = await makeIso(work, fixture);
      const initrd = join(work, `${name}-initrd.img`);
      writeFileSync(initrd, `strata initramfs for ${name}\n`);
      const r = await runStrata(['import', name, built.iso, '--initrd', initrd, '--json'], { data });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const c = JSON.parse(r.stdout) as Commit;
      const exp = built.expected!;
      expect(c.manifest.kernel?.digest).toBe(sha(built.files.get(exp.kernel)!));
      expect(c.manifest.initrd?.digest).toBe(sha(readFileSync(initrd)));
      // The ISO's own initrd ignores strata's boot arguments: it is never the one booted.
      expect(c.manifest.initrd?.digest).not.toBe(sha(built.files.get(exp.initrd)!));
      const stack = exp.layers ?? [exp.rootfs];
      expect(c.manifest.layers.map((l) => l.digest)).toEqual(stack.map((p) => sha(built.files.get(p)!)));
      const shown = await strataJson<Commit[]>(['log', name], { data });
      expect(shown).toHaveLength(1);
      // The marker file is in the profile's tree.
      const d = await strataJson<{ added: string[] }>(['diff', name], { data });
      expect(d.added).toContain('etc/strata-marker');
    });
  }

  it('an ISO whose kernel has no modules in its root image is refused, naming the ways out', async () => {
    const built = await makeIso(work, 'debian-live');
    const r = await runStrata(['import', 'nomodules', built.iso], { data });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/modules/);
    expect(r.stderr).toMatch(/--initrd/);
    expect((await runStrata(['profile', 'nomodules'], { data })).code).not.toBe(0);
  });

  it('the nested Fedora rootfs.img is refused clearly, leaving nothing behind', async () => {
    const built = await makeIso(work, 'fedora-nested');
    const objectsBefore = readdirSync(join(data, 'objects/sha256')).length;
    const r = await runStrata(['import', 'nested', built.iso], { data });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/rootfs\.img/);
    expect(r.stderr).toMatch(/not supported|cannot/i);
    expect(readdirSync(join(data, 'objects/sha256')).length).toBe(objectsBefore);
    expect((await runStrata(['profile', 'nested'], { data })).code).not.toBe(0);
  });

  it('an unknown layout lists what was found', async () => {
    const built = await makeIso(work, 'unknown');
    const r = await runStrata(['import', 'unknown', built.iso], { data });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/found/i);
    expect(readFileSync(built.iso).length).toBeGreaterThan(0);
  });
});
