/**
 * Bearer-token authentication for the admin API. Tokens come from
 * `strata token create` and are checked by the store (stored hashed).
 *
 * Only the Authorization header is read, on every route including the
 * event stream: a token never appears in a URL, where it would be logged,
 * cached or kept in browser history. (The web UI reads the event stream with
 * fetch(), which can send the header; EventSource cannot.)
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { StrataError } from '../store/errors.ts';

export interface TokenVerifier {
  verifyToken(token: string): { name: string } | null;
}

export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^\s*Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : null;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The token's name, for authorship of admin actions; set by requireToken. */
    tokenName?: string;
  }
}

export function requireToken(verifier: TokenVerifier) {
  return async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const token = bearerToken(req.headers.authorization);
    if (!token)
      throw new StrataError(
        'E_UNAUTHORIZED',
        'this route needs a token: send "Authorization: Bearer <token>" (make one with strata token create NAME)',
      );
    const who = verifier.verifyToken(token);
    if (!who) throw new StrataError('E_UNAUTHORIZED', 'the token is not valid; make a new one with strata token create NAME');
    req.tokenName = who.name;
  };
}
