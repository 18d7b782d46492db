/**
 * Connections that never leave (issue 11, item 2), against a real
 * `strata serve` on loopback: a raw TCP connection that never speaks is
 * closed at the authentication timeout; connections over the cap of those
 * still authenticating are dropped at once while the boot route keeps
 * answering; an authenticated connection with no channel is closed when
 * idle; channels per connection and pushes uploading per key are capped.
 * The timeouts are configured short; the server reads the SSH limits at each
 * use, so each test sets the ones it needs on the running server.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import type { ClientChannel } from 'ssh2';
import { startServer, type RunningServer } from '../server/main.ts';
import { DEFAULT_SERVER_LIMITS } from '../server/limits.ts';
import { importProfile, tempDir } from './helpers/server-fixture.ts';
import { makeKey, opensshExec, ssh2Connect, type KeyPair } from './helpers/server-ssh.ts';

let tmp: ReturnType<typeof tempDir>;
let srv: RunningServer;
let key: KeyPair;
let head: string;
const sockets: net.Socket[] = [];
const logs: string[] = [];

beforeAll(async () => {
  tmp = tempDir('strata-ssh-limits-');
  srv = await startServer({
    dataDir: `${tmp.dir}/data`,
    http: '127.0.0.1:0',
    ssh: '127.0.0.1:0',
    handleSignals: false,
    log: (m) => logs.push(m),
  });
  head = (await importProfile(srv.store, tmp.dir, 'lab')).base;
  srv.store.assign('default', 'lab');
  key = makeKey(tmp.dir, 'lab');
  srv.store.addKey('lab-client', key.publicLine, { admin: false, profiles: ['lab'] });
}, 120_000);

afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  Object.assign(srv.limits, DEFAULT_SERVER_LIMITS);
});

afterAll(async () => {
  await srv?.close();
  tmp?.cleanup();
});

/** A raw TCP connection to the SSH port; `closed` resolves with the ms from connect to close. */
function rawConnect(localAddress = '127.0.0.1'): Promise<{ sock: net.Socket; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port: srv.sshPort, host: '127.0.0.1', localAddress });
    sockets.push(sock);
    sock.on('error', () => {});
    sock.resume(); // read (and ignore) the server's version line
    let t0 = 0;
    const closed = new Promise<number>((r) => sock.once('close', () => r(Date.now() - t0)));
    sock.once('connect', () => {
      t0 = Date.now();
      resolve({ sock, closed });
    });
    sock.once('error', reject);
  });
}

const within = <T>(p: Promise<T>, ms: number): Promise<T | 'still open'> =>
  Promise.race([p, new Promise<'still open'>((r) => setTimeout(() => r('still open'), ms))]);

async function bootAnswers(): Promise<void> {
  const r = await fetch(`${srv.httpUrl}/v1/boot/ipxe?mac=52:54:00:aa:00:01`, { signal: AbortSignal.timeout(5000) });
  expect(r.status).toBe(200);
  const text = await r.text();
  expect(text).toMatch(/^#!ipxe/);
  expect(text).toMatch(/\nkernel /);
}

describe('SSH connections that never authenticate', () => {
  it('a raw TCP connection that sends nothing is closed at the authentication timeout', async () => {
    srv.limits.sshAuthTimeoutMs = 1500;
    const { closed } = await rawConnect();
    const ms = await within(closed, 10_000);
    expect(ms).not.toBe('still open');
    expect(ms as number).toBeGreaterThanOrEqual(1300);
    expect(logs.some((l) => /did not authenticate within 1500 ms/.test(l))).toBe(true);
  });

  it('a client that sends its version line but never authenticates is closed too', async () => {
    srv.limits.sshAuthTimeoutMs = 1500;
    const { sock, closed } = await rawConnect();
    sock.write('SSH-2.0-OpenSSH_9.2\r\n');
    expect(await within(closed, 10_000)).not.toBe('still open');
  });

  it('connections over the cap of those authenticating are dropped at once; the boot route and real clients still get in', async () => {
    srv.limits.sshAuthTimeoutMs = 6000;
    srv.limits.sshMaxUnauthenticated = 20;
    srv.limits.sshMaxUnauthenticatedPerIp = 0;
    const held = [];
    for (let i = 0; i < 20; i++) held.push(await rawConnect());
    await new Promise((r) => setTimeout(r, 300)); // the server has accepted them all
    const extra = await Promise.all(Array.from({ length: 30 }, () => rawConnect()));
    for (const e of extra) expect(await within(e.closed, 2000)).not.toBe('still open');
    // The first 20 are still held (their timeout has not come), the boot route answers meanwhile.
    for (const h of held) expect(h.sock.destroyed).toBe(false);
    await bootAnswers();
    // Once the held ones leave, a real client authenticates and works.
    for (const h of held) h.sock.destroy();
    await new Promise((r) => setTimeout(r, 300));
    const r = await opensshExec(srv.sshPort, key.privateFile, 'log lab');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(head.slice(0, 12));
  }, 60_000);

  it('one address cannot take every slot: over its own cap it is dropped while another address gets in', async () => {
    srv.limits.sshAuthTimeoutMs = 6000;
    srv.limits.sshMaxUnauthenticatedPerIp = 5;
    // Linux routes all of 127/8 to loopback: 127.0.0.2 is "another host".
    const held = [];
    for (let i = 0; i < 5; i++) held.push(await rawConnect('127.0.0.2'));
    await new Promise((r) => setTimeout(r, 300));
    const extra = await rawConnect('127.0.0.2');
    expect(await within(extra.closed, 2000)).not.toBe('still open');
    for (const h of held) expect(h.sock.destroyed).toBe(false);
    const r = await opensshExec(srv.sshPort, key.privateFile, 'log lab');
    expect(r.code, r.stderr).toBe(0);
  }, 30_000);
});

describe('authenticated SSH connections', () => {
  it('an authenticated connection with no channel open is closed after the idle timeout', async () => {
    srv.limits.sshIdleTimeoutMs = 1500;
    const conn = await ssh2Connect({ port: srv.sshPort, privateKey: key.privateKey });
    conn.on('error', () => {});
    const t0 = Date.now();
    const closed = new Promise<number>((r) => conn.once('close', () => r(Date.now() - t0)));
    const ms = await within(closed, 10_000);
    expect(ms).not.toBe('still open');
    expect(ms as number).toBeGreaterThanOrEqual(1300);
  });

  it('channels per connection are capped; the next is refused and the connection still works', async () => {
    srv.limits.sshMaxChannels = 2;
    const conn = await ssh2Connect({ port: srv.sshPort, privateKey: key.privateKey });
    conn.on('error', () => {});
    try {
      // Two pushes whose uploads stay open hold two channels.
      const open: ClientChannel[] = [];
      for (let i = 0; i < 2; i++) open.push(await execOn(conn, `push lab --parent ${head} -m held${i}`));
      await expect(execOn(conn, 'log lab')).rejects.toThrow(/open failure|prohibited|failed/i);
      // Closing one frees its place.
      open[0].close();
      await new Promise((r) => setTimeout(r, 300));
      const ch = await execOn(conn, 'log lab');
      let out = '';
      ch.on('data', (b: Buffer) => (out += b));
      await new Promise((r) => ch.once('close', r));
      expect(out).toContain(head.slice(0, 12));
    } finally {
      conn.end();
    }
  });

  it('pushes uploading at once per key are capped with a clear refusal; nothing is stored for it', async () => {
    srv.limits.sshMaxPushesPerKey = 1;
    const before = srv.store.listPushes({ limit: 1000 }).length;
    const conn = await ssh2Connect({ port: srv.sshPort, privateKey: key.privateKey });
    conn.on('error', () => {});
    try {
      const first = await execOn(conn, `push lab --parent ${head} -m slow`);
      first.write(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])); // an upload under way
      await new Promise((r) => setTimeout(r, 300));
      const r = await opensshExec(srv.sshPort, key.privateFile, `push lab --parent ${head} -m second`, Buffer.from('x'));
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/already has 1 pushes uploading \(the limit is 1\)/);
      first.close();
    } finally {
      conn.end();
    }
    expect(srv.store.listPushes({ limit: 1000 }).length).toBe(before);
  });
});

function execOn(conn: Awaited<ReturnType<typeof ssh2Connect>>, command: string): Promise<ClientChannel> {
  return new Promise((resolve, reject) => conn.exec(command, (err, ch) => (err ? reject(err) : resolve(ch))));
}
