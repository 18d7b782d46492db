/**
 * Connections that never leave (issue: 10,000 raw TCP connections held the
 * SSH port and, at the fd limit, starved the boot route). ssh2's server has
 * no handshake or authentication timeout, no cap on connections still
 * authenticating and none on channels, so this adds them:
 *
 * - every TCP connection must authenticate within sshAuthTimeoutMs;
 * - at most sshMaxUnauthenticated connections may be authenticating at once,
 *   sshMaxUnauthenticatedPerIp of them from one address; a new one over a
 *   cap is closed as soon as it is accepted (an fd held for microseconds,
 *   never for minutes), and one flooding host leaves room for the others;
 * - an authenticated connection with no channel open for sshIdleTimeoutMs is
 *   closed; at most sshMaxChannels channels per connection;
 * - at most sshMaxPushesPerKey uploads per key at once (pushSlot()).
 *
 * The counting happens on the raw socket, ahead of ssh2 (which announces a
 * connection only after the client's version line, which a silent client
 * never sends).
 */
import type { EventEmitter } from 'node:events';
import type { Server as NetServer, Socket } from 'node:net';
import type { Connection } from 'ssh2';
import { StrataError } from '../store/errors.ts';
import type { ServerLimits } from './limits.ts';

export interface ChannelCounter {
  /** False (and the caller rejects the channel) when the connection has its maximum open. */
  mayOpen(): boolean;
  /** Counts an accepted session until it closes. */
  opened(session: EventEmitter): void;
}

export class SshConnectionLimits {
  private authenticating = 0;
  private readonly perIp = new Map<string, number>();
  /** Sockets dropped over the cap, for logs and tests. */
  dropped = 0;
  private readonly pending = new WeakMap<Socket, () => void>();
  private readonly pushes = new Map<string, number>();
  private lastDropLog = 0;

  constructor(
    private readonly limits: ServerLimits,
    private readonly log: (msg: string) => void,
  ) {}

  /**
   * Puts itself in front of the ssh2 server's own handler on the listening
   * socket: a connection over a cap is destroyed before ssh2 spends anything
   * on it (a flood reconnecting thousands of times a second stays cheap).
   */
  attach(ssh: EventEmitter): void {
    const srv = (ssh as unknown as { _srv: NetServer })._srv;
    const handlers = srv.listeners('connection') as ((sock: Socket) => void)[];
    srv.removeAllListeners('connection');
    srv.on('connection', (sock: Socket) => {
      if (!this.accepted(sock)) return;
      for (const h of handlers) h.call(srv, sock);
    });
  }

  get unauthenticated(): number {
    return this.authenticating;
  }

  /** False (and the socket destroyed) when it is over a cap. */
  private accepted(sock: Socket): boolean {
    const cap = this.limits.sshMaxUnauthenticated;
    const ipCap = this.limits.sshMaxUnauthenticatedPerIp;
    const ip = sock.remoteAddress ?? '?';
    const fromIp = this.perIp.get(ip) ?? 0;
    const full =
      cap > 0 && this.authenticating >= cap
        ? `${cap} connections are still authenticating`
        : ipCap > 0 && fromIp >= ipCap
          ? `${ipCap} connections from ${ip} are still authenticating`
          : null;
    if (full) {
      this.dropped++;
      // One line a minute at most: a flood must not flood the journal too.
      if (Date.now() - this.lastDropLog > 60_000) {
        this.lastDropLog = Date.now();
        this.log(`ssh: ${full}; dropping new ones (from ${ip})`);
      }
      sock.destroy();
      return false;
    }
    this.authenticating++;
    this.perIp.set(ip, fromIp + 1);
    let counted = true;
    const timeout = this.limits.sshAuthTimeoutMs;
    const timer =
      timeout > 0
        ? setTimeout(() => {
            if (!counted) return;
            this.log(`ssh: ${sock.remoteAddress} did not authenticate within ${timeout} ms; closing`);
            sock.destroy();
          }, timeout)
        : null;
    timer?.unref();
    const leave = (): void => {
      if (!counted) return;
      counted = false;
      this.authenticating--;
      const left = (this.perIp.get(ip) ?? 1) - 1;
      if (left > 0) this.perIp.set(ip, left);
      else this.perIp.delete(ip);
      if (timer) clearTimeout(timer);
    };
    sock.once('close', leave);
    this.pending.set(sock, leave);
    return true;
  }

  /** The connection authenticated: it leaves the count and its timer; from now on its channels are counted. */
  authenticated(client: Connection): ChannelCounter {
    const sock = (client as unknown as { _sock: Socket })._sock;
    this.pending.get(sock)?.();
    let open = 0;
    let closed = false;
    let idle: NodeJS.Timeout | null = null;
    const arm = (): void => {
      const ms = this.limits.sshIdleTimeoutMs;
      if (ms <= 0 || open > 0 || closed) return;
      idle = setTimeout(() => {
        this.log(`ssh: closing a connection from ${sock.remoteAddress} idle (no channel) for ${ms} ms`);
        client.end();
        // A client that ignores the disconnect must not keep its fd.
        setTimeout(() => sock.destroy(), 2000).unref();
      }, ms);
      idle.unref();
    };
    const disarm = (): void => {
      if (idle) clearTimeout(idle);
      idle = null;
    };
    client.once('close', () => {
      closed = true;
      disarm();
    });
    arm();
    return {
      mayOpen: () => this.limits.sshMaxChannels <= 0 || open < this.limits.sshMaxChannels,
      opened: (session) => {
        open++;
        disarm();
        session.once('close', () => {
          open--;
          arm();
        });
      },
    };
  }

  /**
   * Holds one of the key's upload slots; the returned function gives it
   * back. Throws E_TOO_BUSY when the key has its maximum uploading.
   */
  pushSlot(key: string): () => void {
    const cap = this.limits.sshMaxPushesPerKey;
    const n = this.pushes.get(key) ?? 0;
    if (cap > 0 && n >= cap)
      throw new StrataError(
        'E_TOO_BUSY',
        `key ${key} already has ${n} pushes uploading (the limit is ${cap}); wait for them to finish and push again`,
        { limit: cap },
      );
    this.pushes.set(key, n + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const left = (this.pushes.get(key) ?? 1) - 1;
      if (left > 0) this.pushes.set(key, left);
      else this.pushes.delete(key);
    };
  }
}
