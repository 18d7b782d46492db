// @ts-check
/**
 * What every part of the page builds with: a tiny element builder, a table
 * that becomes cards on narrow screens, and the formatters for ids, sizes and
 * times. Text always goes in as text nodes (never HTML), so user-supplied
 * names and messages cannot inject markup.
 */

/**
 * The element index.html has for `sel`. Typed loosely: the page's elements
 * are of many kinds (inputs, dialogs, selects) and index.html, not the
 * selector, says which.
 * @param {string} sel
 * @returns {any}
 */
export const $ = (sel) => document.querySelector(sel);

/** @typedef {Node | string | number | null | undefined | false} Child */
/** @typedef {(Child | Children)[]} Children */

/**
 * h('p', { class: 'x', onclick: fn }, 'text', node, ...)
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown> | null} [attrs]
 * @param {Children} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else if (k === 'class') e.className = String(v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

/** @param {string | number} s */
export const code = (s) => h('code', {}, s);

/** Greyed-out words standing in for a missing value: '(none)', 'never', ... */
/** @param {string} text */
export const muted = (text) => h('span', { class: 'muted' }, text);

/**
 * A table that turns into labelled cards on narrow screens (CSS uses data-label).
 * @template R
 * @param {string} caption
 * @param {{ label: string, cell: (row: R) => Child | Children }[]} columns
 * @param {R[]} rows
 * @param {(row: R) => string | undefined} [rowClass]
 */
export function table(caption, columns, rows, rowClass) {
  return h(
    'table',
    { class: 'data' },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, ...columns.map((c) => h('th', { scope: 'col' }, c.label)))),
    h(
      'tbody',
      {},
      ...rows.map((r) =>
        h(
          'tr',
          { class: rowClass ? rowClass(r) : undefined },
          ...columns.map((c) => h('td', { 'data-label': c.label }, h('div', { class: 'cell' }, c.cell(r)))),
        ),
      ),
    ),
  );
}

// ------------------------------------------------------------------ formatters

/** @param {string | null | undefined} id */
export const short = (id) => (id ? id.slice(0, 12) : '—');
export const enc = encodeURIComponent;
/**
 * @param {number} n
 * @param {string} one
 * @param {string} [many]
 */
export const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** @param {number | null | undefined} n */
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i ? v.toFixed(v < 10 ? 1 : 0) : v} ${u[i]}`;
}

/** @param {number} ms */
function ago(ms) {
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** @param {number | null | undefined} ms */
export function time(ms) {
  if (!ms) return muted('never');
  const d = new Date(ms);
  return h(
    'time',
    { datetime: d.toISOString(), title: d.toLocaleString() },
    `${d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' })} (${ago(ms)})`,
  );
}
