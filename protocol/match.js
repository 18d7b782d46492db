// @ts-check
/**
 * Which assignment a booting client gets. ONE file for the server (through
 * store/assignments.ts, which decides at boot) and the browser (served as
 * /protocol/match.js, for previews): plain JavaScript with JSDoc types, no
 * imports, so node, tsx and the page load the very same code.
 * Order: MAC, exact IP, the smallest (most specific) CIDR containing the IP,
 * then `default`.
 */

/** @typedef {'mac' | 'ip' | 'cidr' | 'default'} MatchKind */
/** @typedef {{ match: string, kind: MatchKind }} Rule */

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)$/;

/**
 * Dotted-quad IPv4 without leading zeros (the same rule as node's net.isIP(s) === 4).
 * @param {string} s
 * @returns {boolean}
 */
export function isIPv4(s) {
  return IPV4.test(s);
}

/**
 * aa:bb:cc:dd:ee:ff from any common spelling (dashes, dots, colons, none; any case); null if not a MAC.
 * @param {string | null | undefined} raw
 * @returns {string | null}
 */
export function normalizeMac(raw) {
  if (!raw) return null;
  const t = String(raw).trim();
  if (!/^[0-9a-f:.-]+$/i.test(t)) return null;
  const hex = t.toLowerCase().replace(/[-:.]/g, '');
  if (!/^[0-9a-f]{12}$/.test(hex)) return null;
  return /** @type {string[]} */ (hex.match(/../g)).join(':');
}

/**
 * @param {string} ip
 * @returns {number}
 */
function ipv4ToInt(ip) {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

/**
 * A rule's text in the server's canonical spelling, or null when it is not a rule.
 * @param {string} text
 * @returns {Rule | null}
 */
export function parseMatch(text) {
  const m = String(text).trim();
  if (m === 'default') return { match: 'default', kind: 'default' };
  const mac = normalizeMac(m);
  if (mac && /[:.-]/.test(m)) return { match: mac, kind: 'mac' };
  if (isIPv4(m)) return { match: m, kind: 'ip' };
  const c = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(m);
  if (c && isIPv4(c[1]) && Number(c[2]) <= 32) {
    const bits = Number(c[2]);
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    const net = (ipv4ToInt(c[1]) & mask) >>> 0;
    const canon = [24, 16, 8, 0].map((s) => (net >>> s) & 255).join('.');
    return { match: `${canon}/${bits}`, kind: 'cidr' };
  }
  return null;
}

/**
 * @param {string} cidr
 * @param {string} ip
 * @returns {boolean}
 */
function cidrContains(cidr, ip) {
  const [net, bitsS] = cidr.split('/');
  const bits = Number(bitsS);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (ipv4ToInt(ip) & mask) >>> 0 === (ipv4ToInt(net) & mask) >>> 0;
}

/**
 * The assignment a client with this MAC/IP gets, or null.
 * @template {Rule} A
 * @param {A[]} assignments
 * @param {string | null | undefined} mac
 * @param {string | null | undefined} ip
 * @returns {A | null}
 */
export function matchAssignment(assignments, mac, ip) {
  const m = mac ? normalizeMac(mac) : null;
  if (m) {
    const a = assignments.find((x) => x.kind === 'mac' && x.match === m);
    if (a) return a;
  }
  const v4 = ip ? String(ip).replace(/^::ffff:/, '') : null;
  if (v4 && isIPv4(v4)) {
    const exact = assignments.find((x) => x.kind === 'ip' && x.match === v4);
    if (exact) return exact;
    const cidrs = assignments
      .filter((x) => x.kind === 'cidr' && cidrContains(x.match, v4))
      .sort((a, b) => Number(b.match.split('/')[1]) - Number(a.match.split('/')[1]));
    if (cidrs[0]) return cidrs[0];
  }
  return assignments.find((x) => x.kind === 'default') ?? null;
}

/**
 * What a change of the rules means for the known clients: `add` is a rule
 * being added (it replaces a rule with the same match), `remove` the match of
 * a rule being removed (or the old match of an edited rule). Returns the
 * clients involved, with the rule they get today and after the change.
 * @template {Rule} A
 * @template {{ mac: string | null, ip: string | null }} C
 * @param {A[]} assignments
 * @param {C[]} clients
 * @param {{ add?: A | null, remove?: string | null }} [change]
 * @returns {{ client: C, before: A | null, after: A | null, caught: boolean }[]}
 */
export function previewChange(assignments, clients, { add = null, remove = null } = {}) {
  const gone = new Set([add?.match, remove].filter(Boolean));
  const next = [...assignments.filter((a) => !gone.has(a.match)), ...(add ? [add] : [])];
  /** @type {{ client: C, before: A | null, after: A | null, caught: boolean }[]} */
  const rows = [];
  for (const c of clients) {
    const before = matchAssignment(assignments, c.mac, c.ip);
    const after = matchAssignment(next, c.mac, c.ip);
    if ((before && gone.has(before.match)) || (add && after === add))
      rows.push({ client: c, before, after, caught: Boolean(add && after === add) });
  }
  return rows;
}
