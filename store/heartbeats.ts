/**
 * Heartbeats: what a running client reports about itself (the commit it
 * runs, its uptime, a small hardware inventory read from /sys and /proc),
 * so "online" and the clients list are facts, not the time of the last boot.
 *
 * A heartbeat is unauthenticated (like the boot routes: PXE clients have no
 * secret), so it can only describe: a MAC the server never booted may report
 * only a commit the store has, and a forged commit id from an unknown MAC is
 * refused. Its own table, created on first use.
 */
import { StrataError } from './errors.ts';

export interface Inventory {
  cpuModel?: string;
  cpus?: number;
  memoryKb?: number;
  nics?: { name: string; mac: string }[];
  disks?: { name: string; bytes: number }[];
  dmi?: { vendor?: string; product?: string; serial?: string };
}

export interface Heartbeat {
  mac: string;
  ip: string | null;
  commit: string;
  uptimeSec: number;
  inventory: Inventory;
  at: number;
}

export interface HeartbeatStore {
  readonly db: import('./db.ts').DB;
  listClients(): { mac: string }[];
  getCommit(id: string): unknown;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const COMMIT = /^[0-9a-f]{64}$/;

/** Checks and normalises a heartbeat body (pure); bad input is E_BAD_ARGUMENT. */
export function parseHeartbeat(body: unknown, ip: string | null, now = Date.now()): Heartbeat {
  const b = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
  const mac = String(b.mac ?? '').toLowerCase();
  const commit = String(b.commit ?? '');
  if (!MAC.test(mac))
    throw new StrataError('E_BAD_ARGUMENT', `heartbeat: "mac" must look like 52:54:00:12:34:56, not ${JSON.stringify(b.mac)}`);
  if (!COMMIT.test(commit)) throw new StrataError('E_BAD_ARGUMENT', 'heartbeat: "commit" must be a 64-digit commit id');
  const uptimeSec = Number(b.uptimeSec ?? 0);
  const inv = (b.inventory && typeof b.inventory === 'object' ? b.inventory : {}) as Inventory;
  const text = JSON.stringify(inv);
  if (text.length > 16384) throw new StrataError('E_BAD_ARGUMENT', 'heartbeat: the inventory is larger than 16 KiB');
  return { mac, ip, commit, uptimeSec: Number.isFinite(uptimeSec) ? Math.max(0, Math.floor(uptimeSec)) : 0, inventory: inv, at: now };
}

export class Heartbeats {
  constructor(private readonly store: HeartbeatStore) {
    store.db.exec(
      'CREATE TABLE IF NOT EXISTS heartbeats (mac TEXT PRIMARY KEY, ip TEXT, commit_id TEXT NOT NULL, uptime INTEGER NOT NULL, inventory TEXT NOT NULL, at INTEGER NOT NULL)',
    );
  }

  record(hb: Heartbeat): void {
    const known = this.store.listClients().some((c) => c.mac === hb.mac);
    if (!known) {
      try {
        this.store.getCommit(hb.commit);
      } catch {
        throw new StrataError(
          'E_FORBIDDEN',
          `heartbeat from ${hb.mac}, a machine this server never booted, names a commit it does not have; refused`,
        );
      }
    }
    this.store.db
      .prepare(
        `INSERT INTO heartbeats (mac, ip, commit_id, uptime, inventory, at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(mac) DO UPDATE SET ip = excluded.ip, commit_id = excluded.commit_id, uptime = excluded.uptime, inventory = excluded.inventory, at = excluded.at`,
      )
      .run(hb.mac, hb.ip, hb.commit, hb.uptimeSec, JSON.stringify(hb.inventory), hb.at);
  }

  get(mac: string): Heartbeat | null {
    const r = this.store.db.prepare('SELECT * FROM heartbeats WHERE mac = ?').get(mac) as Record<string, unknown> | undefined;
    if (!r) return null;
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
