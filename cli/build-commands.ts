/**
 * `strata build` and `strata builds`: build a base from a recipe
 * (store/recipe.ts) with mmdebstrap, schedule rebuilds, list builds and read
 * their logs. A build is a queued job: when a server runs on the same data
 * directory it runs the build and this command follows the log; otherwise
 * this command runs the queue itself.
 */
import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { StrataError } from '../store/errors.ts';
import type { Build, Store } from '../store/store.ts';
import { act, type GlobalOpts, out } from './command-kit.ts';
import { formatTime, shortId } from './format.ts';

const FINISHED = new Set(['committed', 'unchanged', 'failed']);

function summary(b: Build): string {
  const secs = b.stats.totalMs ? ` in ${(b.stats.totalMs / 1000).toFixed(0)} s` : '';
  const debs = b.stats.debsDownloaded !== undefined ? `, ${b.stats.debsDownloaded} .deb(s) downloaded` : '';
  const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
  const stored =
    b.stats.baseMode === 'delta' && b.stats.deltaBytes != null && b.stats.fullBytes
      ? `; the new base is a delta layer of ${mb(b.stats.deltaBytes)} over the old one (the full image is ${mb(b.stats.fullBytes)})`
      : b.stats.baseMode === 'full' && b.stats.fullBytes
        ? `; the new base is a full image of ${mb(b.stats.fullBytes)}`
        : '';
  if (b.state === 'committed') return `built ${b.profile}: commit ${b.commit}${secs}${debs}${stored}`;
  if (b.state === 'unchanged')
    return `${b.profile} unchanged: the built tree is identical to its current base (${shortId(b.commit ?? '')}); no new commit${secs}${debs}`;
  return `build ${b.id} of ${b.profile}: ${b.state}`;
}

/** Follows build ID's log (progress lines to stderr) until it has finished; returns the finished row. */
async function follow(s: Store, g: GlobalOpts, id: string, verbose: boolean, runnerError: () => unknown): Promise<Build> {
  let offset = 0;
  const tty = !g.json;
  const show = () => {
    const p = s.buildLogPath(id);
    if (!tty || !existsSync(p)) return;
    const text = readFileSync(p, 'utf8');
    const fresh = text.slice(offset, text.lastIndexOf('\n') + 1);
    offset += fresh.length;
    for (const line of fresh.split('\n')) {
      if (line && (verbose || /^(I|E|W): |^strata: /.test(line))) process.stderr.write(`${line}\n`);
    }
  };
  for (;;) {
    const b = s.getBuild(id);
    show();
    if (FINISHED.has(b.state)) return b;
    // This process was running the queue and its runner died: the build will not finish here.
    if (runnerError()) throw runnerError();
    await new Promise((r) => setTimeout(r, 500));
  }
}

export function registerBuildCommands(program: Command): void {
  program
    .command('build')
    .description('build a base for PROFILE from a recipe with mmdebstrap and commit it (docs/cli.md, "Recipes"); or schedule rebuilds')
    .argument('<profile>')
    .option('--recipe <file>', "the recipe (TOML); default: the profile's schedule's recipe, else its last build's")
    .option('--every <period>', 'save a schedule instead of building now: rebuild every period ("24h", "90m", "7d"); the server runs it')
    .option('--at <HH:MM>', 'save a schedule instead of building now: rebuild every day at this time (UTC)')
    .option('--unschedule', "remove the profile's rebuild schedule")
    .option('-v, --verbose', 'print the whole build log, not just its progress lines')
    .action(
      act(
        async (s, g, profile: string, o: { recipe?: string; every?: string; at?: string; unschedule?: boolean; verbose?: boolean }) => {
          if (o.unschedule) {
            const removed = s.removeSchedule(profile);
            out(g, { profile, removed }, () => (removed ? `${profile}: schedule removed` : `${profile} had no schedule`));
            return;
          }
          let recipe: string | undefined;
          if (o.recipe) {
            try {
              recipe = readFileSync(o.recipe, 'utf8');
            } catch (e) {
              throw new StrataError('E_BAD_ARGUMENT', `cannot read the recipe ${o.recipe}: ${(e as Error).message}`);
            }
          }
          // Without --recipe: the saved schedule's recipe, else the profile's last build's.
          const known = () =>
            s.listSchedules().find((x) => x.profile === profile)?.recipe ?? s.listBuilds({ profile, limit: 1 })[0]?.recipe;
          if (o.every || o.at) {
            recipe ??= known();
            if (!recipe) throw new StrataError('E_BAD_ARGUMENT', `${profile} has no recipe yet: a schedule needs --recipe FILE`);
            const sch = s.setSchedule(profile, recipe, { every: o.every, at: o.at });
            out(
              g,
              sch,
              () =>
                `${profile}: rebuilds ${o.every ? `every ${o.every}` : `daily at ${o.at} UTC`}; next at ${formatTime(sch.nextRun)} (the server runs it)`,
            );
            return;
          }
          recipe ??= known();
          if (!recipe) throw new StrataError('E_BAD_ARGUMENT', `${profile} has no recipe yet: give --recipe FILE`);
          const queued = s.enqueueBuild(profile, recipe);
          if (!g.json) process.stderr.write(`build ${queued.id} queued (log: ${s.buildLogPath(queued.id)})\n`);
          // Run the queue here unless another process (the server) holds it; either way follow the log.
          let runnerError: unknown = null;
          const running = s.buildRunner().kick();
          running.catch((e) => {
            runnerError = e ?? new Error('the build runner stopped');
          });
          const b = await follow(s, g, queued.id, o.verbose === true, () => runnerError);
          await running;
          if (b.state === 'failed') throw new StrataError('E_BUILD_FAILED', `build ${b.id} of ${profile} failed: ${b.error}`, { build: b });
          out(g, b, () => summary(b));
        },
        { create: true },
      ),
    );

  program
    .command('builds')
    .description('recent builds and schedules; with ID, that build and its log')
    .argument('[id]')
    .option('--profile <name>', "only this profile's builds")
    .option('--log', 'with ID: print the whole log')
    .action(
      act((s, g, id: string | undefined, o: { profile?: string; log?: boolean }) => {
        if (id) {
          const b = s.getBuild(id);
          const log = o.log ? (existsSync(s.buildLogPath(id)) ? readFileSync(s.buildLogPath(id), 'utf8') : '') : s.buildLogTail(id);
          out(g, { ...b, log }, () => `${summary(b)}\n${b.error ? `${b.error}\n` : ''}--- log ---\n${log}`);
          return;
        }
        const builds = s.listBuilds({ profile: o.profile });
        const schedules = s.listSchedules().filter((x) => !o.profile || x.profile === o.profile);
        out(
          g,
          { builds, schedules },
          () =>
            [
              ...builds.map((b) => `${b.id}\t${b.profile}\t${b.state}\t${formatTime(b.createdAt)}\t${b.commit ? shortId(b.commit) : ''}`),
              ...schedules.map(
                (x) =>
                  `schedule\t${x.profile}\t${x.everyMs ? `every ${x.everyMs / 3_600_000}h` : `at ${String(Math.floor(x.atMinute! / 60)).padStart(2, '0')}:${String(x.atMinute! % 60).padStart(2, '0')} UTC`}\tnext ${formatTime(x.nextRun)}`,
              ),
            ].join('\n') || 'no builds',
        );
      }),
    );
}
