/**
 * Which assignment a booting client gets — a browser copy of
 * store/assignments.ts (the page may not import server code). Same order:
 * MAC, exact IP, the smallest CIDR containing the IP, then `default`.
 * test/web-match.test.ts checks that both give the same answers.
 * Used only for previews; the server decides at boot time.
 */

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)$/;

/** Same rule as node's net.isIP(s) === 4. */
export function isIPv4(s) {
  return IPV4.test(s);
}

/** aa:bb:cc:dd:ee:ff, or null. */
export function normalizeMac(mac) {
  const hex = String(mac)
    .toLowerCase()
    .replace(/[^0-9a-f]/g, '');
  if (hex.length !== 12 || !/^[0-9a-f:.-]+$/i.test(mac)) return null;
  return hex.match(/../g).join(':');
}

function ipv4ToInt(ip) {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

/** { match, kind } in the server's canonical spelling, or null when the text is not a rule. */
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

function cidrContains(cidr, ip) {
  const [net, bitsS] = cidr.split('/');
  const bits = Number(bitsS);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (ipv4ToInt(ip) & mask) >>> 0 === (ipv4ToInt(net) & mask) >>> 0;
}

/** The assignment (from `assignments`) a client with this MAC/IP would get, or null. */
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
 */
export function previewChange(assignments, clients, { add = null, remove = null } = {}) {
  const gone = new Set([add?.match, remove].filter(Boolean));
  const next = [...assignments.filter((a) => !gone.has(a.match)), ...(add ? [add] : [])];
  const rows = [];
  for (const c of clients) {
    const before = matchAssignment(assignments, c.mac, c.ip);
    const after = matchAssignment(next, c.mac, c.ip);
    if ((before && gone.has(before.match)) || (add && after === add))
      rows.push({ client: c, before, after, caught: Boolean(add && after === add) });
  }
  return rows;
}
