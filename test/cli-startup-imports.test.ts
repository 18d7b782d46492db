/**
 * Fast start-up: a command imports only what it uses. `strata --help` loads
 * commander and no store; `strata log` loads the store but not the server
 * (fastify, ssh2), the web UI's dagre or playwright. Checked on the sources
 * (through tsx) and on the bundle `npm run build` makes.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/cli.ts';
import { tempDir, writeTar } from './helpers/server-fixture.ts';

const TSX = join(ROOT, 'node_modules/tsx/dist/esm/index.mjs');
const RECORDER = join(ROOT, 'test/helpers/import-recorder.mjs');
// Inside the checkout so the bundle's package imports resolve from node_modules/.
const BUILT = join(ROOT, 'test-artifacts', `startup-dist-${process.pid}`);

let tmp: ReturnType<typeof tempDir>;
let data: string;
beforeAll(async () => {
  tmp = tempDir('strata-imports-');
  data = join(tmp.dir, 'data');
  mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true });
  execFileSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), BUILT]);
  const base = await writeTar(tmp.dir, 'base.tar', { 'etc/hostname': 'lab\n' });
  execFileSync(join(ROOT, 'bin/strata'), ['--data', data, 'import', 'lab', base, '--level', '3']);
}, 120_000);
afterAll(() => {
  tmp?.cleanup();
  rmSync(BUILT, { recursive: true, force: true });
});

/** The module URLs one run of `strata ARGS` imports. */
function importsOf(kind: 'sources' | 'built', args: string[]): string[] {
  const log = join(tmp.dir, `imports-${Math.random().toString(36).slice(2)}`);
  const entry = kind === 'sources' ? ['--import', TSX, join(ROOT, 'cli/main.ts')] : [join(BUILT, 'strata.js')];
  const r = spawnSync(process.execPath, ['--import', RECORDER, ...entry, '--data', data, ...args], {
    encoding: 'utf8',
    env: { ...process.env, STRATA_IMPORT_LOG: log },
  });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return readFileSync(log, 'utf8').trim().split('\n');
}

const loads = (urls: string[], what: RegExp) => urls.some((u) => what.test(u));
const SERVER = /node_modules\/(fastify|ssh2|@fastify|playwright-core|@dagrejs)\/|\/server\/main\.ts$/;

describe.each(['sources', 'built'] as const)('strata from the %s', (kind) => {
  it('--help loads commander but not the store, SQLite or the server', () => {
    const urls = importsOf(kind, ['--help']);
    // The bundle carries commander inside it; the sources import it.
    if (kind === 'sources') expect(loads(urls, /node_modules\/commander\//)).toBe(true);
    expect(urls.length).toBeGreaterThan(0);
    expect(urls.filter((u) => /better-sqlite3|execa|store\/store\.ts|store-[A-Z0-9]+\.js/.test(u) || SERVER.test(u))).toEqual([]);
  });

  it('log loads the store but not fastify, ssh2, dagre or playwright', () => {
    const urls = importsOf(kind, ['log', 'lab']);
    expect(loads(urls, /better-sqlite3/)).toBe(true);
    expect(urls.filter((u) => SERVER.test(u))).toEqual([]);
  });
});
