// @ts-check
/**
 * Pending client keys, on the clients page: keys that machines made
 * themselves and pushed with; their pushes are held until the admin
 * approves the key for a profile (the pushes then bake) or rejects it
 * (the pushes are deleted). See docs/agent.md, "Enrollment".
 */
import { api } from '../api.js';
import { ask, showError, toast } from '../dialogs.js';
import { $, code, enc, h, table, time } from '../dom.js';
import { S } from '../state.js';

/**
 * `reload` refreshes the page's data after a decision (passed in by app.js).
 * @param {() => Promise<void>} reload
 */
export function renderPendingKeys(reload) {
  const box = $('#pending-keys');
  if (!box) return;
  if (!S.pendingKeys.length) {
    box.replaceChildren();
    return;
  }
  /**
   * @param {string} what
   * @param {() => Promise<unknown>} run
   * @param {string} done
   */
  const decide = async (what, run, done) => {
    try {
      await run();
      toast(done);
      await reload();
    } catch (e) {
      await showError(e, what);
    }
  };
  /** @param {import('../api-types.js').PendingKey} k */
  const actions = (k) => {
    const pick = h('select', { 'aria-label': `profile for key ${k.id}` }, ...S.profiles.map((p) => h('option', { value: p.name }, p.name)));
    return [
      pick,
      ' ',
      h(
        'button',
        {
          type: 'button',
          onclick: () =>
            decide(
              `Approving key ${k.id}`,
              () => api('POST', `/v1/keys/pending/${enc(k.id)}/approve`, { profiles: [pick.value] }),
              `key ${k.id} may push to ${pick.value}; its held pushes are queued`,
            ),
        },
        'Approve',
      ),
      ' ',
      h(
        'button',
        {
          type: 'button',
          class: 'danger',
          onclick: async () => {
            const ok = await ask({
              title: `Reject key ${k.id}?`,
              body: [h('p', {}, `The key is dropped and its ${k.heldPushes} held push(es) are deleted.`)],
              ok: 'Reject',
              danger: true,
            });
            if (ok)
              await decide(`Rejecting key ${k.id}`, () => api('POST', `/v1/keys/pending/${enc(k.id)}/reject`, {}), `key ${k.id} rejected`);
          },
        },
        'Reject',
      ),
    ];
  };
  box.replaceChildren(
    table(
      'Keys waiting for approval',
      [
        { label: 'Key', cell: (k) => [code(k.id), ' ', code(k.fingerprint)] },
        { label: 'MAC', cell: (k) => (k.mac ? code(k.mac) : '—') },
        { label: 'IP', cell: (k) => k.ip || '—' },
        { label: 'Host', cell: (k) => k.hostname || '—' },
        { label: 'Held pushes', cell: (k) => String(k.heldPushes) },
        { label: 'First seen', cell: (k) => time(k.firstSeen) },
        { label: 'Decide', cell: actions },
      ],
      S.pendingKeys,
      () => 'pending',
    ),
  );
}
