/** SQL for heartbeats (store/heartbeats.ts): the last report of each running client, by MAC. */
import type { DB } from '../db.ts';
import type { Heartbeat, Inventory } from '../types.ts';

export type { Heartbeat, Inventory } from '../types.ts';

export class HeartbeatsTable {
  constructor(private readonly db: DB) {}

  /** A MAC keeps only its latest heartbeat. */
  put(hb: Heartbeat): void {
    this.db
      .prepare(
        `INSERT INTO heartbeats (mac, ip, commit_id, uptime, inventory, at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(mac) DO UPDATE SET ip = excluded.ip, commit_id = excluded.commit_id, uptime = excluded.uptime, inventory = excluded.inventory, at = excluded.at`,
      )
      .run(hb.mac, hb.ip, hb.commit, hb.uptimeSec, JSON.stringify(hb.inventory), hb.at);
  }

  get(mac: string): Heartbeat | undefined {
    const r = this.db.prepare('SELECT * FROM heartbeats WHERE mac = ?').get(mac) as Record<string, unknown> | undefined;
    if (!r) return undefined;
    return {
      mac: r.mac as string,
      ip: (r.ip as string | null) ?? null,
      commit: r.commit_id as string,
      uptimeSec: r.uptime as number,
      inventory: JSON.parse(r.inventory as string) as Inventory,
      at: r.at as number,
    };
  }
}
