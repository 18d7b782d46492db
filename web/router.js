// @ts-check
/**
 * Which view is shown: the URL's hash (#profiles, #clients, ...) names it;
 * an unknown hash shows the profiles. Nothing is shown before logging in.
 */
import { $ } from './dom.js';
import { S, VIEWS } from './state.js';

export function route() {
  if (!S.loggedIn) return;
  const v = location.hash.replace(/^#/, '');
  S.view = VIEWS.includes(v) ? v : 'profiles';
  for (const name of VIEWS) $(`#view-${name}`).hidden = name !== S.view;
  for (const a of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('#nav a'))) {
    if (a.dataset.view === S.view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** On a hash change: show that view and move the focus to its heading (for screen readers and keyboards). */
export function followHash() {
  route();
  $(`#view-${S.view} h1`)?.setAttribute('tabindex', '-1');
  $(`#view-${S.view} h1`)?.focus();
}
