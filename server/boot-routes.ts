/**
 * Open routes PXE firmware calls: the boot scripts and the heartbeat.
 * They never answer a bare 404 to firmware: a client that cannot boot now
 * gets a script that says why and asks again later.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Store } from '../store/store.ts';
import { StrataError } from '../store/errors.ts';
import { renderGrub, renderGrubRetry, renderIpxe, renderIpxeRetry, type BootScriptInput } from './boot-scripts.ts';
import type { EventHub } from './events.ts';

/** aa:bb:cc:dd:ee:ff from any common spelling (dashes, dots, no separators, upper case); null if not a MAC. */
export function normalizeMac(raw: string | undefined | null): string | null {
  if (!raw) return null;
  const hex = raw.trim().toLowerCase().replace(/[-:.]/g, '');
  if (!/^[0-9a-f]{12}$/.test(hex)) return null;
  return hex.match(/../g)!.join(':');
}

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
  const host = req.headers.host && /^[A-Za-z0-9.\-:[\]]+$/.test(req.headers.host) ? req.headers.host : `${req.socket.localAddress}:${req.socket.localPort}`;
  return `http://${host}`;
}

export function splitArgs(s: string | null | undefined): string[] {
  return (s ?? '').split(/\s+/).filter((w) => w.length > 0);
}

export function bootArgs(p: { serverUrl: string; commit: string; profile: string; profileCmdline: string; assignmentCmdline: string }): string[] {
  return [`strata.server=${p.serverUrl}`, `strata.commit=${p.commit}`, `strata.profile=${p.profile}`, ...splitArgs(p.profileCmdline), ...splitArgs(p.assignmentCmdline)];
}

export interface BootRouteDeps {
  store: Store;
  events: EventHub;
  publicUrl?: string;
}

type BootQuery = { mac?: string; ip?: string };

export function registerBootRoutes(app: FastifyInstance, deps: BootRouteDeps): void {
  const { store, events } = deps;

  const answer = (flavour: 'ipxe' | 'grub') => async (req: FastifyRequest<{ Querystring: BootQuery }>) => {
    const serverUrl = baseUrl(req, deps.publicUrl);
    const mac = normalizeMac(req.query.mac);
    const ip = normalizeIp(req.query.ip) ?? normalizeIp(req.ip);
    const q = new URLSearchParams();
    if (mac) q.set('mac', mac);
    if (ip) q.set('ip', ip);
    const selfUrl = `${serverUrl}/v1/boot/${flavour}${q.size ? `?${q}` : ''}`;
    const retry = (why: string) => (flavour === 'ipxe' ? renderIpxeRetry(why, selfUrl) : renderGrubRetry(why, selfUrl));
    const who = `${mac ?? 'no MAC'} ${ip ?? 'no IP'}`;

    const hit = store.matchClient(mac, ip);
    if (!hit) return retry(`no assignment matches this client (${who}) and there is no default; run: strata assign ${mac ?? ip ?? 'default'} PROFILE`);
    const commit = store.getCommit(hit.commit);
    const kernel = commit.manifest.kernel ?? hit.profile.kernel;
    const initrd = commit.manifest.initrd ?? hit.profile.initrd;
    if (!kernel) return retry(`profile ${hit.profile.name} has no kernel; import one with strata import ${hit.profile.name} SOURCE --kernel F --initrd F`);
    const input: BootScriptInput = {
      serverUrl,
      kernel: kernel.digest,
      initrd: initrd?.digest ?? null,
      args: bootArgs({ serverUrl, commit: hit.commit, profile: hit.profile.name, profileCmdline: hit.profile.cmdline, assignmentCmdline: hit.assignment.cmdline }),
      banner: `booting ${hit.profile.name} at ${hit.commit.slice(0, 12)} (${who})`,
      selfUrl,
    };
    if (mac) {
      store.recordClient({ mac, ip: ip ?? '', commit: hit.commit, profile: hit.profile.name, boot: true, assignment: hit.assignment.match });
      events.emit('client', { mac, ip, commit: hit.commit, profile: hit.profile.name, boot: true });
    }
    return flavour === 'ipxe' ? renderIpxe(input) : renderGrub(input);
  };

  for (const flavour of ['ipxe', 'grub'] as const) {
    app.get(`/v1/boot/${flavour}`, async (req: FastifyRequest<{ Querystring: BootQuery }>, reply) => {
      const text = await answer(flavour)(req);
      // Scripts name a commit resolved now: never let a cache replay an old one.
      return reply.header('Cache-Control', 'no-store').type('text/plain; charset=utf-8').send(text);
    });
  }

  app.post('/v1/clients/:mac/heartbeat', async (req: FastifyRequest<{ Params: { mac: string }; Body: { ip?: string; commit?: string; profile?: string } | undefined }>) => {
    const mac = normalizeMac(req.params.mac);
    if (!mac) throw new StrataError('E_BAD_ARGUMENT', `"${req.params.mac}" is not a MAC address (aa:bb:cc:dd:ee:ff)`);
    const body = req.body ?? {};
    if (typeof body !== 'object') throw new StrataError('E_BAD_ARGUMENT', 'the heartbeat body is JSON {"commit": "<id>", "ip"?: "..."}');
    const commit = typeof body.commit === 'string' ? body.commit : null;
    if (!commit || !/^[0-9a-f]{64}$/.test(commit)) throw new StrataError('E_BAD_ARGUMENT', 'the heartbeat needs "commit": the full id the client runs');
    store.getCommit(commit); // E_COMMIT_NOT_FOUND for ids this server never had
    const ip = normalizeIp(typeof body.ip === 'string' ? body.ip : null) ?? normalizeIp(req.ip) ?? '';
    const profile = typeof body.profile === 'string' ? body.profile : store.getCommit(commit).profile;
    store.recordClient({ mac, ip, commit, profile, boot: false });
    events.emit('client', { mac, ip, commit, profile, boot: false });
    return { ok: true, mac, ip, commit };
  });
}
