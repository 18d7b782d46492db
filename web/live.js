// @ts-check
/**
 * Live updates: events from /v1/events schedule reloads of the data they
 * touch; the header says whether the stream is up. After a dropped
 * connection everything is reloaded once, since events may have been missed.
 */
import { streamEvents } from './api.js';
import { toast } from './dialogs.js';
import { $ } from './dom.js';
import { KINDS, schedule } from './loaders.js';
import { S } from './state.js';
import { wired } from './wiring.js';

/**
 * @param {string} text
 * @param {string} cls
 */
function setLive(text, cls) {
  const l = $('#live');
  l.textContent = text === 'live' ? 'Live updates on' : `Live updates ${text}`;
  l.className = `live ${cls}`;
}

/** @param {import('./api-types.js').ServerEvent} e */
function onEvent(e) {
  const d = e.data ?? {};
  if (e.type === 'push') {
    schedule('pushes');
    if (d.state === 'committed') schedule('profiles');
    if (d.state === 'committed' || d.state === 'rejected') toast(`Push ${d.id} ${d.state}${d.reason ? `: ${d.reason}` : ''}`);
  } else if (e.type === 'progress') {
    if (d.action === 'flatten' && d.total > 0)
      toast(`Flattening ${d.profile}: ${Math.floor((100 * d.done) / d.total)}% of ${Math.round(d.total / 1e6)} MB merged`);
  } else if (e.type === 'client') {
    schedule('clients');
  } else if (e.type === 'ref') {
    schedule('profiles', 'assignments');
    // What gc would remove may have changed: the last check is no longer the truth.
    if (S.gc.preview && !S.gc.busy) {
      S.gc.stale = true;
      wired.renderGc();
    }
  }
}

/** Starts the event stream; returns stop(). */
export function startLive() {
  setLive('connecting…', 'wait');
  return streamEvents(onEvent, (state) => {
    if (state === 'live') {
      setLive('live', 'ok');
      // Events may have been missed while disconnected: catch up.
      schedule(...KINDS);
    } else if (state === 'unauthorized') wired.logout('The server refused the token; log in again.');
    else setLive('reconnecting…', 'wait');
  });
}
