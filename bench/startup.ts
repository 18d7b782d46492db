/**
 * Start-up benchmark (issue 16): `strata log PROFILE` on 10,000 commits and
 * `strata --help`, each in a fresh process through bin/strata running the
 * build (npm run build; made here when dist/ is missing or stale), against
 * `git log -1` on a git repository of the same history length made in the
 * same run. Goals: log < 200 ms, --help < 100 ms. `node -e 0` is printed as
 * the floor no Node program goes under, and the unbuilt sources (tsx) too.
 * Wall times move with the machine's load, so CPU times are printed beside.
 * Run: node --import tsx bench/startup.ts
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store } from '../store/store.ts';
import { growHistory } from './history.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const COMMITS = 10_000;
const RUNS = 9;

/** CPU ms of waited-for children so far (cutime + cstime, 10 ms ticks). */
function childCpuMs(): number {
  const s = readFileSync('/proc/self/stat', 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) * 10;
}

/** Median wall and CPU ms of RUNS fresh runs of CMD ARGS. */
function time(cmd: string, args: string[]): { wall: number; cpu: number } {
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const c = childCpuMs();
    const t = performance.now();
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    walls.push(performance.now() - t);
    cpus.push(childCpuMs() - c);
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  }
  const median = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
  return { wall: median(walls), cpu: median(cpus) };
}

/** A git repository with N commits (git fast-import: seconds, not minutes). */
function gitRepo(dir: string, n: number): void {
  execFileSync('git', ['init', '-q', dir]);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) {
    const msg = `commit ${i}\n`;
    parts.push(`commit refs/heads/main\ncommitter bench <bench@localhost> ${1_700_000_000 + i} +0000\ndata ${msg.length}\n${msg}`);
    parts.push(`M 644 inline file\ndata ${String(i).length}\n${i}\n`);
  }
  execFileSync('git', ['-C', dir, 'fast-import', '--quiet'], { input: parts.join('') });
  execFileSync('git', ['-C', dir, 'symbolic-ref', 'HEAD', 'refs/heads/main']);
}

export async function main(): Promise<{ logRatio: number; helpRatio: number; logMs: number; helpMs: number }> {
  const work = mkdtempSync(join(tmpdir(), 'strata-startup-'));
  try {
    // bin/strata runs dist/ only when it is newer than every source.
    const stale = spawnSync('sh', ['-c', `find cli store server client-agent -name '*.ts' -newer dist/BUILT -print -quit 2>/dev/null`], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    if (stale.status !== 0 || stale.stdout.trim() || spawnSync('test', ['-f', join(ROOT, 'dist/BUILT')]).status !== 0) {
      console.log('  building dist/ (npm run build)');
      execFileSync(process.execPath, [join(ROOT, 'scripts/build.mjs')]);
    }
    const data = join(work, 'data');
    const tree = join(work, 'tree');
    execFileSync('sh', ['-c', `mkdir -p ${tree}/etc && echo bench > ${tree}/etc/hostname`]);
    const store = await Store.open(data, { create: true });
    await store.importBase('bench', tree, { level: 3 });
    store.db.pragma('synchronous = OFF'); // setting up only
    const n = growHistory(store, 'bench', COMMITS);
    store.close();
    const repo = join(work, 'repo');
    gitRepo(repo, n);
    writeFileSync(join(work, 'n'), String(n));

    const strata = join(ROOT, 'bin/strata');
    const git = time('git', ['-C', repo, 'log', '-1']);
    const node = time(process.execPath, ['-e', '0']);
    const log = time(strata, ['--data', data, 'log', 'bench']);
    const help = time(strata, ['--help']);
    const tsx = ['--import', join(ROOT, 'node_modules/tsx/dist/esm/index.mjs'), join(ROOT, 'cli/main.ts')];
    const logSrc = time(process.execPath, [...tsx, '--data', data, 'log', 'bench']);
    const fmt = (x: { wall: number; cpu: number }) => `${x.wall.toFixed(0)} ms (cpu ${x.cpu} ms)`;
    console.log(`  ${n} commits; medians of ${RUNS} fresh processes`);
    console.log(`  git log -1:            ${fmt(git)}`);
    console.log(`  node -e 0 (the floor): ${fmt(node)}`);
    console.log(`  strata log (built):    ${fmt(log)}; ratio vs git log -1 ${(log.wall / git.wall).toFixed(1)}x (goal < 200 ms)`);
    console.log(`  strata --help (built): ${fmt(help)}; ratio vs git log -1 ${(help.wall / git.wall).toFixed(1)}x (goal < 100 ms)`);
    console.log(`  strata log (sources through tsx, no build): ${fmt(logSrc)}`);
    return { logRatio: log.wall / git.wall, helpRatio: help.wall / git.wall, logMs: log.wall, helpMs: help.wall };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
