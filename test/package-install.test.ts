/**
 * The package as an admin installs it: `npm pack` of the built tree, then
 * `npm install -g` of the tarball into a fresh prefix (dependencies from the
 * registry, ssh2 built as npm builds it), then that `strata`, with no
 * checkout on PATH, runs init, import, log and serve. better-sqlite3's binary
 * comes the way a site without GitHub access provides it (docs/install.md):
 * a local prebuild, here packed from the checkout's own build, so CI spends
 * no four minutes compiling SQLite again; its install script still runs and
 * must load it. One test does it all.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../server/cluster.ts';
import { ROOT } from './helpers/cli.ts';
import { tempDir, writeTar } from './helpers/server-fixture.ts';

let tmp: ReturnType<typeof tempDir>;
beforeAll(() => {
  tmp = tempDir('strata-pkg-');
});
afterAll(() => tmp?.cleanup());

/**
 * A prebuild-install "local prebuild" of better-sqlite3 for this Node, from
 * the checkout's compiled module: the tarball name prebuild-install looks for
 * in npm_config_better_sqlite3_local_prebuilds, holding build/Release/*.node.
 */
function localSqlitePrebuild(dir: string): string {
  const mod = join(ROOT, 'node_modules/better-sqlite3');
  const { version } = JSON.parse(readFileSync(join(mod, 'package.json'), 'utf8')) as { version: string };
  mkdirSync(dir, { recursive: true });
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  execFileSync('tar', ['-czf', join(dir, name), '-C', mod, 'build/Release/better_sqlite3.node']);
  return dir;
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; files: string[] };

describe('npm pack + npm install -g', () => {
  it('installs a strata that runs init, import, log and serve from the built code alone', async () => {
    // Staged copy of what "files" ships, built there: the checkout's own dist/ is left alone (other tests run bin/strata).
    const stage = join(tmp.dir, 'stage');
    mkdirSync(stage);
    for (const f of ['package.json', ...pkg.files.filter((f) => f !== 'dist/')]) cpSync(join(ROOT, f), join(stage, f), { recursive: true });
    execFileSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), join(stage, 'dist')]);
    execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', tmp.dir], { cwd: stage, stdio: 'ignore' });
    const tgz = join(tmp.dir, `strata-${pkg.version}.tgz`);
    expect(existsSync(tgz)).toBe(true);
    const listing = execFileSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).split('\n');
    for (const f of ['package/dist/strata.js', 'package/web/index.html', 'package/systemd/strata.service', 'package/bin/strata'])
      expect(listing).toContain(f);
    expect(listing.some((f) => f.startsWith('package/initrd-hooks/'))).toBe(true);
    expect(listing.filter((f) => /^package\/(cli|store|server|client-agent|test)\//.test(f))).toEqual([]);

    const prefix = join(tmp.dir, 'prefix');
    const prebuilds = localSqlitePrebuild(join(tmp.dir, 'prebuilds'));
    execFileSync('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tgz], {
      cwd: tmp.dir,
      stdio: 'ignore',
      env: { ...process.env, npm_config_better_sqlite3_local_prebuilds: prebuilds },
    });
    const installed = join(prefix, 'lib/node_modules/strata');
    // Built code only: no sources and no TypeScript loader to fall back on.
    expect(existsSync(join(installed, 'cli'))).toBe(false);
    expect(existsSync(join(installed, 'node_modules/tsx'))).toBe(false);
    expect(readdirSync(join(installed, 'node_modules/better-sqlite3/build/Release'))).toContain('better_sqlite3.node');
    // The local prebuild was taken (a compile leaves its object files in obj.target).
    expect(existsSync(join(installed, 'node_modules/better-sqlite3/build/Release/obj.target'))).toBe(false);

    const env = { PATH: `${prefix}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: tmp.dir };
    const data = join(tmp.dir, 'data');
    const strata = (...args: string[]) => {
      const r = spawnSync('strata', ['--data', data, ...args], { cwd: tmp.dir, env, encoding: 'utf8' });
      expect(r.stderr, `strata ${args.join(' ')}`).toBe('');
      expect(r.status).toBe(0);
      return r.stdout;
    };
    expect(execFileSync('sh', ['-c', 'command -v strata'], { env, encoding: 'utf8' }).trim()).toBe(join(prefix, 'bin/strata'));
    expect(strata('--version').trim()).toBe(pkg.version);
    strata('init');
    const base = await writeTar(tmp.dir, 'base.tar', { 'etc/hostname': 'installed\n' });
    const kernel = join(tmp.dir, 'vmlinuz');
    cpSync(base, kernel);
    strata('import', 'lab', base, '--kernel', kernel, '--level', '3', '-m', 'from the package');
    expect(strata('log', 'lab')).toContain('from the package');
    strata('assign', 'default', 'lab');

    const [http, ssh] = [await freePort(), await freePort()];
    const server = spawn('strata', ['--data', data, 'serve', '--http', `127.0.0.1:${http}`, '--ssh', `127.0.0.1:${ssh}`], {
      cwd: tmp.dir,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    server.stderr.on('data', (d) => (log += d));
    try {
      const end = Date.now() + 60_000;
      while (!log.includes('HTTP on') && server.exitCode === null && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      expect(log).toContain(`HTTP on 127.0.0.1:${http}`);
      const boot = await fetch(`http://127.0.0.1:${http}/v1/boot/ipxe?mac=52:54:00:00:00:01`);
      expect(await boot.text()).toMatch(/^#!ipxe\n/);
      const page = await fetch(`http://127.0.0.1:${http}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toMatch(/<html/i);
    } finally {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
    }
  }, 1_800_000);
});
