/**
 * Retries with exponential backoff and full jitter (a fleet that lost its
 * server must not come back in lock-step: boot storms fail on retry loops
 * without jitter), and a one-at-a-time queue (p-queue) for commits and sends.
 */
import PQueue from 'p-queue';
import { setTimeout as sleep } from 'node:timers/promises';

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

/** Delay before retry number `attempt` (0-based): uniform in [0, min(max, base * 2^attempt)]. Pure given `rand`. */
export function backoffDelay(attempt: number, o: BackoffOptions, rand: () => number = Math.random): number {
  const cap = Math.min(o.maxMs, o.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(rand() * cap);
}

export interface RetryOptions extends BackoffOptions {
  /** Give up after this many attempts (Infinity: never). */
  attempts: number;
  /** Errors for which another try cannot help. */
  isPermanent: (e: unknown) => boolean;
  onRetry?: (e: unknown, attempt: number, delayMs: number) => void;
  signal?: AbortSignal;
}

export async function withRetries<T>(fn: () => Promise<T>, o: RetryOptions): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (o.isPermanent(e) || attempt + 1 >= o.attempts || o.signal?.aborted) throw e;
      const delay = backoffDelay(attempt, o);
      o.onRetry?.(e, attempt, delay);
      await sleep(delay, undefined, o.signal ? { signal: o.signal } : undefined);
    }
  }
}

/** A queue that runs one task at a time, in order. */
export function serialQueue(): PQueue {
  return new PQueue({ concurrency: 1 });
}
