/**
 * Open routes PXE firmware calls: the boot scripts and the heartbeat.
 * They never answer a bare 404 to firmware: a client that cannot boot now
 * gets a script that says why and asks again later.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { Store } from '../store/store.ts';
import { StrataError } from '../store/errors.ts';
import { normalizeMac } from '../protocol/ids.ts';
import { renderGrub, renderGrubRetry, renderIpxe, renderIpxeRetry, type BootScriptInput } from './boot-scripts.ts';
import type { EventHub } from './events.ts';

/** An IPv4-mapped IPv6 address is the IPv4 client it stands for. */
export function normalizeIp(raw: string | undefined | null): string | null {
  if (!raw) return null;
  const t = raw.trim();
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(t);
  const ip = m ? m[1] : t;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(ip) && ip.split('.').every((o) => Number(o) <= 255)) return ip;
  if (/^[0-9a-f:]+$/i.test(ip) && ip.includes(':')) return ip.toLowerCase();
  return null;
}

/** The base URL the client used to reach us, unless the admin fixed one. */
export function baseUrl(req: FastifyRequest, publicUrl?: string): string {
  if (publicUrl) return publicUrl.replace(/\/+$/, '');
  const host =
    req.headers.host && /^[A-Za-z0-9.\-:[\]]+$/.test(req.headers.host)
      ? req.headers.host
      : `${req.socket.localAddress}:${req.socket.localPort}`;
  return `http://${host}`;
}

/**
 * The base URL for a GRUB client. GRUB 2.06 as Debian 12 ships it connects to
 * the port in `(http,HOST:PORT)` but sends `Host: HOST` without the port
 * (docs/decisions.md, "GRUB over HTTP"), so a Host without a port says
 * nothing about the port the client used. On a direct connection that port is
 * the one the request arrived on; through a proxy on loopback it is the
 * proxy's, which only the proxy can tell (X-Forwarded-Port), else the Host
 * header stands as is (port 80). `--public-url` overrides all of this.
 */
export function grubBaseUrl(req: FastifyRequest, publicUrl?: string): string {
  if (publicUrl) return publicUrl.replace(/\/+$/, '');
  const host = req.headers.host && /^[A-Za-z0-9.\-:[\]]+$/.test(req.headers.host) ? req.headers.host : null;
  if (!host || /:\d+$/.test(host)) return baseUrl(req, publicUrl);
  // Behind a proxy: a peer build-server's trustProxy trusts, with X-Forwarded-For.
  // fastify's req.ips then lists more than the peer. (Comparing req.ip with the
  // peer would miss a proxied client that is itself on loopback.)
  const proxied = req.ips !== undefined && req.ips.length > 1;
  const fwdPort = proxied ? headerPort(req.headers['x-forwarded-port']) : null;
  if (proxied) return fwdPort ? `http://${host}:${fwdPort}` : `http://${host}`;
  const port = req.socket.localPort;
  return port ? `http://${host}:${port}` : `http://${host}`;
}

function headerPort(v: string | string[] | undefined): number | null {
  const s = (Array.isArray(v) ? v[0] : v)?.split(',')[0]?.trim();
  const n = s && /^\d{1,5}$/.test(s) ? Number(s) : 0;
  return n >= 1 && n <= 65535 ? n : null;
}

// The kernel command line is part of the boot decision (store/boot-plan.ts).
export { bootArgs, splitArgs } from '../store/boot-plan.ts';

/**
 * GRUB 2.06's HTTP client (net/http.c) matches `Content-Length: ` case
 * sensitively, and without it the file's size is unknown: `configfile` waits
 * for the connection to close, times out, and the machine never boots.
 * Fastify writes header names in lower case, so the GRUB answer's header is
 * renamed as it is written. (The object routes already write
 * `Content-Length` themselves, which is what lets GRUB load kernel and initrd.)
 */
export function spellContentLengthForGrub(res: ServerResponse): void {
  const writeHead = res.writeHead;
  const rename = (h: unknown) => {
    if (!h || typeof h !== 'object' || Array.isArray(h)) return;
    const o = h as Record<string, unknown>;
    if ('content-length' in o) {
      o['Content-Length'] = o['content-length'];
      delete o['content-length'];
    }
  };
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    for (const a of args) rename(a);
    const set = this.getHeader('content-length');
    if (set !== undefined) {
      this.removeHeader('content-length');
      this.setHeader('Content-Length', set);
    }
    return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as ServerResponse['writeHead'];
}

export interface BootRouteDeps {
  store: Store;
  events: EventHub;
  publicUrl?: string;
  /** Where a lease that could not be recorded is reported (default: stderr). */
  log?: (msg: string) => void;
}

type BootQuery = { mac?: unknown; ip?: unknown };

/**
 * The boot query as firmware sends it: at most one mac and one ip. A repeated
 * parameter or a mac that is not one is answered with a script that says so
 * and asks again (firmware shows it), never a 500 or a guess. An empty mac
 * (GRUB's unset $net_default_mac) or an unreadable ip counts as none given.
 */
export function parseBootQuery(q: BootQuery | undefined): { ok: true; mac: string | null; ip: string | null } | { ok: false; why: string } {
  const one = (name: 'mac' | 'ip'): string | null | Error => {
    const v = q?.[name];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string') return new Error(`the boot URL gives ${name}= more than once; give one`);
    return v.trim();
  };
  const rawMac = one('mac');
  const rawIp = one('ip');
  for (const r of [rawMac, rawIp]) if (r instanceof Error) return { ok: false, why: r.message };
  const mac = normalizeMac(rawMac as string | null);
  if (rawMac && !mac)
    return {
      ok: false,
      why: `mac=${JSON.stringify((rawMac as string).slice(0, 40))} in the boot URL is not a MAC address (aa:bb:cc:dd:ee:ff)`,
    };
  return { ok: true, mac, ip: normalizeIp(rawIp as string | null) };
}

export function registerBootRoutes(app: FastifyInstance, deps: BootRouteDeps): void {
  const { store, events } = deps;
  const log = deps.log ?? ((m: string) => process.stderr.write(`strata: ${m}\n`));

  const answer = (flavour: 'ipxe' | 'grub') => async (req: FastifyRequest<{ Querystring: BootQuery }>) => {
    const serverUrl = flavour === 'grub' ? grubBaseUrl(req, deps.publicUrl) : baseUrl(req, deps.publicUrl);
    const query = parseBootQuery(req.query);
    if (!query.ok) {
      const self = `${serverUrl}/v1/boot/${flavour}`;
      return flavour === 'ipxe' ? renderIpxeRetry(query.why, self) : renderGrubRetry(query.why, self);
    }
    const mac = query.mac;
    const ip = query.ip ?? normalizeIp(req.ip);
    const q = new URLSearchParams();
    if (mac) q.set('mac', mac);
    if (ip) q.set('ip', ip);
    const selfUrl = `${serverUrl}/v1/boot/${flavour}${q.size ? `?${q}` : ''}`;
    const retry = (why: string) => (flavour === 'ipxe' ? renderIpxeRetry(why, selfUrl) : renderGrubRetry(why, selfUrl));
    // Settles the client's last boot's health and may serve its last good commit (store/boot-health.ts).
    const plan = store.bootClient(mac, ip, serverUrl, (e) =>
      req.log.warn({ mac, ip, err: e }, 'boot health not recorded for this boot (answered from the stored state)'),
    );
    if (plan.kind === 'retry') return retry(plan.why);
    const input: BootScriptInput = {
      serverUrl,
      kernel: plan.kernel,
      initrd: plan.initrd,
      args: plan.args,
      banner: plan.banner,
      selfUrl,
    };
    if (plan.lease) {
      // Best effort: a machine boots whether or not its lease could be written
      // (a full disk, a locked database); the next boot or heartbeat writes it.
      try {
        store.recordClient(plan.lease);
        events.emit('client', {
          mac: plan.lease.mac,
          ip,
          commit: plan.commit,
          profile: plan.profile,
          boot: true,
          heldBack: plan.heldBack ?? null,
        });
      } catch (e) {
        log(`boot: served ${plan.lease.mac} without recording its lease: ${(e as Error).message}`);
      }
    }
    return flavour === 'ipxe' ? renderIpxe(input) : renderGrub(input);
  };

  for (const flavour of ['ipxe', 'grub'] as const) {
    app.get(`/v1/boot/${flavour}`, async (req: FastifyRequest<{ Querystring: BootQuery }>, reply) => {
      let text: string;
      try {
        text = await answer(flavour)(req);
      } catch (e) {
        // Firmware shows a script, not JSON: whatever failed, say it and ask again.
        const q = parseBootQuery(req.query);
        const params = new URLSearchParams(
          q.ok ? Object.entries({ mac: q.mac, ip: q.ip }).filter((kv): kv is [string, string] => !!kv[1]) : [],
        );
        const base = flavour === 'grub' ? grubBaseUrl(req, deps.publicUrl) : baseUrl(req, deps.publicUrl);
        const self = `${base}/v1/boot/${flavour}${params.size ? `?${params}` : ''}`;
        const why = `the server could not answer this boot (${(e as Error).message ?? String(e)})`;
        text = flavour === 'ipxe' ? renderIpxeRetry(why, self) : renderGrubRetry(why, self);
      }
      if (flavour === 'grub') spellContentLengthForGrub(reply.raw);
      // Scripts name a commit resolved now: never let a cache replay an old one.
      return reply.header('Cache-Control', 'no-store').type('text/plain; charset=utf-8').send(text);
    });
  }

  app.post(
    '/v1/clients/:mac/heartbeat',
    async (req: FastifyRequest<{ Params: { mac: string }; Body: { ip?: string; commit?: string; profile?: string } | undefined }>) => {
      const mac = normalizeMac(req.params.mac);
      if (!mac) throw new StrataError('E_BAD_ARGUMENT', `"${req.params.mac}" is not a MAC address (aa:bb:cc:dd:ee:ff)`);
      const body = req.body ?? {};
      if (typeof body !== 'object') throw new StrataError('E_BAD_ARGUMENT', 'the heartbeat body is JSON {"commit": "<id>", "ip"?: "..."}');
      const commit = typeof body.commit === 'string' ? body.commit : null;
      if (!commit || !/^[0-9a-f]{64}$/.test(commit))
        throw new StrataError('E_BAD_ARGUMENT', 'the heartbeat needs "commit": the full id the client runs');
      store.getCommit(commit); // E_COMMIT_NOT_FOUND for ids this server never had
      const ip = normalizeIp(typeof body.ip === 'string' ? body.ip : null) ?? normalizeIp(req.ip) ?? '';
      const refusal = store.heartbeatRefusal(mac, ip || null, commit);
      if (refusal) throw new StrataError('E_FORBIDDEN', refusal);
      const profile = typeof body.profile === 'string' ? body.profile : store.getCommit(commit).profile;
      store.recordClient({ mac, ip, commit, profile, boot: false });
      events.emit('client', { mac, ip, commit, profile, boot: false });
      return { ok: true, mac, ip, commit };
    },
  );
}
