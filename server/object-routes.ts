/**
 * Immutable, content-addressed downloads: blobs by digest and manifests by
 * commit id. Anyone on the boot network may read them (PXE firmware cannot
 * authenticate), any HTTP cache may keep them forever, and the bytes go from
 * the page cache to the socket with as little JavaScript in between as Node
 * allows (1 MiB reads, the reply hijacked from fastify, no per-chunk hooks).
 */
import fs from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable, Transform, pipeline, type TransformCallback } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { StrataError } from '../store/errors.ts';
import { sendError } from './http-errors.ts';

export const IMMUTABLE = 'public, max-age=31536000, immutable';
const HEX64 = /^[0-9a-f]{64}$/;
const READ_CHUNK = 1024 * 1024;

export type RangeResult = { start: number; end: number } | 'unsatisfiable' | null;

/**
 * One `bytes=` range against a representation of `size` bytes.
 * null: no usable Range (absent, malformed or several ranges) -> send it all,
 * which RFC 9110 allows; 'unsatisfiable' -> 416.
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (!header) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return null;
  const [, a, b] = m;
  if (a === '' && b === '') return null;
  if (a === '') {
    const n = Number(b);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  let end = b === '' ? size - 1 : Number(b);
  if (b !== '' && end < start) return null; // invalid range spec: ignore it
  if (start >= size) return 'unsatisfiable';
  if (end >= size) end = size - 1;
  return { start, end };
}

/** Does an If-None-Match header match our (strong) ETag? Weak comparison, as RFC 9110 says for this header. */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  const bare = etag.replace(/^W\//, '');
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === bare);
}

/** If-Range only honours an exact strong validator; a date or another ETag means "send it all". */
export function ifRangeAllows(header: string | undefined, etag: string): boolean {
  if (header === undefined) return true;
  return header.trim() === etag;
}

/** Paces one response at `bytesPerSec` (iPXE firmware that hangs on fast downloads, ipxe #1023). */
export class RateLimiter extends Transform {
  private readonly rate: number;
  private readonly started = Date.now();
  private sent = 0;
  constructor(bytesPerSec: number) {
    super({ highWaterMark: READ_CHUNK });
    this.rate = bytesPerSec;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    // Split big reads so the pace is smooth within a chunk too.
    const slice = Math.max(1024, Math.floor(this.rate / 10));
    const parts: Buffer[] = [];
    for (let o = 0; o < chunk.length; o += slice) parts.push(chunk.subarray(o, o + slice));
    const next = (): void => {
      const part = parts.shift();
      if (!part) return cb();
      const due = this.started + (this.sent * 1000) / this.rate;
      const wait = due - Date.now();
      const go = (): void => {
        this.sent += part.length;
        this.push(part);
        next();
      };
      if (wait > 0) setTimeout(go, wait);
      else go();
    };
    next();
  }
}

export interface Representation {
  etag: string;
  size: number;
  contentType: string;
  /** Opens [start, end] inclusive. */
  open(start: number, end: number): Readable;
}

export interface ServeOptions {
  rateLimitBytesPerSec?: number;
}

/** Writes status, headers and body straight to the socket (the reply is hijacked). */
export function serveRepresentation(req: IncomingMessage, res: ServerResponse, rep: Representation, opts: ServeOptions = {}): void {
  const base: Record<string, string | number> = {
    ETag: rep.etag,
    'Cache-Control': IMMUTABLE,
    'Accept-Ranges': 'bytes',
  };
  const method = req.method ?? 'GET';
  if (etagMatches(req.headers['if-none-match'], rep.etag)) {
    res.writeHead(304, base);
    res.end();
    return;
  }
  let status = 200;
  let start = 0;
  let end = rep.size - 1;
  const range = ifRangeAllows(req.headers['if-range'] as string | undefined, rep.etag) ? parseRange(req.headers.range, rep.size) : null;
  if (range === 'unsatisfiable') {
    const body = JSON.stringify({
      error: { code: 'E_BAD_ARGUMENT', message: `range not satisfiable; the object has ${rep.size} bytes`, size: rep.size },
    });
    res.writeHead(416, {
      ...base,
      'Content-Range': `bytes */${rep.size}`,
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(method === 'HEAD' ? undefined : body);
    return;
  }
  const headers: Record<string, string | number> = { ...base, 'Content-Type': rep.contentType };
  if (range) {
    status = 206;
    start = range.start;
    end = range.end;
    headers['Content-Range'] = `bytes ${start}-${end}/${rep.size}`;
  }
  headers['Content-Length'] = rep.size === 0 ? 0 : end - start + 1;
  res.writeHead(status, headers);
  if (method === 'HEAD' || rep.size === 0) {
    res.end();
    return;
  }
  const src = rep.open(start, end);
  const onDone = (err: NodeJS.ErrnoException | null | undefined): void => {
    // A client that hangs up mid-download is normal; the socket is already gone.
    if (err && !res.destroyed) res.destroy();
  };
  if (opts.rateLimitBytesPerSec && opts.rateLimitBytesPerSec > 0) pipeline(src, new RateLimiter(opts.rateLimitBytesPerSec), res, onDone);
  else pipeline(src, res, onDone);
}

export interface ObjectSource {
  /** Absolute path of a blob; throws E_OBJECT_NOT_FOUND when absent. */
  objectPath(digest: string): string;
  /** Exact manifest bytes of a commit; throws E_COMMIT_NOT_FOUND. */
  manifestText(commitId: string): string;
  /** Full commit id for any rev (tag, profile, prefix) — used only to redirect to the immutable URL. */
  resolve(rev: string): string;
}

function badDigest(hex: string): StrataError {
  return new StrataError(
    'E_BAD_DIGEST',
    `"${hex.slice(0, 80)}" is not a sha256 digest; object URLs are /objects/sha256/<64 lowercase hex digits>`,
  );
}

export function registerObjectRoutes(app: FastifyInstance, src: ObjectSource, opts: ServeOptions = {}): void {
  const blob = async (req: FastifyRequest<{ Params: { hex: string } }>, reply: FastifyReply): Promise<void> => {
    const hex = req.params.hex;
    try {
      if (!HEX64.test(hex)) throw badDigest(hex);
      let file: string;
      try {
        file = src.objectPath(hex);
      } catch (e) {
        if (e instanceof StrataError && e.code === 'E_OBJECT_NOT_FOUND')
          throw new StrataError('E_OBJECT_NOT_FOUND', `no object sha256:${hex} on this server`, { digest: hex });
        throw e;
      }
      const st = await fs.promises.stat(file).catch(() => {
        throw new StrataError('E_OBJECT_NOT_FOUND', `no object sha256:${hex} on this server`, { digest: hex });
      });
      reply.hijack();
      serveRepresentation(
        req.raw,
        reply.raw,
        {
          etag: `"${hex}"`,
          size: st.size,
          contentType: 'application/octet-stream',
          open: (start, end) => fs.createReadStream(file, { start, end, highWaterMark: READ_CHUNK }),
        },
        opts,
      );
    } catch (e) {
      sendError(reply, e);
    }
  };
  for (const prefix of ['/objects/sha256/', '/v1/objects/sha256/']) {
    app.route({ method: ['GET', 'HEAD'], url: `${prefix}:hex`, exposeHeadRoute: false, handler: blob });
  }

  const manifest = async (req: FastifyRequest<{ Params: { rev: string } }>, reply: FastifyReply): Promise<void> => {
    const id = req.params.rev;
    try {
      if (!HEX64.test(id)) {
        // A tag, profile or prefix is not immutable: point at the immutable URL, never cache the pointer.
        if (id.length > 200 || /[/\\\x00-\x1f]/.test(id))
          throw new StrataError('E_BAD_ARGUMENT', 'a commit is named by its id, a 7+ hex prefix, a tag or a profile');
        const full = src.resolve(id);
        reply.header('Cache-Control', 'no-store').redirect(`/v1/commits/${full}/manifest`, 302);
        return;
      }
      const text = Buffer.from(src.manifestText(id), 'utf8');
      reply.hijack();
      serveRepresentation(
        req.raw,
        reply.raw,
        {
          etag: `"${id}"`,
          size: text.length,
          contentType: 'text/plain; charset=utf-8',
          open: (start, end) => Readable.from([text.subarray(start, end + 1)]),
        },
        opts,
      );
    } catch (e) {
      sendError(reply, e);
    }
  };
  app.route({ method: ['GET', 'HEAD'], url: '/v1/commits/:rev/manifest', exposeHeadRoute: false, handler: manifest });
}
