/**
 * Sends spooled pushes, oldest first, one at a time, with retries (backoff +
 * jitter) while the server is unreachable. Exactly once: the push id is
 * recorded (fsynced) before the spool entry is deleted, and only one sender
 * runs at a time (lock file). The window where the server stored the archive
 * but the connection died before its answer reached us is closed by the push
 * key: every send of one spool entry carries the entry's key, and the server
 * answers a key it already stored with that push's id instead of storing the
 * archive again.
 *
 * Stacking: a later push of the same boot goes onto the commit the earlier
 * push became, so the sender first waits (bounded) for earlier pushes to be
 * committed or rejected.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentConfig } from './config.ts';
import { requireSsh } from './config.ts';
import { lockOwner, tryLock } from './lock.ts';
import { backoffDelay, withRetries } from './queue.ts';
import { archivePath, ensurePushKey, listSpool, moveToFailed, removeSpool, type SpoolMeta } from './spool.ts';
import { loadPrivateKey, pushArchive, queryStatus, RefusedError, type SshTarget } from './ssh-push.ts';
import type { PushStatus } from '../protocol/ssh-push.ts';
import { loadState, tipOf, updateState, type PushRecord } from './state.ts';
import { StrataError } from '../store/errors.ts';

export interface SendOptions {
  /** Retry unreachable servers forever (background sender) or give up after `attempts`. */
  attempts: number;
  log: (msg: string) => void;
  /** How long to wait for an earlier push of the same boot to be committed. */
  statusWaitMs?: number;
  signal?: AbortSignal;
}

export interface SendReport {
  sent: PushRecord[];
  refused: string[];
  /** Entries still in the spool when the sender stopped. */
  pending: number;
}

export const sendLockPath = (cfg: AgentConfig) => join(cfg.spoolDir, 'send.lock');

/** The pid of the running sender, if any. */
export function senderPid(cfg: AgentConfig): number | null {
  return lockOwner(sendLockPath(cfg));
}

/** SSH target with the server's host key pinned (config) or trusted on first use (state). */
export function makeTarget(cfg: AgentConfig): SshTarget {
  const { host, port } = requireSsh(cfg);
  const hostport = `${host}:${port}`;
  const pinned = cfg.hostKey
    ?.trim()
    .split(/\s+/)
    .find((w) => /^AAAA/.test(w));
  return {
    host,
    port,
    username: cfg.sshUser,
    privateKey: loadPrivateKey(cfg.key),
    verifyHostKey: (key: Buffer) => {
      const b64 = key.toString('base64');
      if (pinned) return b64 === pinned;
      const known = loadState(cfg.stateDir).hostKeys[hostport];
      if (known) return known === b64;
      updateState(cfg.stateDir, (s) => {
        s.hostKeys[hostport] = b64;
      });
      return true;
    },
  };
}

const terminal = (s?: string) => s === 'committed' || s === 'rejected';

function applyStatus(rec: PushRecord, st: PushStatus): void {
  if (st.state === 'unknown') return;
  rec.status = st.state;
  if (st.state === 'committed') {
    rec.commit = st.commit;
    if (st.branch) rec.branch = st.branch;
  }
  if (st.state === 'rejected') rec.why = st.why;
}

/** Refreshes the recorded status of the given pushes (callers hold the send lock, or accept a lost update). */
export async function refreshStatuses(_cfg: AgentConfig, target: SshTarget, pushIds: string[]): Promise<Map<string, PushStatus>> {
  const out = new Map<string, PushStatus>();
  for (const id of pushIds) out.set(id, await queryStatus(target, id));
  return out;
}

async function waitForEarlier(cfg: AgentConfig, target: SshTarget, entry: SpoolMeta, o: SendOptions): Promise<void> {
  const deadline = Date.now() + (o.statusWaitMs ?? 600_000);
  let failures = 0;
  for (let attempt = 0; ; attempt++) {
    const open = loadState(cfg.stateDir).pushes.filter((p) => p.bootKey === entry.bootKey && !terminal(p.status));
    if (open.length === 0) return;
    for (const p of open) {
      try {
        const st = await queryStatus(target, p.pushId);
        updateState(cfg.stateDir, (s) => {
          const rec = s.pushes.find((r) => r.pushId === p.pushId);
          if (rec) applyStatus(rec, st);
        });
      } catch (e) {
        o.log(`status of push ${p.pushId}: ${(e as Error).message}`);
        if (e instanceof StrataError || ++failures >= o.attempts) throw e;
      }
    }
    if (loadState(cfg.stateDir).pushes.every((p) => p.bootKey !== entry.bootKey || terminal(p.status))) return;
    if (Date.now() > deadline) {
      o.log(`earlier pushes are still not committed; sending ${entry.id} on the last known commit`);
      return;
    }
    await sleep(
      Math.max(200, backoffDelay(attempt, { baseMs: 500, maxMs: 15_000 })),
      undefined,
      o.signal ? { signal: o.signal } : undefined,
    );
  }
}

async function sendOne(cfg: AgentConfig, target: SshTarget, entry: SpoolMeta, o: SendOptions, report: SendReport): Promise<void> {
  if (loadState(cfg.stateDir).pushes.some((p) => p.spoolId === entry.id)) {
    // Sent and recorded, then the agent died before it deleted the entry.
    removeSpool(cfg.spoolDir, entry.id);
    return;
  }
  await waitForEarlier(cfg, target, entry, o);
  const parent = tipOf(loadState(cfg.stateDir), entry.bootKey) ?? entry.bootCommit;
  const pushKey = ensurePushKey(cfg.spoolDir, entry);
  try {
    const pushId = await withRetries(
      () => pushArchive(target, archivePath(cfg.spoolDir, entry.id), { profile: entry.profile, parent, message: entry.message, pushKey }),
      {
        baseMs: cfg.retryBaseMs,
        maxMs: cfg.retryMaxMs,
        attempts: o.attempts,
        isPermanent: (e) => e instanceof RefusedError || (e instanceof StrataError && e.code === 'E_UNAUTHORIZED'),
        onRetry: (e, attempt, delay) =>
          o.log(`push ${entry.id} failed (${(e as Error).message}); retry ${attempt + 1} in ${Math.round(delay / 1000)} s`),
        ...(o.signal ? { signal: o.signal } : {}),
      },
    );
    const rec: PushRecord = {
      spoolId: entry.id,
      pushId,
      profile: entry.profile,
      parent,
      bootKey: entry.bootKey,
      pushKey,
      message: entry.message,
      sentAt: new Date().toISOString(),
      bytes: entry.bytes,
      status: 'queued',
    };
    // Record first, then delete: a crash in between must not send it again.
    updateState(cfg.stateDir, (s) => {
      s.pushes.push(rec);
    });
    removeSpool(cfg.spoolDir, entry.id);
    report.sent.push(rec);
    o.log(`sent ${entry.id} as push ${pushId}`);
  } catch (e) {
    if (!(e instanceof RefusedError)) throw e;
    updateState(cfg.stateDir, (s) => {
      s.failed.push({ spoolId: entry.id, profile: entry.profile, message: entry.message, reason: e.message, at: new Date().toISOString() });
    });
    moveToFailed(cfg.spoolDir, entry.id);
    report.refused.push(entry.id);
    o.log(`push ${entry.id} refused: ${e.message} (archive kept in ${join(cfg.spoolDir, 'failed')}; send --retry-failed sends it again)`);
  }
}

/**
 * Sends everything in the spool. Returns null when another sender is running
 * (it will pick up new entries: it re-reads the spool before it stops).
 */
export async function sendPending(cfg: AgentConfig, o: SendOptions): Promise<SendReport | null> {
  const report: SendReport = { sent: [], refused: [], pending: 0 };
  for (;;) {
    const lock = tryLock(sendLockPath(cfg));
    if (!lock) return report.sent.length || report.refused.length ? report : null;
    try {
      let entries = listSpool(cfg.spoolDir);
      if (entries.length === 0) return report;
      const target = makeTarget(cfg);
      while (entries.length) {
        for (const entry of entries) await sendOne(cfg, target, entry, o, report);
        entries = listSpool(cfg.spoolDir);
      }
    } catch (e) {
      report.pending = listSpool(cfg.spoolDir).length;
      o.log(`sending stopped: ${(e as Error).message}`);
      return report;
    } finally {
      lock.release();
    }
    // An entry spooled right after our last look, while we still held the lock:
    // the loop takes the lock again and sends it.
    if (listSpool(cfg.spoolDir).length === 0) return report;
  }
}
