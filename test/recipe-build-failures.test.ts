/**
 * Bad recipes, built for real (issue 15): an unknown suite started over the
 * admin API, a missing package and a failing customize command from the CLI.
 * Each fails with the build log's last lines in the error, commits nothing,
 * and leaves no blob behind once gc runs. The failures are chosen to stop
 * early (a missing Release file, apt's resolver) or to be small (the
 * essential variant), so the file takes about a minute of mmdebstrap.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildServer } from '../server/build-server.ts';
import { BuildJobs } from '../server/build-routes.ts';
import { EventHub } from '../server/events.ts';
import { type Build, Store } from '../store/store.ts';
import { runStrata } from './helpers/cli.ts';

let dir: string;
let data: string;

const json = <T>(s: string): T => JSON.parse(s) as T;

function objectFiles(): string[] {
  const root = join(data, 'objects/sha256');
  return readdirSync(root)
    .flatMap((d) => readdirSync(join(root, d)).map((f) => `${d}/${f}`))
    .sort();
}

async function build(profile: string, text: string) {
  const f = join(dir, `${profile}-${Math.random().toString(16).slice(2)}.toml`);
  writeFileSync(f, text);
  return runStrata(['--json', 'build', profile, '--recipe', f], { data });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-recipe-bad-'));
  data = join(dir, 'data');
  // A store with one profile and its blobs, which the failed builds must leave as they are.
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'etc'), { recursive: true });
  writeFileSync(join(tree, 'etc/hostname'), 'lab\n');
  const r = await runStrata(['import', 'lab', tree], { data });
  if (r.code !== 0) throw new Error(r.stderr);
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
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
