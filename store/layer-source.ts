/**
 * sqfs2tar of one squashfs layer, read ahead into a bounded queue while an
 * earlier layer is merged (flatten-stream.ts).
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { StrataError } from './errors.ts';
import type { TarParser } from './tar-parser.ts';

/** Bytes of one layer's tar held in memory while it waits its turn (read-ahead) or the output is full. */
const SOURCE_BUFFER = 4 << 20;
/** Wanted layers whose sqfs2tar already runs while an earlier one is merged. */
export const READ_AHEAD = 2;

/**
 * sqfs2tar of one image, its output held in a bounded queue until a parser
 * consumes it. `-r .` keeps the root inode (its mode, owner and xattrs, an
 * opaque mark included) as a './' entry. No `-s`: the only thing sqfs2tar
 * skips is a socket (tar cannot hold one), and a stale socket in a base image
 * must not make every flatten of that chain fail; GNU tar drops sockets from
 * pushed layers the same way.
 *
 * Why a queue: the next layers' sqfs2tar (single-threaded zstd decompression,
 * the largest CPU cost of reading) starts while the current layer is merged,
 * instead of after it; the queue caps what it may read ahead, then its pipe
 * blocks it. 'data' events instead of async iteration: one promise round per
 * pipe read (sqfs2tar's writes arrive ~10 KB at a time) was a large share of
 * flatten's CPU.
 */
export class LayerSource {
  /** Resolves when sqfs2tar exited 0; rejects with its stderr otherwise. */
  readonly exited: Promise<void>;
  private readonly child: ChildProcessByStdio<null, Readable, Readable>;
  private queue: Buffer[] = [];
  private head = 0;
  private queued = 0;
  private ended = false;
  private paused = false;
  private pumping = false;
  private again = false;
  private readError: Error | null = null;
  private sink: { parser: TarParser; blocked: () => boolean; resolve: () => void; reject: (e: unknown) => void } | null = null;

  constructor(readonly image: string) {
    const child = spawn('sqfs2tar', ['-r', '.', image], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 8192) stderr += d;
    });
    this.exited = new Promise<void>((resolve, reject) => {
      child.on('error', (e) =>
        reject(new StrataError('E_INTERNAL', `cannot run sqfs2tar (install squashfs-tools-ng): ${e.message}`, {}, { cause: e })),
      );
      child.on('close', (code, signal) => {
        if (code === 0) resolve();
        else
          reject(
            new StrataError('E_CORRUPT', `sqfs2tar could not read layer ${image} (${signal ?? `exit ${code}`}): ${stderr.trim()}`, {
              image,
            }),
          );
      });
    });
    this.exited.catch(() => undefined); // observed by the caller; avoid an unhandled rejection when it is killed early
    child.stdout.on('data', (b: Buffer) => {
      this.queue.push(b);
      this.queued += b.length;
      if (this.queued >= SOURCE_BUFFER && !this.paused) {
        this.paused = true;
        child.stdout.pause();
      }
      this.pump();
    });
    child.stdout.on('end', () => {
      this.ended = true;
      this.pump();
    });
    child.stdout.on('error', (e) => {
      this.readError = e;
      this.ended = true;
      this.pump();
    });
  }

  /** Feeds all of sqfs2tar's output to parser, holding back while blocked(); resolves at its end. */
  consume(parser: TarParser, blocked: () => boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.sink = { parser, blocked, resolve, reject };
      this.pump();
    });
  }

  /** Moves queued output into the parser while the consumer has room; call again when it has. */
  pump(): void {
    if (this.pumping) {
      this.again = true; // called from inside a push (the output asked for more): loop once more
      return;
    }
    const s = this.sink;
    if (!s) return;
    this.pumping = true;
    try {
      do {
        this.again = false;
        while (this.head < this.queue.length && !s.blocked()) {
          const b = this.queue[this.head]!;
          this.queue[this.head++] = EMPTY;
          this.queued -= b.length;
          s.parser.push(b);
        }
        if (this.head === this.queue.length) {
          this.queue = [];
          this.head = 0;
        }
      } while (this.again);
      if (this.paused && this.queued < SOURCE_BUFFER / 2) {
        this.paused = false;
        this.child.stdout.resume();
      }
      if (this.ended && this.queued === 0 && this.head === this.queue.length) {
        this.sink = null;
        if (this.readError) throw this.readError;
        s.parser.finish();
        s.resolve();
      }
    } catch (e) {
      this.sink = null;
      this.kill();
      s.reject(e);
    } finally {
      this.pumping = false;
    }
  }

  kill(): void {
    const c = this.child;
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    // A paused pipe would never see its end: drop it so 'close' can fire.
    c.stdout.destroy();
    const s = this.sink;
    if (s) {
      this.sink = null;
      s.reject(new StrataError('E_INTERNAL', `reading layer ${this.image} was stopped`, { image: this.image }));
    }
  }
}

const EMPTY = Buffer.alloc(0);
