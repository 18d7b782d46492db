// @ts-check
/**
 * Talking to the admin API. The token lives in sessionStorage (gone when the
 * tab closes) and travels only in the Authorization header — never in a URL,
 * not even for the live event stream, which is read with fetch() instead of
 * EventSource because EventSource cannot send headers.
 */

const KEY = 'strata.token';

export const session = {
  get: () => sessionStorage.getItem(KEY),
  /** @param {string} t */
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {import('./api-types.js').ApiErrorBody} error
   */
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || 'E_HTTP';
    this.details = error;
  }
}

/**
 * One JSON call; throws ApiError with the server's code, message and details.
 * The caller names the answer's type (an api-types.js envelope).
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {string | null} [token]
 * @returns {Promise<any>}
 */
export async function api(method, path, body, token = session.get()) {
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, { code: 'E_NETWORK', message: `cannot reach the server (${e instanceof Error ? e.message : e})` });
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, data?.error || { code: 'E_HTTP', message: `${res.status} ${res.statusText}` });
  return data;
}

/**
 * Splits a text/event-stream into { type, data } events; returns what is left unparsed.
 * @param {string} buffer
 * @param {(e: import('./api-types.js').ServerEvent) => void} onEvent
 */
export function parseSse(buffer, onEvent) {
  let rest = buffer;
  for (let i = rest.indexOf('\n\n'); i >= 0; i = rest.indexOf('\n\n')) {
    const frame = rest.slice(0, i);
    rest = rest.slice(i + 2);
    let type = 'message';
    const data = [];
    for (const line of frame.split('\n')) {
      if (line.startsWith(':')) continue;
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
      if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length) {
      let parsed;
      try {
        parsed = JSON.parse(data.join('\n'));
      } catch {
        parsed = data.join('\n');
      }
      onEvent({ type, data: parsed });
    }
  }
  return rest;
}

/**
 * Streams /v1/events with the token in a header; reconnects with backoff.
 * onState('live' | 'reconnecting' | 'unauthorized'). Returns stop().
 */
/**
 * @param {(e: import('./api-types.js').ServerEvent) => void} onEvent
 * @param {(state: 'live' | 'reconnecting' | 'unauthorized') => void} onState
 * @returns {() => void}
 */
export function streamEvents(onEvent, onState) {
  let stopped = false;
  /** @type {AbortController | null} */
  let ctrl = null;
  let delay = 1000;
  /** @param {number} ms */
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  (async () => {
    while (!stopped) {
      ctrl = new AbortController();
      try {
        const res = await fetch('/v1/events', {
          headers: { Authorization: `Bearer ${session.get()}`, Accept: 'text/event-stream' },
          signal: ctrl.signal,
          cache: 'no-store',
        });
        if (res.status === 401) {
          onState('unauthorized');
          return;
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        onState('live');
        delay = 1000;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf = parseSse(buf + value.replace(/\r/g, ''), onEvent);
        }
      } catch {
        // aborted or the connection dropped: fall through to reconnect
      }
      if (stopped) return;
      onState('reconnecting');
      await sleep(delay);
      delay = Math.min(delay * 2, 15000);
    }
  })();
  return () => {
    stopped = true;
    if (ctrl) ctrl.abort();
  };
}
