/**
 * The build queue and rebuild schedules. Builds are rows (queued, running,
 * then committed, unchanged or failed); whoever holds <data>/builds/lock
 * runs the queued ones, oldest first, one at a time: the server when it is
 * up, else the `strata build` command itself. One runner at a time keeps
 * mmdebstrap runs from sharing the apt cache while it is synced.
 *
 * Schedules are pure arithmetic over plain data (nextRun); the server's
 * timer calls dueSchedules() and enqueues what is due.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { buildsDir, runBuild, type BuildProgress } from './build.ts';
import type { StoreCore } from './core.ts';
import { StrataError } from './errors.ts';
import { NAME_RE } from './profiles.ts';
import { parseRecipe } from './recipe.ts';
import type { Build, Schedule } from './tables/builds.ts';

/** Checks RECIPE and queues a build of it for PROFILE (a new profile or an existing one). */
export function enqueueBuild(core: StoreCore, profile: string, recipe: string, opts: { scheduled?: boolean } = {}): Build {
  if (!NAME_RE.test(profile))
    throw new StrataError('E_BAD_ARGUMENT', `"${profile}" is not a usable profile name (letters, digits, . _ -; up to 64)`);
  parseRecipe('recipe', recipe);
  const id = randomBytes(6).toString('hex');
  core.t.builds.insert({ id, profile, recipe, scheduled: opts.scheduled === true }, Date.now());
  return core.t.builds.get(id)!;
}

export function getBuild(core: StoreCore, id: string): Build {
  const b = core.t.builds.get(id);
  if (!b) throw new StrataError('E_NOT_FOUND', `no build "${id}" (strata builds lists them)`);
  return b;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Takes the runner lock (a file holding the owner's pid; one left by a dead
 * process is taken over). Returns the release function, or null when a
 * live process holds it.
 */
export function takeRunnerLock(core: StoreCore): (() => void) | null {
  mkdirSync(buildsDir(core), { recursive: true });
  const lock = join(buildsDir(core), 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lock, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      // Builds a dead runner left 'running' never finish: mark them failed
      // and drop their scratch space (no build runs while we hold the lock).
      core.t.builds.failInterrupted(Date.now());
      for (const n of readdirSync(buildsDir(core)))
        if (n.startsWith('work-')) rmSync(join(buildsDir(core), n), { recursive: true, force: true });
      return () => rmSync(lock, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let pid = 0;
      try {
        pid = Number(readFileSync(lock, 'utf8'));
      } catch {}
      if (pid && alive(pid)) return null;
      rmSync(lock, { force: true });
    }
  }
  return null;
}

/**
 * Runs queued builds one at a time while there are any. Call kick() after
 * queueing; it is harmless to call it while running.
 */
export class BuildRunner {
  private running: Promise<void> | null = null;
  constructor(
    private readonly core: StoreCore,
    private readonly events: {
      onProgress?: (build: Build, p: BuildProgress) => void;
      onFinished?: (build: Build) => void;
    } = {},
  ) {}

  /** Starts draining the queue unless already draining; resolves when it is empty. */
  kick(): Promise<void> {
    if (!this.running) {
      this.running = this.drain().finally(() => {
        this.running = null;
      });
    }
    return this.running;
  }

  private async drain(): Promise<void> {
    const release = takeRunnerLock(this.core);
    if (!release) return;
    try {
      for (let next = this.core.t.builds.queued()[0]; next; next = this.core.t.builds.queued()[0]) {
        const b = next;
        const done = await runBuild(this.core, b.id, { onProgress: (p) => this.events.onProgress?.(b, p) });
        this.events.onFinished?.(done);
      }
    } finally {
      release();
    }
  }
}

const DAY = 86_400_000;

/** When a schedule runs next after NOW: every N ms, or the next HH:MM (UTC). */
export function nextRun(s: Pick<Schedule, 'everyMs' | 'atMinute'>, now: number): number {
  if (s.everyMs) return now + s.everyMs;
  const minute = s.atMinute ?? 0;
  const midnight = Math.floor(now / DAY) * DAY;
  const today = midnight + minute * 60_000;
  return today > now ? today : today + DAY;
}

/** "24h", "90m", "7d" as ms; "03:30" as minutes after midnight UTC. */
export function parseScheduleSpec(spec: { every?: string; at?: string }): Pick<Schedule, 'everyMs' | 'atMinute'> {
  if (spec.every && spec.at) throw new StrataError('E_BAD_ARGUMENT', 'give --every or --at, not both');
  if (spec.every) {
    const m = /^(\d+)\s*(m|h|d)$/.exec(spec.every.trim());
    const ms = m ? Number(m[1]) * { m: 60_000, h: 3_600_000, d: DAY }[m[2] as 'm' | 'h' | 'd'] : 0;
    if (!m || ms < 10 * 60_000)
      throw new StrataError('E_BAD_ARGUMENT', `--every "${spec.every}": give a period of 10m or more, like "24h", "90m" or "7d"`);
    return { everyMs: ms, atMinute: null };
  }
  const m = spec.at ? /^([01]?\d|2[0-3]):([0-5]\d)$/.exec(spec.at.trim()) : null;
  if (!m) throw new StrataError('E_BAD_ARGUMENT', `--at "${spec.at ?? ''}": give a time of day (UTC) as HH:MM, like "03:30"`);
  return { everyMs: null, atMinute: Number(m[1]) * 60 + Number(m[2]) };
}

/** Saves PROFILE's rebuild schedule (the recipe is checked now, not at 3 am). */
export function setSchedule(core: StoreCore, profile: string, recipe: string, spec: { every?: string; at?: string }): Schedule {
  if (!NAME_RE.test(profile)) throw new StrataError('E_BAD_ARGUMENT', `"${profile}" is not a usable profile name`);
  parseRecipe('recipe', recipe);
  const when = parseScheduleSpec(spec);
  const s: Schedule = { profile, recipe, ...when, nextRun: nextRun(when, Date.now()) };
  core.t.builds.setSchedule(s, Date.now());
  return s;
}

/**
 * Queues a build for every schedule that is due at NOW (unless that profile
 * already has one waiting or running) and moves each to its next time.
 */
export function enqueueDue(core: StoreCore, now = Date.now()): Build[] {
  const queued: Build[] = [];
  const busy = new Set(
    core.t.builds
      .recent(200)
      .filter((b) => b.state === 'queued' || b.state === 'running')
      .map((b) => b.profile),
  );
  for (const s of core.t.builds.schedules()) {
    if (s.nextRun > now) continue;
    core.t.builds.setNextRun(s.profile, nextRun(s, now));
    if (busy.has(s.profile)) continue;
    queued.push(enqueueBuild(core, s.profile, s.recipe, { scheduled: true }));
  }
  return queued;
}
