// @ts-check
/**
 * The pushes view: pushes that came in over SSH, newest first — waiting,
 * baking, committed (a link to the commit) or rejected with the reason.
 * A push that waits (or keeps failing: its attempts and last error show)
 * can be rejected here, like `strata push reject ID`.
 */
import { api } from '../api.js';
import { ask } from '../dialogs.js';
import { $, bytes, code, enc, h, muted, short, table, time } from '../dom.js';
import { change } from '../loaders.js';
import { S } from '../state.js';
import { showCommit } from './history.js';

/** @param {import('../api-types.js').Push} p */
async function rejectPush(p) {
  const ok = await ask({
    title: `Reject push ${p.id}?`,
    body: [h('p', {}, `The push to ${p.profile} is not baked; its archive is deleted and the pusher sees it rejected.`)],
    ok: 'Reject',
    danger: true,
  });
  if (ok)
    await change(`Rejecting push ${p.id}`, () => api('POST', `/v1/pushes/${enc(p.id)}/reject`, {}), `push ${p.id} rejected`, ['pushes']);
}

/** @param {import('../api-types.js').Push} p */
function pendingCell(p) {
  const tries = p.attempts ? ` (${p.attempts} attempt${p.attempts > 1 ? 's' : ''}${p.lastError ? `, last: ${p.lastError}` : ''})` : '';
  return [
    muted(`${p.state === 'baking' ? 'baking a layer…' : 'waiting'}${tries}`),
    ' ',
    h('button', { type: 'button', class: 'danger', onclick: () => rejectPush(p) }, 'Reject'),
  ];
}

export function renderPushes() {
  const box = $('#pushes-table');
  const waiting = S.pushes.filter((p) => p.state === 'queued' || p.state === 'baking').length;
  $('#count-pushes').textContent = waiting ? `(${waiting} waiting)` : '';
  if (!S.pushes.length) {
    box.replaceChildren(h('p', { class: 'muted' }, 'No pushes yet.'));
    return;
  }
  box.replaceChildren(
    table(
      'Pushes, newest first',
      [
        { label: 'Push', cell: (p) => code(p.id) },
        { label: 'State', cell: (p) => h('span', { class: `state ${p.state}` }, p.state) },
        { label: 'Profile', cell: (p) => p.profile },
        { label: 'Message', cell: (p) => p.message || muted('(none)') },
        { label: 'Author', cell: (p) => p.author },
        { label: 'Size', cell: (p) => bytes(p.bytes) },
        { label: 'Pushed', cell: (p) => time(p.createdAt) },
        {
          label: 'Result',
          cell: (p) => {
            if (p.state === 'rejected') return h('span', { class: 'reason' }, p.reason ?? 'rejected');
            if (p.state === 'committed' && p.commit)
              return [
                h('button', { type: 'button', class: 'link', onclick: () => p.commit && showCommit(p.profile, p.commit) }, short(p.commit)),
                p.branch ? [' on new branch ', code(p.branch)] : ` on ${p.profile}`,
              ];
            return pendingCell(p);
          },
        },
      ],
      S.pushes,
      (p) => `push-${p.state}`,
    ),
  );
}
