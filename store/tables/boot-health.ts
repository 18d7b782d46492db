/**
 * SQL for boot health (store/boot-health.ts): per client the boot awaiting
 * its health report, the last good commit, the last report and the
 * held-back state; per (client, commit) the failed boots in a row; per
 * profile the extra health check command.
 */
import type { DB } from '../db.ts';

export interface HealthRow {
  mac: string;
  /** The commit the last boot was served, while no health report has come for it. */
  pending: { commit: string; since: number } | null;
  lastGood: { commit: string; at: number } | null;
  lastReport: { commit: string; ok: boolean; reason: string; at: number } | null;
  /** Set while the boot route serves the last good commit instead of `commit`. */
  held: { commit: string; served: string; reason: string; since: number } | null;
}

export interface FailureRow {
  commit: string;
  count: number;
  reason: string;
  at: number;
}

type Raw = Record<string, string | number | null>;

export class BootHealthTable {
  constructor(private readonly db: DB) {}

  get(mac: string): HealthRow | undefined {
    const r = this.db.prepare('SELECT * FROM boot_health WHERE mac = ?').get(mac) as Raw | undefined;
    if (!r) return undefined;
    return {
      mac,
      pending: r.pending_commit ? { commit: r.pending_commit as string, since: r.pending_since as number } : null,
      lastGood: r.last_good ? { commit: r.last_good as string, at: r.last_good_at as number } : null,
      lastReport: r.report_commit
        ? { commit: r.report_commit as string, ok: r.report_ok === 1, reason: (r.report_reason as string) ?? '', at: r.report_at as number }
        : null,
      held: r.held_commit
        ? {
            commit: r.held_commit as string,
            served: r.held_served as string,
            reason: r.held_reason as string,
            since: r.held_since as number,
          }
        : null,
    };
  }

  private ensure(mac: string): void {
    this.db.prepare('INSERT OR IGNORE INTO boot_health (mac) VALUES (?)').run(mac);
  }

  setPending(mac: string, p: { commit: string; since: number } | null): void {
    this.ensure(mac);
    this.db
      .prepare('UPDATE boot_health SET pending_commit = ?, pending_since = ? WHERE mac = ?')
      .run(p?.commit ?? null, p?.since ?? null, mac);
  }

  setLastGood(mac: string, commit: string, at: number): void {
    this.ensure(mac);
    this.db.prepare('UPDATE boot_health SET last_good = ?, last_good_at = ? WHERE mac = ?').run(commit, at, mac);
  }

  setLastReport(mac: string, r: { commit: string; ok: boolean; reason: string; at: number }): void {
    this.ensure(mac);
    this.db
      .prepare('UPDATE boot_health SET report_commit = ?, report_ok = ?, report_reason = ?, report_at = ? WHERE mac = ?')
      .run(r.commit, r.ok ? 1 : 0, r.reason, r.at, mac);
  }

  setHeld(mac: string, h: HealthRow['held']): void {
    this.ensure(mac);
    this.db
      .prepare('UPDATE boot_health SET held_commit = ?, held_served = ?, held_reason = ?, held_since = ? WHERE mac = ?')
      .run(h?.commit ?? null, h?.served ?? null, h?.reason ?? null, h?.since ?? null, mac);
  }

  failures(mac: string): FailureRow[] {
    return (this.db.prepare('SELECT commit_id, count, reason, at FROM boot_failures WHERE mac = ? ORDER BY at DESC').all(mac) as Raw[]).map(
      (r) => ({ commit: r.commit_id as string, count: r.count as number, reason: r.reason as string, at: r.at as number }),
    );
  }

  /** One more failed boot of COMMIT in a row; the new count. */
  addFailure(mac: string, commit: string, reason: string, at: number): number {
    this.db
      .prepare(
        `INSERT INTO boot_failures (mac, commit_id, count, reason, at) VALUES (?, ?, 1, ?, ?)
         ON CONFLICT(mac, commit_id) DO UPDATE SET count = boot_failures.count + 1, reason = excluded.reason, at = excluded.at`,
      )
      .run(mac, commit, reason, at);
    return (this.db.prepare('SELECT count FROM boot_failures WHERE mac = ? AND commit_id = ?').get(mac, commit) as { count: number }).count;
  }

  resetFailures(mac: string, commit: string): void {
    this.db.prepare('DELETE FROM boot_failures WHERE mac = ? AND commit_id = ?').run(mac, commit);
  }

  /** Forgets every failed boot and the held-back state of MAC; false when there was nothing to forget. */
  clear(mac: string): boolean {
    const n = this.db.prepare('DELETE FROM boot_failures WHERE mac = ?').run(mac).changes;
    const h = this.db
      .prepare(
        'UPDATE boot_health SET held_commit = NULL, held_served = NULL, held_reason = NULL, held_since = NULL WHERE mac = ? AND held_commit IS NOT NULL',
      )
      .run(mac).changes;
    return n + h > 0;
  }

  healthCheck(profile: string): string | null {
    const r = this.db.prepare('SELECT command FROM health_checks WHERE profile = ?').get(profile) as { command: string } | undefined;
    return r?.command ?? null;
  }

  setHealthCheck(profile: string, command: string | null): void {
    if (command === null) this.db.prepare('DELETE FROM health_checks WHERE profile = ?').run(profile);
    else
      this.db
        .prepare('INSERT INTO health_checks (profile, command) VALUES (?, ?) ON CONFLICT(profile) DO UPDATE SET command = excluded.command')
        .run(profile, command);
  }
}
