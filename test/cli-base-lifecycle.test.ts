/**
 * The base-lifecycle commands as an admin types them (the real bin/strata):
 * import onto an existing profile, rebase, branch -d, tag -d, profile rm,
 * and rollback as their undo; refusals exit non-zero and change nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStrata } from './helpers/cli.ts';
import { makeTar } from './helpers/tars.ts';

let dir: string;
let data: string;
const run = (...args: string[]) => runStrata(args, { data });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-cli-base-'));
  data = join(dir, 'data');
  const v1 = join(dir, 'v1');
  mkdirSync(join(v1, 'etc'), { recursive: true });
  mkdirSync(join(v1, 'usr/lib'), { recursive: true });
  writeFileSync(join(v1, 'etc/os-release'), 'VERSION=1\n');
  writeFileSync(join(v1, 'usr/lib/big.bin'), randomBytes(1 << 20));
  cpSync(v1, join(dir, 'v2'), { recursive: true, preserveTimestamps: true });
  writeFileSync(join(dir, 'v2/etc/os-release'), 'VERSION=2\n');
  writeFileSync(join(dir, 'layer.tar'), await makeTar({ 'opt/mine': 'mine\n' }));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Each strata process takes seconds on a loaded 2-core machine: few invocations, generous timeouts.
const SLOW = 900_000;

describe('strata import and deleting refs from the command line', () => {
  it(
    'import onto an existing profile stores a delta and replays the profile layer',
    async () => {
      expect((await run('import', 'lab', join(dir, 'v1'), '--level', '3')).code).toBe(0);
      expect((await run('commit', 'lab', '--tar', join(dir, 'layer.tar'), '-m', 'mine')).code).toBe(0);
      const r = await run('--json', 'import', 'lab', join(dir, 'v2'));
      expect(r.code, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout) as { mode: string; reused: string[]; commit: { manifest: { layers: unknown[] } } };
      expect(j.mode).toBe('delta');
      expect(j.reused).toHaveLength(1);
      expect(j.commit.manifest.layers).toHaveLength(3);
    },
    SLOW,
  );

  it(
    'tag -d is undone by rollback; profile rm is refused while an assignment uses the profile',
    async () => {
      expect((await run('tag', 'keep', 'lab')).code).toBe(0);
      expect((await run('tag', '-d', 'keep')).code).toBe(0);
      expect((await run('rollback', 'keep')).stdout).toMatch(/restored keep/);
      expect((await run('assign', 'default', 'lab')).code).toBe(0);
      const refused = await run('profile', 'rm', 'lab');
      expect(refused.code).toBe(5);
      expect(refused.stderr).toMatch(/assignment\(s\) default/);
    },
    SLOW,
  );
});
