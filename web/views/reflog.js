// @ts-check
/**
 * The reflog under the graph: every move of one branch, newest first, with
 * buttons to undo the newest move or roll back to any earlier head.
 */
import { $, h, muted, short, table, time } from '../dom.js';
import { reload } from '../loaders.js';
import { S, branches, commitById, headOf } from '../state.js';
import { doRollbackTo } from './commit-actions.js';
import { branchOptions } from './branch-options.js';
import { focusCommit } from './history.js';

const REFLOG_ROWS = 50;

export function renderReflog() {
  const sel = $('#reflog-branch');
  const branch = S.reflog.branch;
  const bs = branches();
  if (document.activeElement !== sel) {
    sel.replaceChildren(...branchOptions(bs, branch));
  }
  const box = $('#reflog-table');
  const entries = S.reflog.entries;
  if (!branch || !entries.length) {
    box.replaceChildren(h('p', { class: 'muted' }, 'No moves recorded for this branch.'));
    return;
  }
  const head = headOf(branch);
  /** @param {string | null} id */
  const link = (id) => {
    if (!id) return muted('none');
    if (!commitById(id)) return h('code', { title: id }, short(id));
    return h(
      'button',
      { type: 'button', class: 'link', title: id, 'aria-label': `show commit ${short(id)} in the history`, onclick: () => focusCommit(id) },
      short(id),
    );
  };
  /**
   * @param {import('../api-types.js').ReflogEntry} e
   * @param {number} i
   */
  const buttons = (e, i) => {
    /** @type {HTMLElement[]} */
    const out = [];
    if (e.new === head) out.push(h('span', { class: 'state committed' }, 'current head'));
    // The newest move is the one an admin most likely wants to take back.
    if (i === 0 && e.old && e.old !== head) {
      out.push(
        h(
          'button',
          {
            type: 'button',
            onclick: () => e.old && doRollbackTo(branch, e.old),
            'aria-label': `Undo this ${e.action}: roll ${branch} back to ${short(e.old)}`,
          },
          `Undo: back to ${short(e.old)}…`,
        ),
      );
    }
    if (e.new && e.new !== head) {
      out.push(
        h(
          'button',
          {
            type: 'button',
            onclick: () => e.new && doRollbackTo(branch, e.new),
            'aria-label': `Roll ${branch} back to ${short(e.new)}, its head after this ${e.action}`,
          },
          `Roll back to ${short(e.new)}…`,
        ),
      );
    }
    return h('span', { class: 'buttons' }, ...out);
  };
  const shown = S.reflogAll ? entries : entries.slice(0, REFLOG_ROWS);
  box.replaceChildren(
    table(
      `Reflog of ${branch}, newest first`,
      [
        { label: 'When', cell: (e) => time(e.time) },
        { label: 'Action', cell: (e) => h('span', { class: 'action' }, e.action) },
        { label: 'Old → new', cell: (e) => h('span', { class: 'move' }, link(e.old), ' → ', link(e.new)) },
        { label: 'Message', cell: (e) => e.message || muted('(none)') },
        { label: 'Go back', cell: (e) => buttons(e, entries.indexOf(e)) },
      ],
      shown,
      (e) => (e.new === head ? 'reflog-head' : undefined),
    ),
    entries.length > shown.length
      ? h(
          'button',
          {
            type: 'button',
            class: 'quiet-link',
            onclick: () => {
              S.reflogAll = true;
              renderReflog();
            },
          },
          `Show all ${entries.length} moves`,
        )
      : '',
  );
}

/** @param {Event} ev */
export function chooseReflogBranch(ev) {
  S.reflogBranch = /** @type {HTMLSelectElement} */ (ev.target).value;
  S.reflogAll = false;
  void reload(['profiles']);
}
