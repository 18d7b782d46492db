// @ts-check
/**
 * The history graph: dagre (served at /vendor/dagre.min.js, a global) lays
 * out the commits, this module draws them as SVG. Newest on top; an edge goes
 * from a commit down to its parent, dashed to a merge parent (a stacked push's
 * declared parent). Each node is a button: click, Enter or Space selects it.
 * Commits no branch or tag reaches but gc still keeps ("held": a reflog
 * entry, a pin, a client running it) are drawn dimmed with a dashed border
 * and a "kept: ..." badge saying why.
 */

/**
 * What the graph shows of a commit.
 * @typedef {Pick<import('./api-types.js').Commit, 'id' | 'parent' | 'mergeParent' | 'message' | 'author' | 'createdAt' | 'kind'>} GraphCommit
 */
/**
 * What the graph marks: refs, pins (id -> matches), clients (id -> count), held commits (id -> reasons).
 * @typedef {object} GraphInfo
 * @property {import('./api-types.js').Ref[]} refs
 * @property {Map<string, string[]>} pins
 * @property {Map<string, number>} clients
 * @property {Map<string, string[]>} [held]
 * @property {string | null} head
 * @property {string | null} selected
 * @property {string} profile
 */

const SVG = 'http://www.w3.org/2000/svg';
const NODE_W = 260;
const NODE_H = 66;
const CHAR_W = 6.7; // 11px monospace badge text
const MSG_CHARS = 34;

/**
 * @param {string} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {string} [text]
 */
function el(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null && v !== false) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** @param {string} id */
const short = (id) => id.slice(0, 10);
/**
 * @param {string} s
 * @param {number} n
 */
const clip = (s, n) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/**
 * Badges of one commit: branches (heads), tags, pins (assignments fixed to
 * it) and clients running it now.
 * @param {string} id
 * @param {GraphInfo} info
 * @returns {{ cls: string, text: string }[]}
 */
export function badgesFor(id, info) {
  /** @type {{ cls: string, text: string }[]} */
  const b = [];
  const held = info.held?.get(id);
  // A held commit's pins and clients are part of its "kept" reasons.
  if (held) return [{ cls: 'held', text: `kept: ${held.join(', ')}` }];
  for (const r of info.refs)
    if (r.commit === id) b.push({ cls: r.type === 'tag' ? 'tag' : 'branch', text: r.type === 'tag' ? `tag ${r.name}` : r.name });
  for (const p of info.pins.get(id) ?? []) b.push({ cls: 'pin', text: `pin ${p}` });
  const n = info.clients.get(id) ?? 0;
  if (n) b.push({ cls: 'clients', text: n === 1 ? '1 client runs this' : `${n} clients run this` });
  return b;
}

/** Runs dagre; returns { width, height, nodes: Map(id -> {x,y,w,h}), edges: [{from,to,merge,points}] }. */
/**
 * @param {GraphCommit[]} commits
 * @param {GraphInfo} info
 */
export function layout(commits, info) {
  // dagre is a classic script (index.html), untyped here.
  const dagre = /** @type {any} */ (globalThis).dagre;
  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: 'TB', nodesep: 24, ranksep: 34, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  const ids = new Set(commits.map((c) => c.id));
  for (const c of commits) {
    const badges = badgesFor(c.id, info);
    const badgeW = badges.reduce((w, x) => w + x.text.length * CHAR_W + 16, 0) + 16;
    g.setNode(c.id, { width: Math.max(NODE_W, Math.ceil(badgeW)), height: NODE_H });
  }
  for (const c of commits) {
    if (c.parent && ids.has(c.parent)) g.setEdge(c.id, c.parent, { weight: 4, minlen: 1 }, 'parent');
    if (c.mergeParent && ids.has(c.mergeParent)) g.setEdge(c.id, c.mergeParent, { weight: 1, minlen: 1 }, 'merge');
  }
  dagre.layout(g);
  /** @type {Map<string, { x: number, y: number, w: number, h: number }>} */
  const nodes = new Map();
  for (const id of g.nodes()) {
    const n = g.node(id);
    nodes.set(id, { x: n.x, y: n.y, w: n.width, h: n.height });
  }
  const edges = g.edges().map((/** @type {{ v: string, w: string, name?: string }} */ e) => ({
    from: e.v,
    to: e.w,
    merge: e.name === 'merge',
    held: Boolean(info.held?.has(e.v)),
    points: g.edge(e).points,
  }));
  const gg = g.graph();
  return { width: Math.ceil(gg.width ?? NODE_W), height: Math.ceil(gg.height ?? NODE_H), nodes, edges };
}

/**
 * Draws the graph into `container` (replacing what was there).
 * @param {HTMLElement} container
 * @param {GraphCommit[]} commits
 * @param {GraphInfo} info
 * @param {(id: string) => void} onSelect
 */
export function renderGraph(container, commits, info, onSelect) {
  container.replaceChildren();
  if (!commits.length) {
    const p = document.createElement('p');
    p.textContent = 'No commits yet.';
    container.append(p);
    return;
  }
  const L = layout(commits, info);
  const heldCount = info.held?.size ?? 0;
  const summary = `History of ${info.profile}, ${commits.length} commits${heldCount ? ` (${heldCount} on no branch, kept by gc)` : ''}, newest on top`;
  const svg = el('svg', { width: L.width, height: L.height, viewBox: `0 0 ${L.width} ${L.height}`, class: 'graph', 'aria-label': summary });
  svg.append(el('title', {}, `History of ${info.profile}`));
  const defs = el('defs');
  const marker = el('marker', {
    id: 'arrow',
    viewBox: '0 0 10 10',
    refX: 9,
    refY: 5,
    markerWidth: 7,
    markerHeight: 7,
    orient: 'auto-start-reverse',
  });
  marker.append(el('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }));
  defs.append(marker);
  svg.append(defs);

  const edgeLayer = el('g', { class: 'edges', 'aria-hidden': 'true' });
  for (const e of L.edges) {
    const d = e.points
      .map((/** @type {{ x: number, y: number }} */ p, /** @type {number} */ i) => `${i ? 'L' : 'M'} ${p.x.toFixed(1)} ${p.y.toFixed(1)}`)
      .join(' ');
    edgeLayer.append(el('path', { d, class: `edge${e.merge ? ' merge' : ''}${e.held ? ' held' : ''}`, 'marker-end': 'url(#arrow)' }));
  }
  svg.append(edgeLayer);

  const byId = new Map(commits.map((c) => [c.id, c]));
  for (const [id, n] of L.nodes) {
    const c = byId.get(id);
    if (!c) continue;
    const badges = badgesFor(id, info);
    const x0 = n.x - n.w / 2;
    const y0 = n.y - n.h / 2;
    const classes = ['node', `kind-${c.kind}`];
    if (id === info.head) classes.push('head');
    if (id === info.selected) classes.push('selected');
    if (c.mergeParent) classes.push('merge');
    const held = info.held?.has(id);
    if (held) classes.push('held');
    const label = [
      `commit ${short(id)}`,
      c.kind,
      held ? 'on no branch or tag' : '',
      c.message || '(no message)',
      c.mergeParent ? 'merge' : '',
      ...badges.map((b) => b.text),
      id === info.head ? `head of ${info.profile}` : '',
    ]
      .filter(Boolean)
      .join('; ');
    const g = el('g', {
      class: classes.join(' '),
      tabindex: 0,
      role: 'button',
      'aria-pressed': id === info.selected ? 'true' : 'false',
      'aria-label': label,
      'data-commit': id,
      transform: `translate(${x0.toFixed(1)} ${y0.toFixed(1)})`,
    });
    g.append(el('rect', { width: n.w, height: n.h, rx: 7, ry: 7, class: 'box' }));
    const line1 = el('text', { x: 10, y: 19, class: 'id' });
    line1.append(el('tspan', { class: 'mono' }, short(id)));
    line1.append(
      el('tspan', { class: 'kind', dx: 8 }, [c.kind, c.mergeParent ? 'merge' : '', held ? 'no branch' : ''].filter(Boolean).join(' · ')),
    );
    g.append(line1);
    g.append(el('text', { x: 10, y: 37, class: 'msg' }, clip(c.message || '(no message)', Math.floor((n.w - 20) / 7.2) || MSG_CHARS)));
    let bx = 8;
    for (const b of badges) {
      const w = b.text.length * CHAR_W + 12;
      const bg = el('g', { class: `badge ${b.cls}`, transform: `translate(${bx.toFixed(1)} 46)` });
      bg.append(el('rect', { width: w.toFixed(1), height: 15, rx: 7.5, ry: 7.5 }));
      bg.append(el('text', { x: 6, y: 11.5 }, b.text));
      g.append(bg);
      bx += w + 4;
    }
    const choose = () => onSelect(id);
    g.addEventListener('click', choose);
    g.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        choose();
      }
    });
    svg.append(g);
  }
  container.append(svg);
}
