// @ts-check
/**
 * Talking back to the admin: the modal dialog every change asks in first,
 * the dialog that says why a call failed, and the short-lived toast.
 */
import { ApiError } from './api.js';
import { $, h } from './dom.js';
import { wired } from './wiring.js';

/** @type {ReturnType<typeof setTimeout> | undefined} */
let toastTimer;
/** @param {string} msg */
export function toast(msg) {
  const t = $('#toast');
  t.textContent = msg;
  t.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(hideToast, 5000);
}

export function hideToast() {
  clearTimeout(toastTimer);
  $('#toast').classList.remove('show');
}

/**
 * Modal dialog; resolves true when the OK button was used. `body` is a list
 * of nodes (may hold inputs; the caller reads them after). ok: null = info only.
 * @param {{ title: string, body: (Node | string | null | undefined | false)[], ok?: string | null, danger?: boolean, cancel?: string }} opts
 * @returns {Promise<boolean>}
 */
export function ask({ title, body, ok = 'OK', danger = false, cancel = 'Cancel' }) {
  const dlg = $('#dialog');
  $('#dialog-h').textContent = title;
  $('#dialog-body').replaceChildren(...body.filter((n) => n !== null && n !== undefined && n !== false));
  const okBtn = $('#dialog-ok');
  const cancelBtn = $('#dialog-cancel');
  okBtn.hidden = !ok;
  okBtn.textContent = ok ?? '';
  okBtn.className = danger ? 'danger' : 'primary';
  cancelBtn.textContent = ok ? cancel : 'Close';
  cancelBtn.setAttribute('formnovalidate', '');
  dlg.returnValue = '';
  dlg.showModal();
  const firstInput = $('#dialog-body').querySelector('input, select, textarea');
  (firstInput ?? (ok && !danger ? okBtn : cancelBtn)).focus();
  return new Promise((resolve) => dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true }));
}

/**
 * @param {unknown} e
 * @param {string} what
 */
export function showError(e, what) {
  if (e instanceof ApiError && e.status === 401) return wired.logout('The server refused the token; log in again.');
  const body = [h('p', { class: 'error' }, e instanceof Error ? e.message : String(e))];
  if (e instanceof ApiError && e.code)
    body.push(h('p', { class: 'muted' }, `Error code ${e.code}${e.status ? `, HTTP ${e.status}` : ''}. Nothing was changed.`));
  return ask({ title: `${what} did not work`, body, ok: null });
}
