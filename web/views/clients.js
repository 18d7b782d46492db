// @ts-check
/**
 * The clients view: every machine that booted, whether it is online, what it
 * runs (a link into the history), which assignment matched it, whether it
 * is held back on its last good commit (docs/booting.md, "Boot health"), and
 * its last heartbeat with the hardware it reported (docs/agent.md, "Heartbeats").
 */
import { api } from '../api.js';
import { showError, toast } from '../dialogs.js';
import { $, bytes, code, enc, h, muted, short, table, time } from '../dom.js';
import { S, online } from '../state.js';
import { showCommit } from './history.js';

export function renderClients() {
  const box = $('#clients-table');
  const on = S.clients.filter(online).length;
  $('#count-clients').textContent = S.clients.length ? `(${on}/${S.clients.length} online)` : '';
  if (!S.clients.length) {
    box.replaceChildren(h('p', { class: 'muted' }, 'No client has booted yet.'));
    return;
  }
  const heads = new Map(S.profiles.map((p) => [p.name, p.head]));
  box.replaceChildren(
    table(
      'Known clients',
      [
        { label: 'MAC', cell: (c) => code(c.mac) },
        { label: 'IP', cell: (c) => c.ip || '—' },
        {
          label: 'Status',
          cell: (c) => h('span', { class: `state ${online(c) ? 'online' : 'offline'}` }, online(c) ? 'online' : 'offline'),
        },
        { label: 'Profile', cell: (c) => c.profile ?? '—' },
        {
          label: 'Runs',
          cell: (c) =>
            c.commit
              ? [
                  h(
                    'button',
                    {
                      type: 'button',
                      class: 'link',
                      onclick: () => c.commit && showCommit(c.profile, c.commit),
                      'aria-label': `show commit ${short(c.commit)} in the history`,
                    },
                    short(c.commit),
                  ),
                  heads.get(c.profile ?? '') === c.commit ? ' (head)' : ' (not the head)',
                ]
              : '—',
        },
        { label: 'Last boot', cell: (c) => time(c.lastBoot) },
        { label: 'Last seen', cell: (c) => time(c.lastSeen) },
        { label: 'Matched', cell: (c) => (c.assignment ? code(c.assignment) : '—') },
        { label: 'Boot health', cell: health },
        {
          label: 'Last heartbeat',
          cell: (c) => (c.heartbeat ? [time(c.heartbeat.at), h('br'), `up ${uptime(c.heartbeat.uptimeSec)}`] : muted('none yet')),
        },
        { label: 'Hardware', cell: (c) => (c.heartbeat ? hardware(c.heartbeat.inventory) : '—') },
      ],
      S.clients,
      (c) => (online(c) ? 'online' : 'offline'),
    ),
  );
}

/**
 * Held back (with why and a button to clear it), or the last health verdict.
 * @param {import('../api-types.js').ClientLease} c
 */
function health(c) {
  const hb = c.health?.heldBack;
  if (hb) {
    const clear = async () => {
      try {
        await api('POST', `/v1/clients/${enc(c.mac)}/clear`, {});
        toast(`${c.mac} cleared: its next boot tries ${short(hb.commit)} again`);
      } catch (e) {
        await showError(e, `Clearing ${c.mac}`);
      }
    };
    return [
      h(
        'span',
        { class: 'state held-back', title: hb.reason },
        `held back: ${short(hb.commit)} failed, runs last good ${short(hb.served)}`,
      ),
      ' ',
      h('button', { type: 'button', onclick: clear, 'aria-label': `clear ${c.mac}: try ${short(hb.commit)} again` }, 'Clear'),
    ];
  }
  const r = c.health?.lastReport;
  if (!r) return '—';
  return h('span', { title: r.reason || '' }, r.ok ? `good (${short(r.commit)})` : `failed (${short(r.commit)})`);
}

/** @param {number} sec */
function uptime(sec) {
  if (sec < 3600) return `${Math.floor(sec / 60)} min`;
  if (sec < 172800) return `${Math.floor(sec / 3600)} h`;
  return `${Math.floor(sec / 86400)} d`;
}

/**
 * CPUs and memory in one line; CPU model, NICs, disks and DMI when opened.
 * @param {import('../../store/types.ts').Inventory} inv
 */
function hardware(inv) {
  const cpus = inv.cpus ? `${inv.cpus} CPU${inv.cpus === 1 ? '' : 's'}` : '? CPUs';
  const mem = inv.memoryKb ? bytes(inv.memoryKb * 1024) : '? memory';
  const dmi = [inv.dmi?.vendor, inv.dmi?.product, inv.dmi?.serial ? `serial ${inv.dmi.serial}` : ''].filter(Boolean).join(' ');
  return h(
    'details',
    { class: 'hardware' },
    h('summary', {}, `${cpus}, ${mem}`),
    h(
      'ul',
      {},
      inv.cpuModel ? h('li', {}, inv.cpuModel) : null,
      ...(inv.nics ?? []).map((n) => h('li', {}, `${n.name} `, code(n.mac))),
      ...(inv.disks ?? []).map((d) => h('li', {}, `${d.name} ${bytes(d.bytes)}`)),
      dmi ? h('li', {}, dmi) : null,
    ),
  );
}
