/**
 * server/cluster-relay.ts without processes: three hubs (a primary, two
 * workers) joined by in-memory ports that behave like cluster IPC (messages
 * are structured-cloned and arrive asynchronously).
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { PrimaryRelay, isRelayMessage, relayWorker, type RelayMessage, type RelayPort } from '../server/cluster-relay.ts';
import { EventHub, type ServerEvent } from '../server/events.ts';

/** Two ends of one IPC channel: what one end sends, the other receives as 'message'. */
function channel(): { primarySide: RelayPort; workerSide: RelayPort; close(): void } {
  const toWorker = new EventEmitter();
  const toPrimary = new EventEmitter();
  let open = true;
  const end = (inbox: EventEmitter, outbox: EventEmitter): RelayPort => ({
    send(m: RelayMessage) {
      if (!open) throw new Error('channel closed');
      const copy = structuredClone(m);
      setImmediate(() => outbox.emit('message', copy));
      return true;
    },
    on: (ev, fn) => inbox.on(ev, fn),
    off: (ev, fn) => inbox.off(ev, fn),
  });
  return {
    primarySide: end(toPrimary, toWorker),
    workerSide: end(toWorker, toPrimary),
    close: () => {
      open = false;
    },
  };
}

function record(hub: EventHub): ServerEvent[] {
  const seen: ServerEvent[] = [];
  hub.subscribe((e) => seen.push(e));
  return seen;
}

const settle = () => new Promise((r) => setTimeout(r, 20));

function setup() {
  const primary = new EventHub();
  const relay = new PrimaryRelay(primary);
  const hubs = [new EventHub(), new EventHub()];
  const chans = hubs.map((h, i) => {
    const c = channel();
    relay.addWorker(i + 1, c.primarySide);
    const stop = relayWorker(h, c.workerSide);
    return { ...c, stop };
  });
  return { primary, relay, hubs, chans, seen: { primary: record(primary), a: record(hubs[0]), b: record(hubs[1]) } };
}

describe('cluster event relay', () => {
  it('a boot recorded by worker A reaches worker B and the primary exactly once, and is not echoed back to A', async () => {
    const { hubs, seen } = setup();
    hubs[0].emit('client', { mac: 'aa:bb:cc:dd:ee:01', ip: '10.0.0.5', boot: true });
    await settle();
    for (const list of [seen.a, seen.b, seen.primary]) {
      expect(list.map((e) => [e.type, e.data.mac])).toEqual([['client', 'aa:bb:cc:dd:ee:01']]);
    }
    expect(seen.b[0].data).toMatchObject({ ip: '10.0.0.5', boot: true });
  });

  it('a push landed by the primary reaches every worker once', async () => {
    const { primary, seen } = setup();
    primary.emit('push', { id: 'p1', state: 'committed', commit: 'c'.repeat(64) });
    primary.emit('ref', { action: 'push', profile: 'lab' });
    await settle();
    for (const list of [seen.a, seen.b, seen.primary]) expect(list.map((e) => e.type)).toEqual(['push', 'ref']);
    expect(seen.a[0].data).toMatchObject({ id: 'p1', state: 'committed' });
  });

  it('each hub stamps its own increasing seq, so every stream stays ordered', async () => {
    const { hubs, primary, seen } = setup();
    hubs[1].emit('client', { mac: 'x' });
    await settle();
    primary.emit('push', { id: 'p2', state: 'queued' });
    await settle();
    hubs[0].emit('ref', { action: 'tag' });
    await settle();
    for (const list of [seen.a, seen.b, seen.primary]) {
      expect(list.map((e) => e.data.seq)).toEqual([1, 2, 3]);
    }
  });

  it('a worker that went away is skipped; the others keep receiving', async () => {
    const { relay, hubs, chans, seen } = setup();
    chans[1].close(); // its process died: send() throws
    hubs[0].emit('client', { mac: 'late' });
    await settle();
    expect(seen.primary.map((e) => e.data.mac)).toEqual(['late']);
    relay.removeWorker(2);
    hubs[0].emit('client', { mac: 'later' });
    await settle();
    expect(seen.primary.map((e) => e.data.mac)).toEqual(['late', 'later']);
    expect(seen.b).toEqual([]);
  });

  it('ignores IPC messages that are not events (cluster internals, control messages)', async () => {
    const { chans, seen } = setup();
    expect(isRelayMessage({ kind: 'strata-ready', port: 1 })).toBe(false);
    expect(isRelayMessage({ kind: 'strata-event', type: 'evil', data: {} })).toBe(false);
    chans[0].workerSide.send({ kind: 'strata-ready', port: 1 } as unknown as RelayMessage);
    await settle();
    expect(seen.primary).toEqual([]);
    expect(seen.b).toEqual([]);
  });

  it('after stop, a worker hub neither sends nor receives', async () => {
    const { primary, hubs, chans, seen } = setup();
    chans[0].stop();
    hubs[0].emit('client', { mac: 'local-only' });
    primary.emit('push', { id: 'p3', state: 'queued' });
    await settle();
    expect(seen.a.map((e) => e.type)).toEqual(['client']);
    expect(seen.b.map((e) => e.type)).toEqual(['push']);
  });
});
