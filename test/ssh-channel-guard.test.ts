/**
 * ssh2 #1505: a client that ignores the channel window can make an ssh2
 * server buffer without bound. This drives a real ssh2 server and a real
 * ssh2 client whose sending side is patched to ignore the window, first
 * without the guard (shows the problem exists here), then with it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import ssh2 from 'ssh2';
import type { ClientChannel, Connection, ServerChannel } from 'ssh2';
import { guardChannel, type GuardedChannel } from '../server/channel-guard.ts';
import { generateHostKey } from '../server/ssh-server.ts';

const { Server, Client } = ssh2;
const hostKey = generateHostKey().private;
const CHUNK = 30001; // not a divisor of the 2 MiB window: one packet overshoots it
const TOTAL = 40 * 1024 * 1024;

interface Observed {
  channel?: ServerChannel;
  guard?: GuardedChannel;
  violation?: string;
  closed: boolean;
}

function startServer(withGuard: boolean): Promise<{ server: InstanceType<typeof Server>; port: number; seen: Observed }> {
  const seen: Observed = { closed: false };
  const server = new Server({ hostKeys: [hostKey] }, (client: Connection) => {
    client.on('authentication', (ctx) => ctx.accept());
    client.on('error', () => {});
    client.on('close', () => {
      seen.closed = true;
    });
    client.on('ready', () => {
      client.on('session', (accept) => {
        accept().on('exec', (acceptExec) => {
          const ch = acceptExec();
          seen.channel = ch;
          // Never read stdin: like a push whose disk write stalls.
          if (withGuard) {
            seen.guard = guardChannel(ch, {
              onViolation: (why) => {
                seen.violation = why;
                ch.destroy();
                client.end();
              },
            });
          }
        });
      });
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port, seen })),
  );
}

function floodingClient(port: number): Promise<{ conn: InstanceType<typeof Client>; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const conn = new Client();
    const closed = new Promise<void>((r) => conn.on('close', () => r()));
    conn.on('error', () => {});
    conn.on('ready', () => {
      conn.exec('flood', (err, stream: ClientChannel) => {
        if (err) return reject(err);
        stream.on('error', () => {});
        const internals = stream as unknown as { outgoing: { window: number } };
        internals.outgoing.window = Number.MAX_SAFE_INTEGER; // ignore the server's window
        const buf = Buffer.alloc(CHUNK, 7);
        for (let sent = 0; sent < TOTAL; sent += CHUNK) stream.write(buf);
        resolve({ conn, closed });
      });
    });
    conn.connect({ host: '127.0.0.1', port, username: 'x', password: 'y' });
  });
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

describe('ssh2 channel window guard (#1505)', () => {
  it('without the guard, a client ignoring the window makes the server buffer far past it', async () => {
    const { server, port, seen } = await startServer(false);
    cleanups.push(() => server.close());
    const { conn } = await floodingClient(port);
    cleanups.push(() => conn.end());
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && (seen.channel?.readableLength ?? 0) < 8 * 1024 * 1024) await new Promise((r) => setTimeout(r, 50));
    expect(seen.channel!.readableLength).toBeGreaterThan(8 * 1024 * 1024);
  });

  it('with the guard, the channel and connection are closed and buffering stays near the window', async () => {
    const { server, port, seen } = await startServer(true);
    cleanups.push(() => server.close());
    const { conn, closed } = await floodingClient(port);
    cleanups.push(() => conn.end());
    await closed;
    expect(seen.violation).toMatch(/beyond the channel window|past/);
    expect(seen.guard!.maxSeenBuffered).toBeLessThanOrEqual(4 * 1024 * 1024 + 64 * 1024 + CHUNK);
    expect(seen.guard!.cleanEof).toBe(false);
  });
});
