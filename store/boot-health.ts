/**
 * Boot health and automatic fallback. A boot is *good* when the booted
 * system reports healthy (the client kit's check: client-agent/kit/health.sh)
 * within healthTimeoutMs of being served. A served boot with no report by the
 * time the client asks to boot again counts as failed, as does a report of
 * failure or one that comes too late. When a client asks to boot a commit
 * that failed healthMaxFailures times in a row on it, the boot route serves
 * its last good commit instead (the decision: holdBack in store/boot-plan.ts)
 * and records why, until the assignment names another commit or an admin
 * clears the client (`strata clients clear MAC`).
 *
 * The decisions here (settle, judgeReport) are pure; bootClient and
 * reportBootHealth apply them in one transaction each. Rows:
 * store/tables/boot-health.ts (migration 5 in store/db.ts).
 */
import { normalizeMac } from '../protocol/ids.ts';
import { bootFacts, planBoot, type BootPlan } from './boot-plan.ts';
import { inTransaction, type StoreCore } from './core.ts';
import { StrataError } from './errors.ts';
import { getProfile } from './profiles.ts';
import type { FailureRow, HealthRow } from './tables/boot-health.ts';

export type { FailureRow, HealthRow } from './tables/boot-health.ts';

/** A client's health as `strata clients` and GET /v1/clients show it. */
export interface ClientHealth {
  lastGood: string | null;
  /** The boot served and still waiting for its report. */
  pending: { commit: string; since: number } | null;
  lastReport: HealthRow['lastReport'];
  /** Non-null while the client is served its last good commit instead of `commit`. */
  heldBack: HealthRow['held'];
  /** Commits that failed to come up healthy on this client, with the count in a row. */
  failures: FailureRow[];
}

export interface HealthReport {
  mac: string;
  commit: string;
  ok: boolean;
  reason: string;
}

/** What a served boot that never reported means once the client asks to boot again (pure). */
export function settle(row: HealthRow | undefined): { commit: string; reason: string } | null {
  if (!row?.pending) return null;
  return { commit: row.pending.commit, reason: 'no health report came before the client asked to boot again' };
}

export type Verdict =
  | { kind: 'good'; commit: string }
  | { kind: 'bad'; commit: string; reason: string }
  /** A repeat of the report that settled the last boot (its answer was lost): nothing changes. */
  | { kind: 'repeat'; commit: string; ok: boolean };

/**
 * Judges a health report against what the server served this client (pure).
 * Refused: a MAC this server never served a boot, a commit other than the one
 * it served (a forged or stale report). A report later than timeoutMs is a
 * failed boot whatever it says.
 */
export function judgeReport(row: HealthRow | undefined, r: HealthReport, now: number, timeoutMs: number): Verdict {
  if (!row || (!row.pending && !row.lastReport))
    throw new StrataError('E_FORBIDDEN', `boot health report from ${r.mac}, a machine this server never served a boot; refused`);
  if (!row.pending || row.pending.commit !== r.commit) {
    const last = row.lastReport;
    if (!row.pending && last && last.commit === r.commit && last.ok === r.ok) return { kind: 'repeat', commit: r.commit, ok: r.ok };
    throw new StrataError(
      'E_FORBIDDEN',
      `boot health report from ${r.mac} names commit ${r.commit.slice(0, 12)}, which is not the boot this server served it${
        row.pending ? ` (${row.pending.commit.slice(0, 12)})` : ''
      }; refused`,
    );
  }
  if (now - row.pending.since > timeoutMs)
    return {
      kind: 'bad',
      commit: r.commit,
      reason: `the health report came ${Math.round((now - row.pending.since) / 1000)} s after the boot, later than the ${Math.round(timeoutMs / 1000)} s allowed`,
    };
  return r.ok ? { kind: 'good', commit: r.commit } : { kind: 'bad', commit: r.commit, reason: r.reason || 'the health check failed' };
}

/**
 * A client asks to boot: the boot it was served last and never reported on
 * counts as failed; then the plan (held back or not), and the served commit
 * awaits its report. One transaction, so two racing requests count once.
 */
export function bootClient(
  core: StoreCore,
  mac: string | null,
  ip: string | null,
  serverUrl: string,
  onUnrecorded: (e: unknown) => void = () => {},
  now = Date.now(),
): BootPlan {
  try {
    return settleAndPlan(core, mac, ip, serverUrl, now);
  } catch (e) {
    // A boot answer never depends on a write (a full disk, a locked
    // database): plan from what is stored, without settling or recording.
    // The next boot settles this one's health; a lost pending record only
    // means this boot is not counted. The caller logs why, so an admin
    // whose boot health stops counting sees the reason.
    onUnrecorded(e);
    return planBoot(bootFacts(core, mac, ip, serverUrl));
  }
}

function settleAndPlan(core: StoreCore, mac: string | null, ip: string | null, serverUrl: string, now: number): BootPlan {
  return inTransaction(core, () => {
    const t = core.t.bootHealth;
    if (mac) {
      const failed = settle(t.get(mac));
      if (failed) {
        t.addFailure(mac, failed.commit, failed.reason, now);
        t.setLastReport(mac, { commit: failed.commit, ok: false, reason: failed.reason, at: now });
        t.setPending(mac, null);
      }
    }
    const plan = planBoot(bootFacts(core, mac, ip, serverUrl));
    if (mac && plan.kind === 'boot') {
      t.setPending(mac, { commit: plan.commit, since: now });
      const h = plan.heldBack;
      const was = t.get(mac)?.held;
      t.setHeld(
        mac,
        h ? { commit: h.commit, served: plan.commit, reason: h.reason, since: was?.commit === h.commit ? was.since : now } : null,
      );
    }
    return plan;
  });
}

/** Checks a report's body (pure); bad input is E_BAD_ARGUMENT. */
export function parseHealthReport(body: unknown): HealthReport {
  const b = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
  const mac = normalizeMac(typeof b.mac === 'string' ? b.mac : undefined);
  if (!mac) throw new StrataError('E_BAD_ARGUMENT', `boot health: "mac" must look like 52:54:00:12:34:56, not ${JSON.stringify(b.mac)}`);
  const commit = typeof b.commit === 'string' ? b.commit : '';
  if (!/^[0-9a-f]{64}$/.test(commit))
    throw new StrataError('E_BAD_ARGUMENT', 'boot health: "commit" must be the 64-digit id the client booted');
  if (typeof b.ok !== 'boolean') throw new StrataError('E_BAD_ARGUMENT', 'boot health: "ok" must be true or false');
  const reason =
    typeof b.reason === 'string'
      ? b.reason
          .replace(/[\x00-\x1f]+/g, ' ')
          .trim()
          .slice(0, 500)
      : '';
  return { mac, commit, ok: b.ok, reason };
}

/** Records a health report (refusing forged or unknown ones); the verdict. */
export function reportBootHealth(core: StoreCore, r: HealthReport, now = Date.now()): Verdict {
  return inTransaction(core, () => {
    const t = core.t.bootHealth;
    const v = judgeReport(t.get(r.mac), r, now, core.config.healthTimeoutMs);
    if (v.kind === 'repeat') return v;
    t.setPending(r.mac, null);
    if (v.kind === 'good') {
      t.resetFailures(r.mac, v.commit);
      t.setLastGood(r.mac, v.commit, now);
      t.setLastReport(r.mac, { commit: v.commit, ok: true, reason: '', at: now });
    } else {
      t.addFailure(r.mac, v.commit, v.reason, now);
      t.setLastReport(r.mac, { commit: v.commit, ok: false, reason: v.reason, at: now });
    }
    return v;
  });
}

export function clientHealth(core: StoreCore, mac: string): ClientHealth {
  const row = core.t.bootHealth.get(mac);
  return {
    lastGood: row?.lastGood?.commit ?? null,
    pending: row?.pending ?? null,
    lastReport: row?.lastReport ?? null,
    heldBack: row?.held ?? null,
    failures: core.t.bootHealth.failures(mac),
  };
}

/** `strata clients clear MAC`: forgets MAC's failed boots, so its next boot tries its assignment's commit again. */
export function clearClientHealth(core: StoreCore, macText: string): { mac: string; cleared: boolean } {
  const mac = normalizeMac(macText);
  if (!mac) throw new StrataError('E_BAD_ARGUMENT', `"${macText}" is not a MAC address (aa:bb:cc:dd:ee:ff)`);
  if (!core.t.clients.all().some((c) => c.mac === mac) && !core.t.bootHealth.get(mac))
    throw new StrataError('E_NOT_FOUND', `no client ${mac} has booted from this server (strata clients lists them)`);
  return { mac, cleared: inTransaction(core, () => core.t.bootHealth.clear(mac)) };
}

/** The extra health check command of PROFILE (null: the kit's default checks only). */
export function healthCheck(core: StoreCore, profile: string): string | null {
  getProfile(core, profile);
  return core.t.bootHealth.healthCheck(profile);
}

/** Sets PROFILE's extra health check ("" or "none" removes it). */
export function setHealthCheck(core: StoreCore, profile: string, command: string): string | null {
  getProfile(core, profile);
  const cmd = command.trim();
  if (/[\x00-\x08\x0a-\x1f]/.test(cmd))
    throw new StrataError('E_BAD_ARGUMENT', 'the health check is one line of shell (no newlines or control characters)');
  if (cmd.length > 4096) throw new StrataError('E_BAD_ARGUMENT', 'the health check is longer than 4096 characters');
  const value = cmd === '' || cmd === 'none' ? null : cmd;
  core.t.bootHealth.setHealthCheck(profile, value);
  return value;
}
