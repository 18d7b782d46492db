// @ts-check
/**
 * The pushes view: pushes that came in over SSH, newest first — waiting,
 * baking, committed (a link to the commit) or rejected with the reason.
 */
import { $, bytes, code, h, muted, short, table, time } from '../dom.js';
import { S } from '../state.js';
import { showCommit } from './history.js';

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
            return muted(p.state === 'baking' ? 'baking a layer…' : 'waiting');
          },
        },
      ],
      S.pushes,
      (p) => `push-${p.state}`,
    ),
  );
}
