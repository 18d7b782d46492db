/**
 * Building a base from a recipe (store/recipe.ts): mmdebstrap writes a tar,
 * the tar is baked, and the result is committed on the profile through the
 * import path (store/import.ts) unless its tree is identical to the base the
 * profile already has. One build runs at a time (store/build-queue.ts); its
 * log is <data>/builds/<id>.log and its outcome a row of the builds table.
 *
 * Nothing a failed build did survives it: the ref moves only in the import's
 * transaction, which runs last, and the work directory (the tar, the files
 * the recipe adds) is removed whatever happened. A blob registered before a
 * failure is named by no row, so gc removes it.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bakeTar } from './bake.ts';
import { bakeOptions } from './commit-write.ts';
import type { StoreCore } from './core.ts';
import { StrataError } from './errors.ts';
import { newBase } from './new-base.ts';
import { mmdebstrapPlan, parseRecipe, type Recipe } from './recipe.ts';
import type { Build, BuildStats } from './tables/builds.ts';
import type { CommitId, LayerEntry } from './types.ts';

export const buildsDir = (core: Pick<StoreCore, 'dataDir'>) => join(core.dataDir, 'builds');
export const buildLogPath = (core: Pick<StoreCore, 'dataDir'>, id: string) => join(buildsDir(core), `${id}.log`);
/** The shared apt cache: every build's downloaded .debs (docs/decisions.md, "The apt cache of builds"). */
export const aptCacheDir = (core: Pick<StoreCore, 'dataDir'>) => join(core.dataDir, 'apt-cache', 'archives');

/** Build stages as the log shows them, for progress lines and the web page. */
export type BuildProgress = { stage: string; line?: string };

const TAIL_LINES = 25;

/** The last N lines of a build's log (what an error shows). */
export function logTail(core: Pick<StoreCore, 'dataDir'>, id: string, n = TAIL_LINES): string {
  const p = buildLogPath(core, id);
  if (!existsSync(p)) return '';
  const lines = readFileSync(p, 'utf8').split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.slice(-n).join('\n');
}

/**
 * What makes two trees the same: every entry's path, type, owner, mode,
 * size, link target, device numbers, attributes and content digest. Not the
 * mtimes: a rebuild from the same packages unpacks the same files at a
 * later time.
 */
export function treeDigest(entries: LayerEntry[]): string {
  const h = createHash('sha256');
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const e of sorted) {
    const xattrs = e.xattrs
      ? Object.keys(e.xattrs)
          .sort()
          .map((k) => [k, e.xattrs![k]])
      : [];
    h.update(
      JSON.stringify([
        e.path,
        e.type,
        e.mode,
        e.uid,
        e.gid,
        e.type === 'file' ? e.size : 0,
        e.linkname ?? '',
        e.devmajor ?? 0,
        e.devminor ?? 0,
        xattrs,
        e.sha256 ?? '',
      ]),
    );
    h.update('\n');
  }
  return h.digest('hex');
}

/** apt's counters in a build log: "Need to get X of archives" and the .debs it then fetched. */
export function aptCounters(log: string): { debsDownloaded: number; bytesToGet: number } {
  const units: Record<string, number> = { B: 1, kB: 1e3, MB: 1e6, GB: 1e9 };
  let bytes = 0;
  let debs = 0;
  let inArchives = false;
  for (const line of log.split('\n')) {
    const need = /^Need to get ([\d.,]+) (B|kB|MB|GB)/.exec(line);
    if (need) {
      bytes += Number(need[1].replace(/,/g, '')) * (units[need[2]] ?? 1);
      inArchives = true;
      continue;
    }
    // After "Need to get", Get: lines are packages (index fetches come before it).
    if (inArchives && /^Get:\d+ /.test(line)) debs++;
    if (/^Fetched /.test(line)) inArchives = false;
  }
  return { debsDownloaded: debs, bytesToGet: Math.round(bytes) };
}

const countDebs = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.deb')).length : 0);

/** The tree digest of the base PROFILE has now, if one is known. */
function currentBaseDigest(core: StoreCore, profile: string): string | null {
  const head = core.t.refs.get(profile)?.commit;
  if (!head) return null;
  const headLayers = core.commits.get(head)?.manifest.layers.map((l) => l.digest) ?? [];
  // The tree of the last build still under the head (its layers are a prefix of the head's chain).
  for (const b of core.t.builds.recent(50, profile)) {
    if ((b.state !== 'committed' && b.state !== 'unchanged') || !b.commit || !b.stats.treeDigest) continue;
    const built = core.commits.get(b.commit)?.manifest.layers.map((l) => l.digest);
    if (built?.every((d, i) => headLayers[i] === d)) return b.stats.treeDigest;
  }
  // An imported base: its single base layer's listing.
  const first = headLayers[0];
  const entries = first ? core.t.layers.entries(first) : undefined;
  return entries ? treeDigest(entries) : null;
}

/**
 * Paths whose entry differs between two listings (mtimes aside), for the
 * log: why a rebuild is not identical.
 */
export function changedPaths(a: LayerEntry[], b: LayerEntry[]): string[] {
  const key = (e: LayerEntry) => treeDigest([{ ...e, path: '' }]);
  const before = new Map(a.map((e) => [e.path, key(e)]));
  const out: string[] = [];
  for (const e of b) {
    if (before.get(e.path) !== key(e)) out.push(e.path);
    before.delete(e.path);
  }
  return [...out, ...before.keys()].sort();
}

/** Runs mmdebstrap for RECIPE into TAR, appending its output to LOG; resolves with the exit code. */
function runMmdebstrap(
  recipe: Recipe,
  o: {
    tar: string;
    cacheDir: string;
    workDir: string;
    log: NodeJS.WritableStream;
    onProgress?: (p: BuildProgress) => void;
    signal?: AbortSignal;
  },
): Promise<number> {
  const plan = mmdebstrapPlan(recipe, { output: o.tar, cacheDir: o.cacheDir, tmpDir: o.workDir });
  return (async () => {
    for (const u of plan.uploads) await fsp.writeFile(u.local, u.content);
    o.log.write(`$ mmdebstrap ${plan.args.join(' ')}\n`);
    return new Promise<number>((resolve) => {
      const child = spawn('mmdebstrap', plan.args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        // A fixed SOURCE_DATE_EPOCH makes mmdebstrap leave out what differs
        // between two runs of the same packages (logs, caches, dates in
        // /etc/shadow), so an unchanged rebuild has the same content digests.
        env: { ...process.env, SOURCE_DATE_EPOCH: process.env.STRATA_BUILD_EPOCH ?? '1700000000', LC_ALL: 'C.UTF-8' },
        signal: o.signal,
      });
      let partial = '';
      const onData = (d: Buffer) => {
        o.log.write(d);
        if (!o.onProgress) return;
        const lines = (partial + d.toString('utf8')).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          const stage = /^I: (.*)$/.exec(line);
          o.onProgress(stage ? { stage: stage[1], line } : { stage: '', line });
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('error', (e) => {
        o.log.write(`strata: cannot run mmdebstrap: ${e.message}\n`);
        resolve(127);
      });
      child.on('close', (code, sig) => resolve(code ?? (sig ? 128 : 1)));
    });
  })();
}

export interface BuildRunOptions {
  onProgress?: (p: BuildProgress) => void;
  signal?: AbortSignal;
}

/**
 * Runs queued build ID to its end and records the outcome: 'committed' (a
 * new base), 'unchanged' (the tree is the profile's current base; no
 * commit) or 'failed' (the error names the cause and the log's last lines).
 * Resolves with the finished row; never leaves it 'running'.
 */
export async function runBuild(core: StoreCore, id: string, opts: BuildRunOptions = {}): Promise<Build> {
  const b = core.t.builds.get(id);
  if (!b) throw new StrataError('E_NOT_FOUND', `no build ${id}`);
  const started = Date.now();
  core.t.builds.start(id, started);
  await fsp.mkdir(buildsDir(core), { recursive: true });
  const workDir = join(buildsDir(core), `work-${id}`);
  const stats: BuildStats = {};
  const logFile = createWriteStream(buildLogPath(core, id), { flags: 'a' });
  const log = (s: string) => logFile.write(s.endsWith('\n') ? s : `${s}\n`);
  const progress = (stage: string) => {
    log(`strata: ${stage}`);
    opts.onProgress?.({ stage });
  };
  let bakedPath: string | null = null;
  try {
    const recipe = parseRecipe('recipe', b.recipe);
    const cacheDir = aptCacheDir(core);
    await fsp.mkdir(cacheDir, { recursive: true });
    await fsp.rm(workDir, { recursive: true, force: true });
    await fsp.mkdir(workDir, { recursive: true });
    const tar = join(workDir, 'tree.tar');
    progress(`build ${id} of ${b.profile}: mmdebstrap ${recipe.variant} ${recipe.suite}`);
    const t0 = Date.now();
    const code = await runMmdebstrap(recipe, { tar, cacheDir, workDir, log: logFile, onProgress: opts.onProgress, signal: opts.signal });
    stats.mmdebstrapMs = Date.now() - t0;
    await new Promise<void>((r) => logFile.write('', () => r()));
    Object.assign(stats, aptCounters(readFileSync(buildLogPath(core, id), 'utf8')));
    stats.cachedDebs = countDebs(cacheDir);
    if (code !== 0) {
      // apt's and mmdebstrap's first "E:" line usually says it all (a missing Release file, an unknown package).
      const first = readFileSync(buildLogPath(core, id), 'utf8')
        .split('\n')
        .find((l) => /^E: /.test(l));
      throw new StrataError('E_BUILD_FAILED', `mmdebstrap exited with status ${code}${first ? `: ${first.slice(0, 300)}` : ''}`);
    }

    progress('baking the tree');
    const profile = core.t.profiles.get(b.profile);
    const baked = await bakeTar(tar, bakeOptions(core, profile ?? { compressor: 'zstd', level: null }));
    bakedPath = baked.path;
    await fsp.rm(tar, { force: true });
    stats.treeDigest = treeDigest(baked.entries);
    const message = `build ${recipe.suite} ${recipe.variant}${recipe.packages.length ? ` + ${recipe.packages.join(' ')}` : ''}`;
    let commit: CommitId;
    let state: 'committed' | 'unchanged';
    if (profile && currentBaseDigest(core, b.profile) === stats.treeDigest) {
      state = 'unchanged';
      commit = core.t.refs.get(b.profile)!.commit;
      progress(`the tree is identical to ${b.profile}'s current base: no new commit`);
    } else {
      if (profile) {
        const head = core.t.refs.get(b.profile)?.commit;
        const first = head ? core.commits.get(head)?.manifest.layers[0]?.digest : undefined;
        const old = first ? core.t.layers.entries(first) : undefined;
        if (old) {
          const diff = changedPaths(old, baked.entries);
          log(
            `strata: ${diff.length} path(s) differ from ${b.profile}'s base layer: ${diff.slice(0, 20).join(' ')}${diff.length > 20 ? ' ...' : ''}`,
          );
        }
      }
      progress(profile ? `committing a new base on ${b.profile}` : `creating profile ${b.profile}`);
      // The baked image is a squashfs: the import reads it as one, no second
      // bake. On an existing profile it becomes the new base (a delta layer
      // when small enough) with the profile's own layers replayed onto it,
      // as `strata import NAME` does (store/new-base.ts).
      try {
        const r = await newBase(core, b.profile, baked.path, {
          message,
          author: 'strata build',
          compressor: profile?.compressor,
          level: profile?.level,
        });
        commit = r.commit.id;
        state = 'committed';
        Object.assign(stats, { baseMode: r.mode, deltaBytes: r.deltaBytes, fullBytes: r.fullBytes });
        core.t.builds.setCommitRecipe(r.base.id, id, b.recipe);
        if (r.commit.id !== r.base.id) core.t.builds.setCommitRecipe(r.commit.id, id, b.recipe);
        if (r.branch) progress(`conflicts with ${b.profile}'s own layers: the result is on ${r.branch}; ${b.profile} did not move`);
        else progress(`committed ${commit}${r.mode === 'delta' ? ` (the new base as a delta layer over the old one)` : ''}`);
      } catch (e) {
        // The same content digests as the current base, as newBase tells it.
        if (!(e instanceof StrataError && e.code === 'E_NOTHING_TO_DO')) throw e;
        state = 'unchanged';
        commit = core.t.refs.get(b.profile)!.commit;
        progress(`the tree is identical to ${b.profile}'s current base: no new commit`);
      }
    }
    stats.totalMs = Date.now() - started;
    core.t.builds.finish(id, { state, commit, stats }, Date.now());
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    log(`strata: build failed: ${err.message}`);
    await new Promise<void>((r) => logFile.write('', () => r()));
    const tail = logTail(core, id);
    stats.totalMs = Date.now() - started;
    const code = err instanceof StrataError ? err.code : 'E_INTERNAL';
    core.t.builds.finish(
      id,
      { state: 'failed', error: `${code}: ${err.message}\n--- last lines of the build log ---\n${tail}`, stats },
      Date.now(),
    );
  } finally {
    if (bakedPath) await fsp.rm(bakedPath, { force: true });
    await fsp.rm(workDir, { recursive: true, force: true });
    await new Promise<void>((r) => logFile.end(() => r()));
  }
  return core.t.builds.get(id)!;
}
