/** SQL for what decides and records boots: assignments and client leases. */
import type { DB } from '../db.ts';
import type { Assignment, ClientLease } from '../types.ts';

export class AssignmentsTable {
  constructor(private readonly db: DB) {}

  upsert(a: Assignment): void {
    this.db
      .prepare(`INSERT INTO assignments (match, kind, profile, pin, cmdline) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT(match) DO UPDATE SET kind = excluded.kind, profile = excluded.profile, pin = excluded.pin, cmdline = excluded.cmdline`)
      .run(a.match, a.kind, a.profile, a.pin, a.cmdline);
  }

  /** false when there was none. */
  remove(match: string): boolean {
    return this.db.prepare('DELETE FROM assignments WHERE match = ?').run(match).changes > 0;
  }

  all(): Assignment[] {
    return this.db.prepare('SELECT match, kind, profile, pin, cmdline FROM assignments ORDER BY kind, match').all() as Assignment[];
  }
}

export interface ClientSeen {
  mac: string;
  ip: string;
  commit: string | null;
  profile: string | null;
  now: number;
  boot: boolean;
  assignment: string | null;
}

export class ClientsTable {
  constructor(private readonly db: DB) {}

  /** A boot or heartbeat: what it did not say (commit, profile, ...) stays as it was. */
  record(c: ClientSeen): void {
    this.db
      .prepare(`INSERT INTO clients (mac, ip, commit_id, profile, last_seen, last_boot, assignment) VALUES (@mac, @ip, @commit, @profile, @now, @boot, @assignment)
      ON CONFLICT(mac) DO UPDATE SET ip = excluded.ip, commit_id = COALESCE(excluded.commit_id, clients.commit_id), profile = COALESCE(excluded.profile, clients.profile),
        last_seen = excluded.last_seen, last_boot = COALESCE(excluded.last_boot, clients.last_boot), assignment = COALESCE(excluded.assignment, clients.assignment)`)
      .run({ ...c, boot: c.boot ? c.now : null });
  }

  all(): ClientLease[] {
    return (this.db.prepare('SELECT * FROM clients ORDER BY last_seen DESC').all() as Record<string, unknown>[]).map((r) => ({
      mac: r.mac as string,
      ip: r.ip as string,
      commit: r.commit_id as string | null,
      profile: r.profile as string | null,
      lastSeen: r.last_seen as number,
      lastBoot: r.last_boot as number | null,
      assignment: r.assignment as string | null,
    }));
  }

  /** Clients seen after `since` (ms) that run a known commit: their leases. */
  leasesSince(since: number): { mac: string; commit: string }[] {
    return (
      this.db.prepare('SELECT mac, commit_id FROM clients WHERE commit_id IS NOT NULL AND last_seen > ?').all(since) as {
        mac: string;
        commit_id: string;
      }[]
    ).map((r) => ({ mac: r.mac, commit: r.commit_id }));
  }

  /** The MAC of the client row, and the commit it was last served or reported. */
  get(mac: string): { mac: string; commit: string | null } | undefined {
    const r = this.db.prepare('SELECT mac, commit_id FROM clients WHERE mac = ?').get(mac) as
      | { mac: string; commit_id: string | null }
      | undefined;
    return r ? { mac: r.mac, commit: r.commit_id } : undefined;
  }

  /**
   * Forgets clients whose MAC no assignment names: those not seen since
   * `before` (ms), and beyond the `keep` most recently seen. Their
   * heartbeat rows go with them. Returns how many client rows went.
   */
  forgetUnknown(before: number, keep: number): number {
    const unknown = "mac NOT IN (SELECT match FROM assignments WHERE kind = 'mac')";
    return this.db.transaction(() => {
      let n = this.db.prepare(`DELETE FROM clients WHERE last_seen < ? AND ${unknown}`).run(before).changes;
      n += this.db
        .prepare(
          `DELETE FROM clients WHERE mac IN (SELECT mac FROM clients WHERE ${unknown} ORDER BY last_seen DESC, mac LIMIT -1 OFFSET ?)`,
        )
        .run(keep).changes;
      if (n > 0) this.db.prepare(`DELETE FROM heartbeats WHERE mac NOT IN (SELECT mac FROM clients) AND ${unknown}`).run();
      return n;
    })();
  }
}
