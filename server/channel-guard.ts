/**
 * Mitigation for mscdex/ssh2 #1505: ssh2's server only drops channel data
 * when the receive window is exactly 0, so a client that overshoots the
 * window once can then make the server buffer without bound. We wrap the
 * channel's push() (the one place all incoming data passes) and stop a
 * channel whose window went negative or whose unread buffer passed a cap.
 *
 * It also records how the inbound side ended: ssh2 pushes EOF both for a
 * real CHANNEL_EOF and for a channel or connection that died; only the
 * first means "the upload is complete".
 */
import type { Readable } from 'node:stream';

/**
 * A client that honours the window can make at most this much pile up:
 * ssh2 re-opens the 2 MiB window while its 2 MiB read buffer is not yet
 * full (push() returned true), so the buffer can reach 2 MiB + 2 MiB, plus
 * a packet. Measured: OpenSSH pushing 10 MB into a busy server passes 2 MiB.
 */
export const DEFAULT_MAX_BUFFERED = 4 * 1024 * 1024 + 64 * 1024;

interface Ssh2ChannelInternals {
  incoming?: { window: number; state: string };
}

export interface GuardedChannel {
  /** True once the client sent CHANNEL_EOF (not a close, not a dead connection). */
  readonly cleanEof: boolean;
  /** Set when the guard tripped. */
  readonly violation: string | null;
  /** Largest number of unread bytes seen in the channel's buffer. */
  readonly maxSeenBuffered: number;
}

export function guardChannel(ch: Readable, opts: { maxBuffered?: number; onViolation: (reason: string) => void }): GuardedChannel {
  const cap = opts.maxBuffered ?? DEFAULT_MAX_BUFFERED;
  const internals = ch as unknown as Ssh2ChannelInternals;
  const state = { cleanEof: false, violation: null as string | null, maxSeenBuffered: 0 };
  const origPush = ch.push.bind(ch);
  ch.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk === null) {
      state.cleanEof = internals.incoming?.state === 'eof' && state.violation === null;
      return origPush(null, encoding);
    }
    if (state.violation) return false; // already condemned: drop, never buffer
    const len = (chunk as Buffer).length ?? 0;
    const window = internals.incoming?.window;
    const buffered = ch.readableLength + len;
    if (buffered > state.maxSeenBuffered) state.maxSeenBuffered = buffered;
    let why: string | null = null;
    if (typeof window === 'number' && window < 0) why = `the client sent ${-window} bytes beyond the channel window`;
    else if (buffered > cap) why = `the client filled the channel buffer past ${cap} bytes`;
    if (why) {
      state.violation = why;
      // Tell the owner after this call returns: closing inside ssh2's packet handler is not re-entrant-safe.
      setImmediate(() => opts.onViolation(why));
      return false;
    }
    return origPush(chunk, encoding);
  };
  return state;
}
