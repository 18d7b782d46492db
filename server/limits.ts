/**
 * Limits on connections, so that clients which connect and never leave (or
 * trickle bytes) cannot use up the process's file descriptors: at that point
 * neither SSH nor the boot route answers and no machine can boot. Set in the
 * config file ([ssh] and [http] tables, cli/config-file.ts); 0 turns a limit
 * off. The SSH ones are read at each use, so `systemctl reload` applies them.
 */
export interface ServerLimits {
  /** An SSH connection must finish its handshake and authenticate within this (ms). */
  sshAuthTimeoutMs: number;
  /** An authenticated SSH connection with no open channel is closed after this (ms). */
  sshIdleTimeoutMs: number;
  /** SSH connections not yet authenticated; new ones over this are dropped at once. */
  sshMaxUnauthenticated: number;
  /** Of those, from one address: one host cannot take every slot. */
  sshMaxUnauthenticatedPerIp: number;
  /** Channels (sessions) open at once on one SSH connection. */
  sshMaxChannels: number;
  /** Pushes uploading at once per key (a pending key counts as one key). */
  sshMaxPushesPerKey: number;
  /** Time to receive a whole HTTP request, body included (ms). */
  httpRequestTimeoutMs: number;
  /** Time to receive an HTTP request's headers (ms). */
  httpHeadersTimeoutMs: number;
  /** An idle keep-alive HTTP connection is closed after this (ms). */
  httpKeepAliveTimeoutMs: number;
  /** An HTTP connection with no traffic either way (e.g. one that never sends a request) is closed after this (ms). */
  httpIdleTimeoutMs: number;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  sshAuthTimeoutMs: 30_000,
  sshIdleTimeoutMs: 10 * 60_000,
  sshMaxUnauthenticated: 100,
  sshMaxUnauthenticatedPerIp: 20,
  sshMaxChannels: 10,
  // Agents of one profile may share a key: a fleet pushing at once is normal; a thousand is not.
  sshMaxPushesPerKey: 16,
  // Request bodies are small (admin JSON up to 1 MiB, heartbeats 32 KiB): a minute is ample.
  httpRequestTimeoutMs: 60_000,
  httpHeadersTimeoutMs: 20_000,
  httpKeepAliveTimeoutMs: 10_000,
  // Longer than the event stream's 15 s ping and any pause of a paced download.
  httpIdleTimeoutMs: 60_000,
};

export function serverLimits(partial?: Partial<ServerLimits>): ServerLimits {
  return { ...DEFAULT_SERVER_LIMITS, ...partial };
}
