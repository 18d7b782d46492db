/**
 * HTTP clients that trickle (issue 11, item 2), against a real server on
 * loopback: a heartbeat POST whose body arrives one byte at a time is closed
 * at the request timeout, slow headers at the headers timeout, an idle
 * keep-alive connection at the keep-alive timeout, and the boot route
 * answers meanwhile. The timeouts are configured short.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { startServer, type RunningServer } from '../server/main.ts';
import { importProfile, tempDir } from './helpers/server-fixture.ts';

let tmp: ReturnType<typeof tempDir>;
let srv: RunningServer;
const sockets: net.Socket[] = [];
const timers: NodeJS.Timeout[] = [];

beforeAll(async () => {
  tmp = tempDir('strata-http-slow-');
  srv = await startServer({
    dataDir: `${tmp.dir}/data`,
    http: '127.0.0.1:0',
    ssh: '127.0.0.1:0',
    handleSignals: false,
    log: () => {},
    limits: { httpRequestTimeoutMs: 2000, httpHeadersTimeoutMs: 1500, httpKeepAliveTimeoutMs: 1000, httpIdleTimeoutMs: 2500 },
  });
  await importProfile(srv.store, tmp.dir, 'lab');
  srv.store.assign('default', 'lab');
}, 120_000);

afterEach(() => {
  for (const t of timers.splice(0)) clearInterval(t);
  for (const s of sockets.splice(0)) s.destroy();
});

afterAll(async () => {
  await srv?.close();
  tmp?.cleanup();
});

interface Raw {
  sock: net.Socket;
  received: () => string;
  /** ms from connect to the server closing the connection. */
  closed: Promise<number>;
}

function connect(): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(srv.httpPort, '127.0.0.1');
    sockets.push(sock);
    let got = '';
    sock.on('data', (b) => (got += b));
    sock.on('error', () => {});
    const t0 = Date.now();
    const closed = new Promise<number>((r) => sock.once('close', () => r(Date.now() - t0)));
    sock.once('connect', () => resolve({ sock, received: () => got, closed }));
    sock.once('error', reject);
  });
}

/** Writes `text` one byte every `everyMs` until it is all sent or the socket closes. */
function trickle(sock: net.Socket, text: string, everyMs: number): void {
  let i = 0;
  const t = setInterval(() => {
    if (sock.destroyed || i >= text.length) return clearInterval(t);
    sock.write(text[i++]);
  }, everyMs);
  timers.push(t);
}

const within = <T>(p: Promise<T>, ms: number): Promise<T | 'still open'> =>
  Promise.race([p, new Promise<'still open'>((r) => setTimeout(() => r('still open'), ms))]);

async function bootAnswers(): Promise<void> {
  const r = await fetch(`${srv.httpUrl}/v1/boot/ipxe?mac=52:54:00:bb:00:01`, { signal: AbortSignal.timeout(5000) });
  expect(r.status).toBe(200);
  expect(await r.text()).toMatch(/^#!ipxe[\s\S]*\nkernel /);
}

describe('slow HTTP clients', () => {
  it('a heartbeat POST trickling its body is closed at the request timeout; boots are answered meanwhile', async () => {
    const c = await connect();
    const body = JSON.stringify({ mac: '52:54:00:bb:00:02', commit: 'a'.repeat(64), uptimeSec: 1 });
    c.sock.write(`POST /v1/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
    trickle(c.sock, body, 400); // the whole body would take ~40 s
    await bootAnswers();
    const ms = await within(c.closed, 12_000);
    expect(ms).not.toBe('still open');
    expect(ms as number).toBeGreaterThanOrEqual(1500);
    expect(c.received()).toMatch(/^HTTP\/1\.1 408/);
  }, 30_000);

  it('headers trickled a byte at a time are closed at the headers timeout', async () => {
    const c = await connect();
    trickle(c.sock, `GET /v1/boot/ipxe?mac=52:54:00:bb:00:03 HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(200)}\r\n\r\n`, 100);
    const ms = await within(c.closed, 12_000);
    expect(ms).not.toBe('still open');
    await bootAnswers();
  }, 30_000);

  it('a connection that never sends a byte is closed (headers or idle timeout, whichever comes first)', async () => {
    const c = await connect();
    const ms = await within(c.closed, 10_000);
    expect(ms).not.toBe('still open');
    expect(ms as number).toBeGreaterThanOrEqual(1000);
  }, 30_000);

  it('an idle keep-alive connection is closed at the keep-alive timeout', async () => {
    const c = await connect();
    c.sock.write('GET /v1/boot/ipxe?mac=52:54:00:bb:00:04 HTTP/1.1\r\nHost: x\r\n\r\n');
    const ms = await within(c.closed, 10_000);
    expect(ms).not.toBe('still open');
    expect(c.received()).toMatch(/^HTTP\/1\.1 200/);
  }, 30_000);
});
