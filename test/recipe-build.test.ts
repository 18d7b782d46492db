/**
 * Recipes built for real (issue 15): `strata build` runs mmdebstrap against
 * the configured Debian mirror with the shared apt cache under the data
 * directory, commits the tree as a new profile, and the profile PXE-boots in
 * QEMU with the recipe's packages and its own kernel. A second build of the
 * same recipe downloads no .deb (apt's "Need to get 0 B" and its Get: lines,
 * the cache's file count) and makes no commit. Bad recipes (unknown suite
 * through the admin API, a missing package, a failing customize command)
 * fail with the build log's last lines and leave nothing behind.
 *
 * Builds take minutes: the file makes one cold and one warm full build, and
 * the failures are chosen to stop early (a missing Release file, apt's
 * resolver) or to be small (the essential variant).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../server/build-server.ts';
import { BuildJobs } from '../server/build-routes.ts';
import { EventHub } from '../server/events.ts';
import { type Build, Store } from '../store/store.ts';
import { runStrata } from './helpers/cli.ts';
import { OLD_KERNEL } from './helpers/debian-tree.ts';
import { proofs, runQemu, strataLines, writeIpxeChain } from './helpers/qemu.ts';

const RECIPE = `# bookworm minbase, two packages (less, procps), and what a PXE boot needs
suite = "bookworm"
variant = "minbase"
packages = ["less", "procps", "systemd-sysv", "udev", "iproute2"]
kernel = "linux-image-${OLD_KERNEL}"

[[files]]
path = "/usr/local/sbin/strata-proof"
mode = "0755"
content = '''
#!/bin/sh
[ -r /proc/modules ] || mount -t proc proc /proc
{
	echo "PROOF uname=$(uname -r)"
	echo "PROOF less=$(test -x /usr/bin/less && echo yes)"
	echo "PROOF procps=$(dpkg-query -W -f='\${Status}' procps)"
	echo "PROOF root=$(grep ' / ' /proc/mounts | cut -d' ' -f3 | tail -n 1)"
} > /dev/console 2>&1
sync
echo o > /proc/sysrq-trigger
sleep 30
'''
`;

const CMDLINE = 'console=ttyS0 panic=-1 strata.reboot.delay=0 strata.retries=3 init=/usr/local/sbin/strata-proof';

let dir: string;
let data: string;
let recipeFile: string;
let first: Build;

const json = <T>(s: string): T => JSON.parse(s) as T;

function objectFiles(): string[] {
  const root = join(data, 'objects/sha256');
  return readdirSync(root)
    .flatMap((d) => readdirSync(join(root, d)).map((f) => `${d}/${f}`))
    .sort();
}

async function build(profile: string, text: string, extra: string[] = []) {
  const f = join(dir, `${profile}-${Math.random().toString(16).slice(2)}.toml`);
  writeFileSync(f, text);
  return runStrata(['--json', 'build', profile, '--recipe', f, ...extra], { data });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-recipe-'));
  data = join(dir, 'data');
  recipeFile = join(dir, 'lab.toml');
  writeFileSync(recipeFile, RECIPE);
  const r = await runStrata(['--json', 'build', 'lab', '--recipe', recipeFile], { data });
  expect(r.code, r.stderr).toBe(0);
  first = json<Build>(r.stdout);
}, 60 * 60_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a recipe builds a profile', () => {
  it('the first build downloads the packages into the shared cache and commits a new profile with the recipe', async () => {
    expect(first.state).toBe('committed');
    expect(first.stats.debsDownloaded).toBeGreaterThan(50);
    expect(first.stats.bytesToGet).toBeGreaterThan(10_000_000);
    expect(first.stats.cachedDebs).toBeGreaterThan(50);
    const show = await runStrata(['show', 'lab'], { data });
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain(`recipe (build ${first.id}):`);
    expect(show.stdout).toContain('packages = ["less", "procps"');
    const log = await runStrata(['log', 'lab'], { data });
    expect(log.stdout).toContain(first.commit!.slice(0, 12));
  });

  it("PXE-boots in QEMU on the recipe's kernel with both packages installed", async () => {
    const store = await Store.open(data);
    let app: FastifyInstance | undefined;
    try {
      store.setCmdline('lab', CMDLINE);
      store.assign('default', 'lab');
      app = buildServer({ store });
      await app.listen({ host: '127.0.0.1', port: 0 });
      const tftp = join(dir, 'tftp');
      mkdirSync(tftp, { recursive: true });
      await writeIpxeChain(tftp, (app.server.address() as AddressInfo).port);
      const r = await runQemu({ tftpDir: tftp, memoryMb: 768, timeoutMs: 480_000 });
      const why = `console:\n${r.output.slice(-4000)}\nstrata lines:\n${strataLines(r.output).join('\n')}`;
      expect(r.timedOut, why).toBe(false);
      const p = proofs(r.output);
      expect(p.uname, why).toBe(OLD_KERNEL);
      expect(p.less, why).toBe('yes');
      expect(p.procps, why).toBe('install ok installed');
      expect(p.root, why).toBe('overlay');
    } finally {
      await app?.close();
      store.close();
    }
  }, 600_000);

  it(
    'a second build of the same recipe downloads no .deb and makes no new commit',
    async () => {
      const cached = readdirSync(join(data, 'apt-cache/archives')).filter((n) => n.endsWith('.deb')).length;
      const r = await runStrata(['--json', 'build', 'lab'], { data });
      expect(r.code, r.stderr).toBe(0);
      const again = json<Build>(r.stdout);
      expect(again.state).toBe('unchanged');
      expect(again.commit).toBe(first.commit);
      // apt's own counters: nothing to get, no Get: line for a package; the cache holds the same files.
      expect(again.stats.debsDownloaded).toBe(0);
      expect(again.stats.bytesToGet).toBe(0);
      expect(again.stats.cachedDebs).toBe(cached);
      const rev = await runStrata(['rev-parse', 'lab'], { data });
      expect(rev.stdout.trim()).toBe(first.commit);
      const reflog = await runStrata(['--json', 'reflog', 'lab'], { data });
      expect(json<unknown[]>(reflog.stdout)).toHaveLength(1);
      const text = (await runStrata(['builds', again.id, '--log'], { data })).stdout;
      expect(text).toMatch(/Need to get 0 B\/[\d.]+ [kM]B of archives/);
    },
    45 * 60_000,
  );
});

describe('bad recipes fail clearly and leave nothing behind', () => {
  it(
    'an unknown suite, started over the admin API: the build fails with the log tail, no profile',
    async () => {
      const store = await Store.open(data);
      const events = new EventHub();
      const jobs = new BuildJobs(store, events, () => {}, 200);
      const app = buildServer({ store, events, kickBuilds: () => jobs.tick() });
      try {
        await app.listen({ host: '127.0.0.1', port: 0 });
        const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
        const { token } = store.createToken('recipe-test');
        const h = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
        const res = await fetch(`${url}/v1/profiles/nosuite/builds`, {
          method: 'POST',
          headers: h,
          body: JSON.stringify({ recipe: 'suite = "bookwormz"\n' }),
        });
        expect(res.status).toBe(202);
        const { build } = (await res.json()) as { build: Build };
        let b = build;
        for (let i = 0; i < 600 && !['failed', 'committed', 'unchanged'].includes(b.state); i++) {
          await new Promise((r) => setTimeout(r, 500));
          b = ((await (await fetch(`${url}/v1/builds/${build.id}`, { headers: h })).json()) as { build: Build }).build;
        }
        expect(b.state).toBe('failed');
        expect(b.error).toMatch(/E_BUILD_FAILED: mmdebstrap exited with status/);
        expect(b.error).toMatch(/last lines of the build log/);
        expect(b.error).toMatch(/bookwormz/);
        const log = await fetch(`${url}/v1/builds/${build.id}/log?offset=0`, { headers: h });
        expect(log.headers.get('x-build-state')).toBe('failed');
        expect(await log.text()).toMatch(/bookwormz/);
        expect(store.listProfiles().map((p) => p.name)).not.toContain('nosuite');
        // A recipe with a mistake is refused before anything is queued.
        const bad = await fetch(`${url}/v1/profiles/nosuite/builds`, {
          method: 'POST',
          headers: h,
          body: JSON.stringify({ recipe: 'suit = "x"\n' }),
        });
        expect(bad.status).toBe(400);
        expect(((await bad.json()) as { error: { code: string; message: string } }).error).toMatchObject({
          code: 'E_BAD_RECIPE',
          message: expect.stringMatching(/recipe:1: suit: unknown key/),
        });
      } finally {
        jobs.stop();
        await app.close();
        store.close();
      }
    },
    10 * 60_000,
  );

  it(
    'a missing package and a failing customize command: exit code, the log tail on stderr, nothing committed, no blobs after gc',
    async () => {
      const before = objectFiles();
      const missing = await build('nopkg', 'suite = "bookworm"\npackages = ["strata-no-such-package"]\n');
      expect(missing.code).toBe(6);
      expect(missing.stderr).toMatch(/build \w+ of nopkg failed: E_BUILD_FAILED/);
      expect(missing.stderr).toMatch(/strata-no-such-package/);
      const failing = await build('badcmd', 'suite = "bookworm"\nvariant = "essential"\ncustomize = ["echo about to fail; exit 3"]\n');
      expect(failing.code).toBe(6);
      expect(failing.stderr).toMatch(/about to fail/);
      expect(failing.stderr).toMatch(/last lines of the build log/);
      const profiles = json<{ name: string }[]>((await runStrata(['--json', 'profile'], { data })).stdout);
      expect(profiles.map((p) => p.name)).toEqual(['lab']);
      // gc as if the grace time for fresh blobs had passed: whatever a failed build stored is unnamed.
      const store = await Store.open(data);
      try {
        await store.gc({ now: Date.now() + 2 * 3600_000 });
      } finally {
        store.close();
      }
      expect(objectFiles()).toEqual(before);
      expect(readdirSync(join(data, 'builds')).filter((n) => n.startsWith('work-'))).toEqual([]);
    },
    20 * 60_000,
  );
});
