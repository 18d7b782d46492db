/**
 * SSH pushes: recorded when their archive is durable in incoming/, then
 * landed (baked, committed) by the baker exactly once.
 */
import { existsSync, promises as fsp } from 'node:fs';
import { bakeTar, type BakedImage, type TarPolicy } from './bake.ts';
import { bakeOptions, commitAgainstHead, layerOf, registerBaked } from './commit-write.ts';
import type { StoreCore } from './core.ts';
import { PUSH_KEY, SAFE_PUSH_ID } from '../protocol/ids.ts';
import { incomingArchive } from '../protocol/push-incoming.ts';
import { isUniqueViolation } from './db.ts';
import { isStrataError, meaningOf, StrataError } from './errors.ts';
import { getProfile } from './profiles.ts';
import { getCommit, inProfileHistory, resolve } from './revisions.ts';
import type { Profile, Push } from './types.ts';

export function pushArchivePath(core: StoreCore, id: string): string {
  if (!SAFE_PUSH_ID.test(id)) throw new StrataError('E_BAD_ARGUMENT', `not a push id: ${id}`);
  return incomingArchive(core.incomingDir, id);
}

export function getPush(core: StoreCore, id: string): Push {
  const p = core.t.pushes.get(id);
  if (!p) throw new StrataError('E_NOT_FOUND', `no push ${id}`);
  return p;
}

/**
 * The parent a push names, resolved: it must be a commit of the pushed
 * profile's history (made in it, or reachable from its branches and tags).
 * Any other revision, e.g. another profile's commit the key may not read, is
 * refused with the same words as one that does not exist (no probing).
 */
export function pushParent(core: StoreCore, profile: string, rev: string): string {
  const refuse = () =>
    new StrataError(
      'E_COMMIT_NOT_FOUND',
      `--parent ${rev.slice(0, 80)}: no such commit in the history of profile ${profile}; the parent is the commit the client booted (strata log ${profile} lists them)`,
      { profile },
    );
  let id: string;
  try {
    id = resolve(core, rev);
  } catch (e) {
    if (e instanceof StrataError && (e.code === 'E_COMMIT_NOT_FOUND' || e.code === 'E_AMBIGUOUS_REF')) throw refuse();
    throw e;
  }
  if (inProfileHistory(core, profile, id)) return id;
  throw refuse();
}

/**
 * Records a push whose archive is already fsynced at incoming/<id>.tar.zst.
 * With a `pushKey` (client-chosen idempotency key), a push already stored
 * under the same (author, profile, key) wins: it is returned and nothing is
 * inserted, so the caller sees an id other than its own and must drop its
 * archive. The unique index decides, so two concurrent uploads with one key
 * still make one push.
 */
export function createPush(
  core: StoreCore,
  p: { id: string; profile: string; parent: string; message: string; author: string; bytes: number; pushKey?: string | null },
): Push {
  pushArchivePath(core, p.id);
  const pushKey = p.pushKey ?? null;
  if (pushKey !== null && !PUSH_KEY.test(pushKey))
    throw new StrataError('E_BAD_ARGUMENT', `not a push key: ${JSON.stringify(pushKey)} (16-64 characters of A-Z a-z 0-9 _ -)`);
  try {
    core.t.pushes.insert({ ...p, pushKey }, Date.now());
  } catch (e) {
    const existing = pushKey === null ? undefined : core.t.pushes.byKey(p.author, p.profile, pushKey);
    if (existing && isUniqueViolation(e)) return existing;
    throw e;
  }
  return getPush(core, p.id);
}

/**
 * Whether a failed bake may succeed later without anything about the push
 * changing: the machine's fault (a tool missing, a full disk, an I/O error,
 * a busy database), not the pusher's. Such a push stays queued with its
 * archive (up to maxBakeAttempts times); any other error (bad tar, unsafe
 * path, too large, and also a RangeError or a bug the archive provoked)
 * rejects it with its reason: retrying the same archive would fail the same
 * way, forever.
 */
export function isTransientBakeError(e: unknown): boolean {
  if (!isStrataError(e)) return isIoShaped(e);
  // Another writer kept moving the head (commitAgainstHead gave up): the next try decides afresh.
  if (e.code === 'E_STALE_PARENT') return true;
  // The error table says which codes are the machine's (E_NO_SPACE, E_UNAVAILABLE...).
  return meaningOf(e.code).transient || e.details.transient === true;
}

/** A raw error from the system or the database: an errno (ENOSPC, EIO, EMFILE...) or a busy, full or failing SQLite. */
function isIoShaped(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  // Node's own errors (ERR_...) are about arguments, not the machine.
  return /^E[A-Z0-9]+$/.test(code) || /^SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|NOMEM)/.test(code);
}

/**
 * Bakes a queued push into a layer and a commit, exactly once: the commit,
 * the ref move and the push's 'committed' state are one transaction, and a
 * push already committed or rejected is returned as it is. The archive is
 * deleted only after that transaction (a crash before it re-bakes; baking
 * is deterministic so the commit is the same). A transient failure
 * (isTransientBakeError) throws and leaves the push queued with its archive.
 */
export async function landPush(core: StoreCore, id: string): Promise<Push> {
  const push = getPush(core, id);
  if (push.state === 'committed' || push.state === 'rejected') return push;
  const archive = pushArchivePath(core, id);
  const reject = async (reason: string) => {
    core.t.pushes.reject(id, reason);
    await fsp.rm(archive, { force: true });
    return getPush(core, id);
  };
  if (!existsSync(archive)) return reject('the pushed archive is missing from incoming/');
  // Counted before the bake starts, so a bake that kills the process (out of
  // memory, say) counts as well and a crash loop ends after maxBakeAttempts.
  const max = core.config.maxBakeAttempts;
  const attempt = core.t.pushes.startAttempt(id) ?? push.attempts;
  if (attempt > max)
    return reject(
      `gave up after ${max} bake attempts that failed or never finished (last: ${push.lastError ?? 'the server stopped during the bake'})`,
    );
  /** A failure of this attempt: rethrown when it may pass (the push stays queued), else the push is rejected with it. */
  const failed = (e: unknown): Promise<Push> => {
    const why = (e as Error)?.message ?? String(e);
    if (!isTransientBakeError(e)) return reject(why);
    core.t.pushes.setLastError(id, why);
    if (attempt >= max) return reject(`the bake failed ${attempt} times for a reason that may pass; giving up (last: ${why})`);
    throw e;
  };
  let baked: BakedImage;
  let profile: Profile;
  try {
    profile = getProfile(core, push.profile);
    getCommit(core, push.parent);
    const key = core.t.keys.get(push.author);
    // Devices other than whiteouts come only from admins: a client's
    // /dev is devtmpfs, so a device node in a pushed layer is unexpected.
    // setuid files and capabilities are allowed: a key that may push to a
    // profile can already change anything in it (sudo is setuid).
    const policy: TarPolicy = { allowDevices: !!key?.admin, allowSetuid: true, allowCapabilities: true };
    // Crash tests: what an unexpected error in the bake (a bug, a RangeError) does. Unset in production.
    if (process.env.STRATA_FAULT === 'bake-throw') throw new RangeError('Invalid string length (STRATA_FAULT=bake-throw)');
    baked = await bakeTar(archive, bakeOptions(core, profile, policy));
  } catch (e) {
    return failed(e); // transient: left queued, the baker retries
  }
  const layer = await registerBaked(core, baked);
  const newLayer = layerOf(baked, layer, 'layer', profile);
  try {
    await commitAgainstHead(
      core,
      () => getProfile(core, push.profile).head!,
      push.parent,
      baked.entries,
      (head, decision) => {
        // A conflicting push is not lost: it lands on a branch of its own.
        const parentCommit = getCommit(core, decision.kind === 'onto' ? decision.onto : push.parent);
        const onBranch = decision.kind === 'conflict' ? `${push.profile}/push-${id}` : null;
        return {
          profile: push.profile,
          ref: onBranch ?? push.profile,
          expectedHead: onBranch ? null : head,
          parent: parentCommit.id,
          mergeParent: decision.kind === 'onto' && decision.onto !== push.parent ? push.parent : null,
          layers: [...parentCommit.manifest.layers, layer],
          kernel: parentCommit.manifest.kernel,
          initrd: parentCommit.manifest.initrd,
          message: push.message || `push ${id}`,
          author: push.author,
          kind: 'push',
          addedLayer: layer.digest,
          newLayer,
          action: 'push',
          also: (commitId) => {
            const why =
              decision.kind === 'conflict' ? `conflicts with ${push.profile} on: ${decision.paths.slice(0, 10).join(', ')}` : null;
            // Another process landed it first: undo everything in this transaction.
            if (!core.t.pushes.commit(id, commitId, onBranch, why))
              throw new StrataError('E_NOTHING_TO_DO', `push ${id} is already ${getPush(core, id).state}`);
          },
        };
      },
    );
  } catch (e) {
    // E_NOTHING_TO_DO: another process landed it. Otherwise, e.g. E_CHAIN_TOO_LONG,
    // E_REF_EXISTS or E_BAD_SOURCE (the pushed tree's kernel cannot run the hook, store/commit-boot.ts):
    // rejected with the reason, or retried when it may pass.
    if ((e as StrataError).code !== 'E_NOTHING_TO_DO') return failed(e);
  }
  await fsp.rm(archive, { force: true });
  return getPush(core, id);
}

/**
 * An admin's verdict on a push that waits or keeps failing (`strata push
 * reject ID`): rejected with the reason, its archive deleted. A bake in
 * progress then finds the push no longer pending and commits nothing (the
 * commit's transaction moves only a pending push). A push already committed
 * or rejected is E_NOTHING_TO_DO.
 */
export async function rejectPush(core: StoreCore, id: string, reason: string): Promise<Push> {
  const archive = pushArchivePath(core, id);
  getPush(core, id);
  core.t.pushes.reject(id, reason);
  const p = getPush(core, id);
  if (p.state !== 'rejected' || p.reason !== reason) throw new StrataError('E_NOTHING_TO_DO', `push ${id} is already ${p.state}`);
  await fsp.rm(archive, { force: true });
  return p;
}
