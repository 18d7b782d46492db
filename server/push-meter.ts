/**
 * What an SSH push's upload passes through on its way to incoming/: a meter
 * that counts bytes against the size cap and the quotas (server/push-budget.ts)
 * and checks the zstd magic up front, and a drain for uploads nobody stores.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { ServerChannel } from 'ssh2';
import { StrataError } from '../store/errors.ts';
import type { Upload } from './push-budget.ts';

const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** zstd frame or skippable frame (0x184D2A5?, little-endian). */
export function looksLikeZstd(head: Buffer): boolean {
  if (head.length < 4) return false;
  if (head.subarray(0, 4).equals(ZSTD_MAGIC)) return true;
  return (head[0] & 0xf0) === 0x50 && head[1] === 0x2a && head[2] === 0x4d && head[3] === 0x18;
}

/** Counts bytes, refuses more than `max`, and checks the zstd magic up front. */
export class PushMeter extends Transform {
  bytes = 0;
  private head = Buffer.alloc(0);
  constructor(
    private readonly max: number,
    private readonly upload?: Upload,
  ) {
    super({ highWaterMark: 1024 * 1024 });
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    // Quotas and the free-space reserve (server/push-budget.ts), checked before the bytes reach the disk.
    const refused = this.upload?.grow(chunk.length);
    if (refused) return cb(refused);
    if (this.bytes > this.max)
      return cb(
        new StrataError(
          'E_TOO_LARGE',
          `the push is larger than ${this.max} bytes (compressed); split it or ask the admin to raise the limit`,
          { limit: this.max },
        ),
      );
    if (this.head.length < 4) {
      this.head = Buffer.concat([this.head, chunk.subarray(0, 4 - this.head.length)]);
      if (this.head.length >= 4 && !looksLikeZstd(this.head)) {
        return cb(
          new StrataError(
            'E_BAD_COMPRESSION',
            'stdin is not a zstd stream; send a zstd-compressed tar (tar -cf - . | zstd | ssh ... push)',
          ),
        );
      }
    }
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    if (this.bytes === 0) return cb(new StrataError('E_BAD_TAR', 'the push was empty; send a zstd-compressed tar on stdin'));
    if (this.head.length < 4) return cb(new StrataError('E_BAD_COMPRESSION', 'stdin is not a zstd stream'));
    cb();
  }
}

/** Reads and discards a channel's stdin up to EOF, or until `max` bytes (then stops waiting). */
export function drain(ch: ServerChannel, max: number): Promise<void> {
  return new Promise((resolve) => {
    let bytes = 0;
    const done = (): void => {
      ch.off('data', onData);
      ch.off('end', done);
      ch.off('close', done);
      resolve();
    };
    const onData = (b: Buffer): void => {
      bytes += b.length;
      if (bytes > max) done();
    };
    if (ch.readableEnded) return resolve();
    ch.on('data', onData);
    ch.once('end', done);
    ch.once('close', done);
    ch.resume();
  });
}
