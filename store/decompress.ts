/**
 * Turns an archive stream that may be plain, zstd, gzip or xz into its
 * decompressed bytes, counting them and stopping past a limit.
 *
 * Why child processes: the zstd/gzip/xz binaries are faster than Node's zlib
 * (and Node 20 has no zstd at all), they decompress on another core while
 * Node parses the tar, and their exit code is the only reliable signal that a
 * stream was complete: a truncated stream must fail as E_BAD_COMPRESSION, not
 * look like a shorter tar.
 *
 * Why count here: a zstd bomb (a few KB that expand to terabytes) must be
 * stopped while it is being decompressed, before anything downstream writes.
 */
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { execa, type ResultPromise } from 'execa';
import { StrataError } from './errors.ts';

export type Compression = 'none' | 'zstd' | 'gzip' | 'xz';

/** Magic numbers; anything else is taken as a plain (uncompressed) stream. */
export function detectCompression(head: Uint8Array): Compression {
  const starts = (magic: number[]) => head.length >= magic.length && magic.every((b, i) => head[i] === b);
  if (starts([0x28, 0xb5, 0x2f, 0xfd])) return 'zstd';
  if (starts([0x1f, 0x8b])) return 'gzip';
  if (starts([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'xz';
  return 'none';
}

const DECOMPRESSORS: Record<Exclude<Compression, 'none'>, { cmd: string; args: string[]; ok: number[] }> = {
  // zstd keeps its default --memory=128MB window cap: a frame asking for a
  // larger window is refused instead of allocating it.
  zstd: { cmd: 'zstd', args: ['-d', '-c', '-q', '--no-progress'], ok: [0] },
  // gzip and xz exit 2 for warnings only (e.g. "trailing garbage ignored"
  // after a complete stream); a truncated or corrupt stream exits 1.
  gzip: { cmd: 'gzip', args: ['-d', '-c'], ok: [0, 2] },
  xz: { cmd: 'xz', args: ['-d', '-c'], ok: [0, 2] },
};

export interface DecompressOptions {
  /** Fail with E_TOO_LARGE once more than this many decompressed bytes came out. */
  maxBytes: number;
}

/** The decompressed stream; `bytes` counts what came out so far, `compression` is known after the first bytes. */
export interface DecompressedStream extends Readable {
  readonly bytes: number;
  readonly compression: Compression | null;
}

/** Counts bytes and holds back its end until the decompressor exited successfully. */
class CountingStream extends Transform implements DecompressedStream {
  bytes = 0;
  compression: Compression | null = null;
  /** Resolves with null when the decompressor succeeded, or with the error to report. */
  childDone: Promise<Error | null> = Promise.resolve(null);
  child: ResultPromise | null = null;

  constructor(private readonly maxBytes: number) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      cb(
        new StrataError('E_TOO_LARGE', `the archive decompresses to more than ${this.maxBytes} bytes (the configured limit); refusing it`, {
          limit: this.maxBytes,
        }),
      );
      return;
    }
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    // The decompressor's stdout ended; only its exit code says whether the
    // input was complete. Until then downstream must not see an end.
    this.childDone.then((err) => cb(err), cb);
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.child?.kill('SIGKILL');
    cb(err);
  }
}

function toNodeReadable(input: NodeJS.ReadableStream): Readable {
  return input instanceof Readable ? input : new Readable({ highWaterMark: 1 << 20 }).wrap(input);
}

/**
 * Reads the first bytes of `input` to pick a decompressor, then returns the
 * decompressed stream. Errors: E_TOO_LARGE past opts.maxBytes,
 * E_BAD_COMPRESSION for a truncated or corrupt compressed stream; read errors
 * of `input` are passed on as they are.
 */
export function decompress(input: NodeJS.ReadableStream, opts: DecompressOptions): DecompressedStream {
  const out = new CountingStream(opts.maxBytes);
  const source = toNodeReadable(input);
  start(source, out).catch((err: unknown) => out.destroy(err as Error));
  // If the consumer gives up, stop reading the source as well.
  out.once('close', () => {
    if (!source.readableEnded) source.destroy();
  });
  return out;
}

async function start(source: Readable, out: CountingStream): Promise<void> {
  const it = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  // Gather at least 6 bytes (the longest magic) or whatever the stream has.
  const head: Buffer[] = [];
  let headLen = 0;
  let done = false;
  while (headLen < 6) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    head.push(b);
    headLen += b.length;
  }
  const first = Buffer.concat(head);
  const compression = detectCompression(first);
  out.compression = compression;

  async function* rest(): AsyncGenerator<Buffer> {
    try {
      if (first.length) yield first;
      if (done) return;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
      }
    } finally {
      // Early exit (a consumer error) must release the source.
      if (!done) await it.return?.();
    }
  }
  const body = Readable.from(rest(), { objectMode: false, highWaterMark: 1 << 20 });
  if (out.destroyed) {
    body.destroy();
    return;
  }
  out.once('close', () => body.destroy());

  if (compression === 'none') {
    body.on('error', (e) => out.destroy(e));
    body.pipe(out);
    return;
  }

  const { cmd, args, ok } = DECOMPRESSORS[compression];
  const child = execa(cmd, args, {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: { stdout: false, stderr: true },
    maxBuffer: { stderr: 64 * 1024 },
    reject: false,
    stripFinalNewline: true,
  });
  out.child = child;
  out.childDone = child.then((r) => {
    if (r.exitCode !== undefined && ok.includes(r.exitCode)) return null;
    if (out.destroyed) return null;
    const why = String(r.stderr ?? '').trim() || (r.signal ? `killed by ${r.signal}` : `exit code ${r.exitCode}`);
    return new StrataError(
      'E_BAD_COMPRESSION',
      `the ${compression} stream is truncated or corrupt (${why}); send the complete archive again`,
      { compression },
    );
  });
  // Writing into a decompressor that already gave up fails with EPIPE; its
  // exit code (above) is the error worth reporting, so swallow the write error.
  child.stdin!.on('error', () => {});
  body.on('error', (e) => out.destroy(e));
  body.pipe(child.stdin!);
  child.stdout!.on('error', (e) => out.destroy(e));
  child.stdout!.pipe(out);
}
