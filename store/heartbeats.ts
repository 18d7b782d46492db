/**
 * Heartbeats: what a running client reports about itself (the commit it
 * runs, its uptime, a small hardware inventory read from /sys and /proc),
 * so "online" and the clients list are facts, not the time of the last boot.
 *
 * A heartbeat is unauthenticated (like the boot routes: PXE clients have no
 * secret), so it can only describe: a MAC the server never booted may report
 * only a commit the store has, and a forged commit id from an unknown MAC is
 * refused. The rows live in store/tables/heartbeats.ts (schema: migration 4
 * in store/db.ts).
 */
import { StrataError } from './errors.ts';
import type { HeartbeatsTable } from './tables/heartbeats.ts';
import type { ClientLease, ClientReport, Heartbeat, Inventory } from './types.ts';

export type { ClientReport, Heartbeat, Inventory } from './types.ts';

export interface HeartbeatStore {
  readonly heartbeatsTable: HeartbeatsTable;
  listClients(): ClientLease[];
  getCommit(id: string): unknown;
  heartbeatRefusal(mac: string, ip: string | null, commit: string): string | null;
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
  constructor(private readonly store: HeartbeatStore) {}

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
    // Only a commit it was served or its assigned profile's: the lease it records keeps that commit from gc.
    const refusal = this.store.heartbeatRefusal(hb.mac, hb.ip, hb.commit);
    if (refusal) throw new StrataError('E_FORBIDDEN', refusal);
    this.store.heartbeatsTable.put(hb);
  }

  get(mac: string): Heartbeat | null {
    return this.store.heartbeatsTable.get(mac) ?? null;
  }
}

/** Every client with its last heartbeat: what `strata clients` and GET /v1/clients show. */
export function clientReports(store: HeartbeatStore): ClientReport[] {
  return store.listClients().map((c) => ({ ...c, heartbeat: store.heartbeatsTable.get(c.mac) ?? null }));
}
