/**
 * Which assignment a booting client gets. Pure: the order is MAC, exact IP,
 * the smallest (most specific) CIDR containing the IP, then `default`.
 */
import { isIP } from 'node:net';
import { StrataError } from './errors.ts';
import type { Assignment } from './types.ts';

export function normalizeMac(mac: string): string | null {
  const hex = mac.toLowerCase().replace(/[^0-9a-f]/g, '');
  if (hex.length !== 12 || !/^[0-9a-f:.-]+$/i.test(mac)) return null;
  return hex.match(/../g)!.join(':');
}

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function parseMatch(match: string): { match: string; kind: Assignment['kind'] } {
  const m = match.trim();
  if (m === 'default') return { match: 'default', kind: 'default' };
  const mac = normalizeMac(m);
  if (mac && /[:.-]/.test(m)) return { match: mac, kind: 'mac' };
  if (isIP(m) === 4) return { match: m, kind: 'ip' };
  const c = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(m);
  if (c && isIP(c[1]!) === 4 && Number(c[2]) <= 32) {
    const bits = Number(c[2]);
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    const net = (ipv4ToInt(c[1]!) & mask) >>> 0;
    const canon = [24, 16, 8, 0].map((s) => (net >>> s) & 255).join('.');
    return { match: `${canon}/${bits}`, kind: 'cidr' };
  }
  throw new StrataError(
    'E_BAD_ARGUMENT',
    `cannot read "${match}" as a MAC (aa:bb:cc:dd:ee:ff), an IPv4 address, a CIDR (10.0.0.0/24) or "default"`,
  );
}

function cidrContains(cidr: string, ip: string): boolean {
  const [net, bitsS] = cidr.split('/');
  const bits = Number(bitsS);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (ipv4ToInt(ip) & mask) >>> 0 === (ipv4ToInt(net!) & mask) >>> 0;
}

export function matchAssignment(assignments: Assignment[], mac: string | null, ip: string | null): Assignment | null {
  const m = mac ? normalizeMac(mac) : null;
  if (m) {
    const a = assignments.find((x) => x.kind === 'mac' && x.match === m);
    if (a) return a;
  }
  const v4 = ip ? ip.replace(/^::ffff:/, '') : null;
  if (v4 && isIP(v4) === 4) {
    const exact = assignments.find((x) => x.kind === 'ip' && x.match === v4);
    if (exact) return exact;
    const cidrs = assignments
      .filter((x) => x.kind === 'cidr' && cidrContains(x.match, v4))
      .sort((a, b) => Number(b.match.split('/')[1]) - Number(a.match.split('/')[1]));
    if (cidrs[0]) return cidrs[0];
  }
  return assignments.find((x) => x.kind === 'default') ?? null;
}
