/**
 * `commit`: snapshot the upper dir -> zstd -> spool, and nothing more; sending
 * happens in the background (sender.ts), so a commit returns as soon as the
 * archive is safe on local disk.
 *
 * Every push carries the whole upper dir (it is relative to the booted
 * commit). A later push of the same boot stacks on the commit the earlier one
 * became, so files that an earlier push added and that are gone now need an
 * explicit whiteout: the overlay deleted them without one because no lower
 * layer had them. The agent remembers every path pushed since boot for this.
 * Such a synthesized whiteout is right over any commit of the chain: a path
 * gone from the upper dir without a whiteout never existed in the booted lower.
 */
import { StrataError } from '../store/errors.ts';
import { agentPaths, type AgentConfig } from './config.ts';
import { excludePatterns, makeExcluder, type Excluder } from '../protocol/excludes.ts';
import { startZstd } from './compress.ts';
import { tryLock } from './lock.ts';
import { join } from 'node:path';
import { SETTLE_MS, SnapshotRestart, syncFilesystem, writeSnapshot, type SnapshotResult } from './snapshot.ts';
import { cleanTemps, discardTemp, finishSpool, newPushKey, newSpoolId, openSpoolTemp, type SpoolMeta } from './spool.ts';
import { bootKeyOf, loadPushedPaths, savePushedPaths } from './state.ts';
import { statSync } from 'node:fs';

export interface CommitOptions {
  message: string;
  log?: (msg: string) => void;
}

export interface CommitResult {
  meta: SpoolMeta;
  snapshot: SnapshotResult;
}

export function excluderFor(cfg: AgentConfig): Excluder {
  return makeExcluder(
    excludePatterns({
      ...(cfg.excludes ? { excludes: cfg.excludes } : {}),
      extraExcludes: cfg.extraExcludes,
      includeHostKeys: cfg.includeHostKeys,
      agentPaths: agentPaths(cfg),
      upper: cfg.upper,
    }),
  );
}

export function requireBoot(cfg: AgentConfig): { profile: string; bootCommit: string } {
  if (!cfg.profile)
    throw new StrataError(
      'E_BAD_ARGUMENT',
      'no profile known: boot with strata.profile=NAME, or pass --profile NAME, or set "profile" in the agent config',
    );
  if (!cfg.bootCommit) {
    throw new StrataError(
      'E_BAD_ARGUMENT',
      'the booted commit is unknown (no /run/strata/commit, no strata.commit on the kernel command line): pass --parent COMMIT',
    );
  }
  return { profile: cfg.profile, bootCommit: cfg.bootCommit };
}

export async function commitToSpool(cfg: AgentConfig, o: CommitOptions): Promise<CommitResult> {
  const { profile, bootCommit } = requireBoot(cfg);
  try {
    if (!statSync(cfg.upper).isDirectory()) throw new Error('not a directory');
  } catch {
    throw new StrataError('E_BAD_ARGUMENT', `the upper directory ${cfg.upper} does not exist; pass --upper DIR`);
  }
  const lock = tryLock(join(cfg.stateDir, 'commit.lock'));
  if (!lock) throw new StrataError('E_LOCKED', 'another commit is running; wait for it and try again');
  try {
    cleanTemps(cfg.spoolDir);
    const bootKey = bootKeyOf(bootCommit);
    const pushed = loadPushedPaths(cfg.stateDir, bootKey);
    const exclude = excluderFor(cfg);
    await syncFilesystem(cfg.upper);

    for (let attempt = 0; ; attempt++) {
      const id = newSpoolId();
      const tmp = openSpoolTemp(cfg.spoolDir, id);
      let fd: number | null = tmp.fd;
      const z = startZstd(cfg.zstdLevel, cfg.zstdThreads, tmp.fd);
      try {
        const snapshot = await writeSnapshot(
          {
            upper: cfg.upper,
            exclude,
            xattrs: cfg.xattrs,
            unstableRetries: cfg.unstableRetries,
            pushedPaths: new Set(pushed.paths),
            ...(o.log ? { log: o.log } : {}),
          },
          z.input,
        );
        await z.done;
        if (snapshot.paths.length <= 1) {
          throw new StrataError('E_NOTHING_TO_DO', `nothing to commit: ${cfg.upper} holds no changes`);
        }
        if (pushed.fingerprint === snapshot.fingerprint) {
          throw new StrataError('E_NOTHING_TO_DO', 'nothing to commit: nothing changed since the last commit');
        }
        const meta: SpoolMeta = {
          id,
          profile,
          bootCommit,
          bootKey,
          // One key per queued push, fixed now: every resend of this entry is the same push to the server.
          pushKey: newPushKey(),
          message: o.message,
          createdAt: new Date().toISOString(),
          bytes: statSync(tmp.path).size,
          entries: snapshot.entries,
          fileBytes: snapshot.fileBytes,
        };
        // Record the paths before the archive becomes visible: an extra path
        // only costs a harmless whiteout later, a missing one a resurrected file.
        const all = new Set(pushed.paths);
        for (const p of snapshot.paths) if (p !== '') all.add(p);
        savePushedPaths(cfg.stateDir, { bootKey, paths: [...all].sort(), fingerprint: snapshot.fingerprint });
        finishSpool(cfg.spoolDir, meta, tmp.fd, tmp.path);
        fd = null;
        for (const w of snapshot.warnings) o.log?.(`warning: ${w}`);
        return { meta, snapshot };
      } catch (e) {
        z.kill();
        await z.done.catch(() => {});
        discardTemp(fd, tmp.path);
        if (e instanceof SnapshotRestart && attempt < cfg.unstableRetries) {
          o.log?.(`${e.message}; taking the snapshot again`);
          // Give the writer time to finish (a file must be SETTLE_MS old to be read).
          await new Promise((r) => setTimeout(r, SETTLE_MS));
          continue;
        }
        if (e instanceof SnapshotRestart) {
          throw new StrataError(
            'E_BAD_SOURCE',
            `${e.path} kept changing while it was being read; commit refused so that no torn file lands in a layer. Stop the program writing it, or exclude it, and commit again.`,
            { unstable: e.path },
          );
        }
        throw e;
      }
    }
  } finally {
    lock.release();
  }
}
