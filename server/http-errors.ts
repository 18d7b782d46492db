/**
 * Where StrataError codes become HTTP answers, by the error table in
 * protocol/errors.ts. Routes throw StrataError; this module answers
 * `{"error":{"code","message",...details}}`. Only 5xx answers are logged as
 * server errors.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { StrataError, isStrataError, meaningOf, wrapIoError, type ErrorCode } from '../protocol/errors.ts';

/** The HTTP status of an error code: the table's (protocol/errors.ts), 500 for codes not in it. */
export function statusForCode(code: string): number {
  return meaningOf(code).http;
}

export interface ErrorBody {
  error: { code: string; message: string; [k: string]: unknown };
}

export function errorBody(code: ErrorCode | string, message: string, details: Record<string, unknown> = {}): ErrorBody {
  return { error: { ...details, code, message } };
}

/** Turns anything thrown into (status, body). Unknown errors become E_INTERNAL without leaking internals. */
export function toHttpError(err: unknown): { status: number; body: ErrorBody } {
  // A full disk anywhere under a route (fs or SQLite) is a 507 with advice, not an internal error.
  const e = wrapIoError(err, 'handling the request');
  if (isStrataError(e)) return { status: statusForCode(e.code), body: errorBody(e.code, e.message, e.details) };
  const fe = e as Partial<FastifyError> | undefined;
  // fastify's own errors (bad JSON, body too large, unsupported media type) are client errors.
  if (fe && typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const code = fe.statusCode === 413 ? 'E_TOO_LARGE' : 'E_BAD_ARGUMENT';
    return { status: fe.statusCode, body: errorBody(code, fe.message ?? 'bad request') };
  }
  return { status: 500, body: errorBody('E_INTERNAL', 'internal server error; see the server log') };
}

export function sendError(reply: FastifyReply, e: unknown): FastifyReply {
  const { status, body } = toHttpError(e);
  return reply.code(status).type('application/json; charset=utf-8').send(body);
}

export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    // The table's status decides: E_NOTHING_TO_DO, E_NOT_SQUASHFS... are 4xx, the caller's to fix, not the server's.
    const { status } = toHttpError(err);
    if (status >= 500) req.log.error({ err }, 'request failed');
    return sendError(reply, err);
  });
  app.setNotFoundHandler((req, reply) => {
    return sendError(reply, new StrataError('E_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}; see docs/api.md`));
  });
}
