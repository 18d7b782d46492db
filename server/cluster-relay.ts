/**
 * Carries EventHub events between the processes of a multi-process server
 * (server/cluster.ts): an event emitted in an HTTP worker (a client booted)
 * goes to the primary, which re-emits it locally and passes it on to every
 * other worker; an event emitted in the primary (the baker landed a push, the
 * SSH endpoint queued one) goes to every worker. Each hub therefore sees every
 * event exactly once, so each server-sent-events client does too, whichever
 * process holds its connection.
 *
 * Transport-agnostic: a "port" is anything with send() and message events —
 * a cluster Worker in the primary, `process` in a worker, or a fake in tests.
 */
import type { EventHub, ServerEventType } from './events.ts';

/** The IPC message that carries one event. */
export interface RelayMessage {
  kind: 'strata-event';
  type: ServerEventType;
  data: Record<string, unknown>;
}

export interface RelayPort {
  send(msg: RelayMessage): unknown;
  on(event: 'message', fn: (msg: unknown) => void): unknown;
  off(event: 'message', fn: (msg: unknown) => void): unknown;
}

const TYPES: ReadonlySet<string> = new Set<ServerEventType>(['push', 'client', 'ref', 'progress']);

export function isRelayMessage(m: unknown): m is RelayMessage {
  if (typeof m !== 'object' || m === null) return false;
  const r = m as Partial<RelayMessage>;
  return r.kind === 'strata-event' && typeof r.type === 'string' && TYPES.has(r.type) && typeof r.data === 'object' && r.data !== null;
}

/**
 * Emits a relayed event into `hub` while `subscribe`'s forwarder ignores it
 * (EventHub.emit is synchronous), so an event is never sent back where it
 * came from. The hub stamps its own `seq` and `time`: each stream's `seq`
 * keeps increasing.
 */
function makeGate(hub: EventHub): { inject(m: RelayMessage): void; isInjecting(): boolean } {
  let injecting = false;
  return {
    inject(m) {
      injecting = true;
      try {
        const { seq: _seq, time: _time, ...data } = m.data;
        hub.emit(m.type, data);
      } finally {
        injecting = false;
      }
    },
    isInjecting: () => injecting,
  };
}

function safeSend(port: RelayPort, msg: RelayMessage): void {
  try {
    port.send(msg);
  } catch {
    // The other process is gone (restarting worker, shutdown); it will not miss anything it could still show.
  }
}

/** In an HTTP worker: local events go up to the primary; events from the primary are emitted locally. Returns a stop function. */
export function relayWorker(hub: EventHub, primary: RelayPort): () => void {
  const gate = makeGate(hub);
  const off = hub.subscribe((e) => {
    if (!gate.isInjecting()) safeSend(primary, { kind: 'strata-event', type: e.type, data: e.data });
  });
  const onMessage = (m: unknown): void => {
    if (isRelayMessage(m)) gate.inject(m);
  };
  primary.on('message', onMessage);
  return () => {
    off();
    primary.off('message', onMessage);
  };
}

/** In the primary: the hub of the SSH endpoint and the baker, plus a port per live worker. */
export class PrimaryRelay {
  private readonly workers = new Map<number, { port: RelayPort; onMessage: (m: unknown) => void }>();
  private readonly gate: ReturnType<typeof makeGate>;
  private readonly off: () => void;

  constructor(readonly hub: EventHub) {
    this.gate = makeGate(hub);
    this.off = hub.subscribe((e) => {
      if (!this.gate.isInjecting()) this.broadcast({ kind: 'strata-event', type: e.type, data: e.data });
    });
  }

  addWorker(id: number, port: RelayPort): void {
    this.removeWorker(id);
    const onMessage = (m: unknown): void => {
      if (!isRelayMessage(m)) return;
      this.gate.inject(m);
      this.broadcast(m, id);
    };
    port.on('message', onMessage);
    this.workers.set(id, { port, onMessage });
  }

  removeWorker(id: number): void {
    const w = this.workers.get(id);
    if (!w) return;
    w.port.off('message', w.onMessage);
    this.workers.delete(id);
  }

  close(): void {
    this.off();
    for (const id of [...this.workers.keys()]) this.removeWorker(id);
  }

  private broadcast(m: RelayMessage, except?: number): void {
    for (const [id, w] of this.workers) if (id !== except) safeSend(w.port, m);
  }
}
