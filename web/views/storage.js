// @ts-check
/**
 * The storage view: a gc dry run first (what would be removed, commit by
 * commit and object by object), and the real gc only after the admin
 * confirmed that list — and only if the list is still the same.
 */
import { api } from '../api.js';
import { fetchCommit } from '../commits.js';
import { ask, showError, toast } from '../dialogs.js';
import { $, bytes, code, h, muted, plural, short, table, time } from '../dom.js';
import { describeGcObjects } from '../held.js';
import { reload } from '../loaders.js';
import { S, noGc } from '../state.js';

/** @param {import('../api-types.js').GcResponse} r */
const gcWords = (r) => `${plural(r.commits.length, 'commit')} and ${plural(r.objects.length, 'object')} (${bytes(r.bytes)})`;

/** @param {import('../api-types.js').GcResponse} r */
async function withCommits(r) {
  // Only the first 200 are named one by one; the counts and bytes cover all.
  const commits = await Promise.all(r.commits.slice(0, 200).map((id) => fetchCommit(id).catch(() => null)));
  return commits.filter((c) => c !== null);
}

/** The state after a dry run `r`: its list, with the commits named in it. */
/** @param {import('../api-types.js').GcResponse} r */
const checked = async (r) => ({ ...noGc(), preview: r, commits: await withCommits(r) });

export async function gcCheck() {
  if (S.gc.busy) return;
  S.gc.busy = true;
  renderGc('Checking what gc would remove…');
  try {
    const r = await api('POST', '/v1/gc', { dryRun: true });
    S.gc = await checked(r);
  } catch (e) {
    S.gc.busy = false;
    await showError(e, 'Checking what gc would remove');
  }
  renderGc();
}

/**
 * @param {string[]} a
 * @param {string[]} b
 */
const sameSet = (a, b) => a.length === b.length && a.every((x) => b.includes(x));

async function gcRun() {
  const p = S.gc.preview;
  if (!p || S.gc.busy) return;
  const ok = await ask({
    title: 'Delete for good?',
    body: [
      h('p', {}, `gc removes ${gcWords(p)} from the store.`),
      h(
        'ul',
        {},
        h('li', {}, 'This cannot be undone: a removed commit can no longer be rolled back to, and its layers are gone from disk.'),
        h('li', {}, 'Reflog entries older than the store keeps them are dropped too.'),
        h('li', {}, 'Commits on a branch or tag, in a recent reflog entry, pinned, or booted by a client are never removed.'),
      ),
    ],
    ok: 'Delete now',
    danger: true,
  });
  if (!ok) return;
  S.gc.busy = true;
  renderGc('Removing…');
  try {
    // Look once more right before deleting: if the set changed since the
    // check (a rollback, a push), show the new set and ask again rather than
    // delete something the admin never saw.
    const again = await api('POST', '/v1/gc', { dryRun: true });
    if (!sameSet(again.commits, p.commits) || !sameSet(again.objects, p.objects)) {
      S.gc = await checked(again);
      renderGc();
      await ask({
        title: 'What gc would remove changed',
        body: [
          h(
            'p',
            {},
            `Since your check the store changed: gc would now remove ${gcWords(again)}. Nothing was deleted. Look at the new list and confirm again.`,
          ),
        ],
        ok: null,
      });
      return;
    }
    const r = await api('POST', '/v1/gc', { dryRun: false });
    S.gc = { ...noGc(), commits: S.gc.commits, freed: r };
    toast(`gc freed ${bytes(r.bytes)}`);
    renderGc();
    $('#gc-result h2')?.focus();
    void reload(['profiles']);
  } catch (e) {
    S.gc.busy = false;
    renderGc();
    await showError(e, 'Garbage collection');
  }
}

/**
 * @param {import('../api-types.js').GcResponse} r
 * @param {import('../api-types.js').Commit[]} commits
 */
function gcTables(r, commits) {
  /** @type {HTMLElement[]} */
  const out = [];
  const byId = new Map(commits.map((c) => [c.id, c]));
  if (r.commits.length) {
    out.push(h('h3', {}, `Commits (${r.commits.length})`));
    out.push(
      table(
        'Commits',
        [
          { label: 'Commit', cell: (id) => h('code', { title: id }, short(id)) },
          { label: 'Profile', cell: (id) => byId.get(id)?.profile ?? '—' },
          { label: 'Message', cell: (id) => byId.get(id)?.message || muted('(none)') },
          {
            label: 'Made',
            cell: (id) => {
              const c = byId.get(id);
              return c ? time(c.createdAt) : '—';
            },
          },
        ],
        r.commits.slice(0, 200),
      ),
    );
  }
  if (r.objects.length) {
    out.push(h('h3', {}, `Objects on disk (${r.objects.length})`));
    out.push(
      table(
        'Objects',
        [
          { label: 'Object', cell: (o) => h('code', { title: `sha256:${o.digest}` }, short(o.digest)) },
          {
            label: 'What',
            cell: (o) => [
              o.what,
              ...(o.commits.length ? [' of ', ...o.commits.slice(0, 3).flatMap((id, i) => [i ? ', ' : '', code(short(id))])] : []),
            ],
          },
          { label: 'Size', cell: (o) => (o.size === null ? '—' : bytes(o.size)) },
        ],
        describeGcObjects(r.objects.slice(0, 500), commits),
        (o) => `gc-object gc-${o.what.replace(/\W+/g, '-')}`,
      ),
    );
  }
  return out;
}

/** @param {string} [busyText] */
export function renderGc(busyText) {
  const box = $('#gc-result');
  $('#gc-check').disabled = S.gc.busy;
  if (busyText) {
    box.replaceChildren(h('p', { class: 'muted' }, busyText));
    return;
  }
  const { preview, freed, commits, stale } = S.gc;
  if (freed) {
    box.replaceChildren(
      h('h2', { tabindex: '-1' }, 'Removed'),
      h(
        'p',
        { id: 'gc-summary', class: 'done' },
        freed.commits.length || freed.objects.length
          ? `Freed ${bytes(freed.bytes)}: removed ${gcWords(freed)}.`
          : 'Nothing was removed: everything was still kept.',
      ),
      ...gcTables(freed, commits),
    );
    return;
  }
  if (!preview) {
    box.replaceChildren(h('p', { class: 'muted' }, 'Not checked yet.'));
    return;
  }
  const empty = !preview.commits.length && !preview.objects.length;
  box.replaceChildren(
    h('h2', {}, 'gc would remove'),
    h(
      'p',
      { id: 'gc-summary' },
      empty ? 'Nothing: every commit and object is still kept.' : `${gcWords(preview)}. Nothing has been deleted yet.`,
    ),
    stale ? h('p', { class: 'error', role: 'status' }, 'The store changed since this check; check again before deleting.') : '',
    ...gcTables(preview, commits),
    empty
      ? ''
      : h(
          'div',
          { class: 'buttons' },
          h(
            'button',
            { type: 'button', id: 'gc-run', class: 'danger', onclick: gcRun, disabled: stale ? true : undefined },
            'Delete these now…',
          ),
        ),
  );
}
