/**
 * Assembles the HTTP application (does not listen): open boot and object
 * routes, the token-protected admin API, the SSE stream and the web UI.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Store } from '../store/store.ts';
import { registerAdminRoutes } from './admin-routes.ts';
import { registerEnrollRoutes } from './enroll-routes.ts';
import { registerHeartbeatRoutes } from './heartbeat-routes.ts';
import { registerBootHealthRoutes } from './boot-health-routes.ts';
import { registerBootRoutes } from './boot-routes.ts';
import { registerBuildRoutes } from './build-routes.ts';
import { EventHub } from './events.ts';
import { installErrorHandlers } from './http-errors.ts';
import { registerObjectRoutes } from './object-routes.ts';
import { registerWebRoutes } from './web-routes.ts';
import { serverLimits, type ServerLimits } from './limits.ts';

export interface BuildServerDeps {
  store: Store;
  /** Base URL written into boot scripts; default: derived from each request's Host header. */
  publicUrl?: string;
  logger?: boolean;
  /** Folder with index.html, *.js, *.css of the web UI; no UI routes without it. */
  webDir?: string;
  /** Shared with the SSH endpoint and the baker so the UI sees pushes; a new one if absent. */
  events?: EventHub;
  /** Pace each object download (bytes/s); off by default (ipxe #1023 workaround). */
  objectRateLimit?: number;
  /** HTTP timeouts (server/limits.ts); defaults when absent. */
  limits?: Partial<ServerLimits>;
  /** Where best-effort failures (a lease not recorded) are reported; default: stderr. */
  log?: (msg: string) => void;
  /** Starts the build queue at once (the main process); without it the main process's timer picks queued builds up. */
  kickBuilds?: () => void;
}

export function buildServer(deps: BuildServerDeps): FastifyInstance {
  const events = deps.events ?? new EventHub();
  const limits = serverLimits(deps.limits);
  const app = Fastify({
    logger: deps.logger ?? false,
    // Admin JSON bodies are small; pushes go over SSH.
    bodyLimit: 1024 * 1024,
    // The iPXE firmware and curl both send plain requests; keep the defaults otherwise.
    forceCloseConnections: true,
    // Behind the nginx front that `strata nginx-conf` makes (on the same
    // host), the client's address arrives in X-Forwarded-For; assignments by
    // IP and CIDR need it. Only a proxy on loopback is believed.
    trustProxy: ['127.0.0.1', '::1'],
    // A request (body included) must arrive within this: a POST trickling a
    // byte every few seconds is answered 408 and closed instead of holding an fd.
    requestTimeout: limits.httpRequestTimeoutMs,
    keepAliveTimeout: limits.httpKeepAliveTimeoutMs,
    // Node's request and headers timeouts start at a request's first byte; a
    // connection that never sends one is closed by this inactivity timeout.
    connectionTimeout: limits.httpIdleTimeoutMs,
    // Node checks the two timeouts above on this period (default 30 s); short
    // timeouts need a finer one to be kept to.
    http: { connectionsCheckingInterval: checkingInterval(limits) },
  });
  // Not a Fastify option; Node's default (60 s) is longer than the request timeout may be.
  app.server.headersTimeout = headersTimeout(limits);
  installErrorHandlers(app);
  // An empty body with Content-Type: application/json (curl -X POST -H ...) means {}.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, {});
    try {
      done(null, JSON.parse(text));
    } catch {
      const err = new Error('the body is not valid JSON') as Error & { statusCode: number };
      err.statusCode = 400;
      done(err, undefined);
    }
  });
  registerObjectRoutes(app, deps.store, { rateLimitBytesPerSec: deps.objectRateLimit });
  registerBootRoutes(app, { store: deps.store, events, publicUrl: deps.publicUrl, log: deps.log });
  registerAdminRoutes(app, { store: deps.store, events });
  registerEnrollRoutes(app, { store: deps.store, events });
  registerHeartbeatRoutes(app, { store: deps.store, events });
  registerBootHealthRoutes(app, { store: deps.store, events });
  registerBuildRoutes(app, { store: deps.store, events, kick: deps.kickBuilds });
  if (deps.webDir) registerWebRoutes(app, deps.webDir);
  return app;
}

function checkingInterval(l: ServerLimits): number {
  const shortest = Math.min(...[l.httpRequestTimeoutMs, l.httpHeadersTimeoutMs].filter((t) => t > 0));
  return Number.isFinite(shortest) ? Math.max(250, Math.min(30_000, Math.floor(shortest / 4))) : 30_000;
}

/** Node refuses a headers timeout longer than the request timeout. */
function headersTimeout(l: ServerLimits): number {
  if (l.httpRequestTimeoutMs > 0 && (l.httpHeadersTimeoutMs <= 0 || l.httpHeadersTimeoutMs > l.httpRequestTimeoutMs))
    return l.httpRequestTimeoutMs;
  return l.httpHeadersTimeoutMs;
}
