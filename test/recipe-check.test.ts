/**
 * Recipes and schedules without running mmdebstrap: a recipe's mistakes are
 * reported with their line and key before anything runs, the mmdebstrap
 * command line carries the shared apt cache, apt's counters are read from a
 * log, and schedules land at the promised times.
 */
import { describe, expect, it } from 'vitest';
import { aptCounters, treeDigest } from '../store/build.ts';
import { nextRun, parseScheduleSpec } from '../store/build-queue.ts';
import { checkRecipe, mmdebstrapPlan, parseRecipe } from '../store/recipe.ts';
import type { LayerEntry } from '../store/types.ts';

const GOOD = `# a lab image
suite = "bookworm"
variant = "minbase"
packages = ["less", "procps"]
kernel = "linux-image-cloud-amd64"
customize = ['echo lab > "$1/etc/hostname"']

[[files]]
path = "/etc/motd"
content = "built by strata\\n"
mode = "0640"
`;

describe('recipes', () => {
  it('a complete recipe reads into its parts, with defaults for what it leaves out', () => {
    const r = parseRecipe('lab.toml', GOOD);
    expect(r).toMatchObject({
      suite: 'bookworm',
      variant: 'minbase',
      mirror: null,
      packages: ['less', 'procps'],
      kernel: 'linux-image-cloud-amd64',
      files: [{ path: '/etc/motd', content: 'built by strata\n', mode: 0o640 }],
    });
    expect(parseRecipe('x', 'suite = "noble"\n').variant).toBe('minbase');
  });

  it('every mistake is reported at once, each with its line and key', () => {
    const text = `suite = "bookworm"
varient = "minbase"
packages = ["less", "Bad Name"]
mirror = "ftp://example.org/debian"

[[files]]
path = "etc/relative"
content = 3
`;
    const { recipe, problems } = checkRecipe(text);
    expect(recipe).toBeNull();
    expect(problems.map((p) => [p.line, p.key])).toEqual([
      [2, 'varient'],
      [3, 'packages'],
      [4, 'mirror'],
      [7, 'files.0.path'],
      [8, 'files.0.content'],
    ]);
    expect(() => parseRecipe('lab.toml', text)).toThrow(/lab\.toml has 5 problem\(s\):\nlab\.toml:2: varient: unknown key/);
  });

  it('a missing suite, an unknown variant and broken TOML are refused with the line', () => {
    expect(checkRecipe('packages = []\n').problems[0]).toMatchObject({ key: 'suite', message: expect.stringMatching(/required/) });
    expect(checkRecipe('suite = "bookworm"\nvariant = "tiny"\n').problems[0]).toMatchObject({ line: 2, key: 'variant' });
    expect(checkRecipe('suite = "bookworm"\nvariant = "extract"\ncustomize = ["true"]\n').problems[0]).toMatchObject({
      line: 2,
      key: 'variant',
      message: expect.stringMatching(/runs no customize commands/),
    });
    expect(checkRecipe('suite = "bookworm"\npackages = [\n').problems[0]).toMatchObject({
      message: expect.stringMatching(/not valid TOML/),
    });
    try {
      parseRecipe('r.toml', 'suite = 12\n');
      expect.unreachable();
    } catch (e) {
      expect((e as { code: string }).code).toBe('E_BAD_RECIPE');
    }
  });

  it('the mmdebstrap command line syncs the shared apt cache in and out and adds the files and commands in order', () => {
    const plan = mmdebstrapPlan(parseRecipe('r', GOOD), { output: '/w/tree.tar', cacheDir: '/d/apt-cache/archives', tmpDir: '/w' });
    const a = plan.args;
    expect(a).toContain('--include=less,procps,linux-image-cloud-amd64');
    expect(a).toContain('--skip=download/empty');
    expect(a).toContain("--setup-hook=sync-in '/d/apt-cache/archives' /var/cache/apt/archives/");
    const syncOut = a.indexOf("--customize-hook=sync-out /var/cache/apt/archives '/d/apt-cache/archives'");
    const upload = a.indexOf("--customize-hook=upload '/w/file-0' '/etc/motd'");
    const own = a.indexOf('--customize-hook=echo lab > "$1/etc/hostname"');
    // The cache is filled before the recipe's own commands can fail.
    expect(syncOut).toBeGreaterThan(0);
    expect(upload).toBeGreaterThan(syncOut);
    expect(own).toBeGreaterThan(upload);
    expect(a.slice(-2)).toEqual(['bookworm', '/w/tree.tar']);
    expect(plan.uploads).toEqual([{ local: '/w/file-0', content: 'built by strata\n' }]);
  });
});

describe("apt's counters and tree identity", () => {
  it('counts the .debs fetched after "Need to get", not the index downloads', () => {
    const cold = `Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]
Fetched 9423 kB in 5s (1987 kB/s)
Need to get 29.7 MB of archives.
Get:1 http://deb.debian.org/debian bookworm/main amd64 gcc-12-base amd64 12.2.0-14 [37.6 kB]
Get:2 http://deb.debian.org/debian bookworm/main amd64 libc6 amd64 2.36-9 [2757 kB]
Fetched 29.7 MB in 3s (10.2 MB/s)
Need to get 10.7 MB of archives.
Get:1 http://deb.debian.org/debian bookworm/main amd64 less amd64 590-2 [128 kB]
`;
    expect(aptCounters(cold)).toEqual({ debsDownloaded: 3, bytesToGet: 40_400_000 });
    expect(aptCounters('Get:1 http://x bookworm InRelease [1 kB]\nNeed to get 0 B/29.7 MB of archives.\n')).toEqual({
      debsDownloaded: 0,
      bytesToGet: 0,
    });
  });

  it('two trees differing only in mtimes are identical; a changed byte is not', () => {
    const e = (over: Partial<LayerEntry> = {}): LayerEntry => ({
      path: 'etc/motd',
      type: 'file',
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: 3,
      mtime: 1,
      sha256: 'a'.repeat(64),
      ...over,
    });
    const root: LayerEntry = { path: '', type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 1 };
    expect(treeDigest([root, e()])).toBe(treeDigest([e({ mtime: 99 }), { ...root, mtime: 5 }]));
    expect(treeDigest([root, e()])).not.toBe(treeDigest([root, e({ sha256: 'b'.repeat(64) })]));
    expect(treeDigest([root, e()])).not.toBe(treeDigest([root, e({ mode: 0o600 })]));
  });
});

describe('schedules', () => {
  const at = (iso: string) => Date.parse(iso);
  it('--every runs a period after now; --at runs at the next HH:MM UTC', () => {
    const now = at('2026-03-01T10:00:00Z');
    expect(nextRun(parseScheduleSpec({ every: '24h' }), now)).toBe(at('2026-03-02T10:00:00Z'));
    expect(nextRun(parseScheduleSpec({ at: '03:30' }), now)).toBe(at('2026-03-02T03:30:00Z'));
    expect(nextRun(parseScheduleSpec({ at: '23:05' }), now)).toBe(at('2026-03-01T23:05:00Z'));
  });

  it('a period under 10 minutes, a bad time and both at once are refused', () => {
    expect(() => parseScheduleSpec({ every: '1m' })).toThrow(/10m or more/);
    expect(() => parseScheduleSpec({ at: '25:00' })).toThrow(/HH:MM/);
    expect(() => parseScheduleSpec({ every: '24h', at: '03:00' })).toThrow(/not both/);
  });
});

describe('why a rebuild is not identical', () => {
  it('lists the paths added, removed or changed, not those only touched', async () => {
    const { changedPaths } = await import('../store/build.ts');
    const f = (path: string, sha: string, mtime = 1): LayerEntry => ({
      path,
      type: 'file',
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: 1,
      mtime,
      sha256: sha.repeat(64),
    });
    expect(changedPaths([f('a', 'a'), f('b', 'b'), f('c', 'c')], [f('a', 'a', 9), f('b', 'x'), f('d', 'd')])).toEqual(['b', 'c', 'd']);
  });
});
