/**
 * Writing a tar to a stream with backpressure: the snapshot awaits each
 * write, so a slow compressor slows the walk instead of filling memory.
 * An error of the stream (a broken pipe to the compressor) fails the write
 * waiting on it, or the next one.
 */
import type { Writable } from 'node:stream';
import { END_OF_ARCHIVE } from '../protocol/tar-encode.ts';

export interface TarOut {
  write(buf: Buffer): Promise<void>;
  /** Ends the archive (two zero blocks) and the stream; resolves once it has finished. */
  finish(): Promise<void>;
  /** Destroys the stream after a failure of the producer. */
  abort(): void;
}

export function tarOut(out: Writable): TarOut {
  let failure: Error | null = null;
  const onError = (e: Error) => {
    failure ??= e;
  };
  out.on('error', onError);
  const check = () => {
    if (failure) throw failure;
    if (out.destroyed) throw new Error('the snapshot output closed early');
  };
  /** Resolves on `event`, or when the stream closes or fails (the caller checks which). */
  const settle = (event: string) =>
    new Promise<void>((resolve) => {
      const done = () => {
        for (const e of [event, 'close', 'error']) out.off(e, done);
        resolve();
      };
      for (const e of [event, 'close', 'error']) out.on(e, done);
    });
  const write = async (buf: Buffer): Promise<void> => {
    check();
    if (!out.write(buf)) await settle('drain');
    check();
  };
  return {
    write,
    async finish() {
      await write(END_OF_ARCHIVE);
      const finished = settle('finish');
      out.end();
      await finished;
      if (failure) throw failure;
    },
    abort() {
      out.destroy(); // onError stays: a late error of the pipe is already the caller's failure, not an unhandled one
    },
  };
}
