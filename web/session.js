// @ts-check
/**
 * Logging in and out. The token is checked with one API call before it is
 * kept (api.js keeps it in this tab's sessionStorage only); logging out, or a
 * token the server refuses, forgets it and everything loaded with it.
 */
import { api, ApiError, session } from './api.js';
import { $ } from './dom.js';
import { startLive } from './live.js';
import { forgetLoaded, reload } from './loaders.js';
import { route } from './router.js';
import { S, VIEWS, noGc } from './state.js';
import { wired } from './wiring.js';

/** @param {SubmitEvent} ev */
export async function login(ev) {
  ev.preventDefault();
  const input = $('#token');
  const token = input.value.trim();
  const err = $('#login-error');
  err.textContent = '';
  try {
    await api('GET', '/v1/profiles', undefined, token);
  } catch (e) {
    err.textContent =
      e instanceof ApiError && e.status === 401
        ? 'That token was refused. Check it, or make a new one with strata token create NAME.'
        : e instanceof Error
          ? e.message
          : String(e);
    input.focus();
    return;
  }
  session.set(token);
  input.value = '';
  enter();
}

export function logout(message = '') {
  session.clear();
  forgetLoaded();
  S.gc = noGc();
  S.commitCache.clear();
  if ($('#gc-result')) wired.renderGc();
  S.loggedIn = false;
  if (S.stopEvents) S.stopEvents();
  S.stopEvents = null;
  for (const v of VIEWS) $(`#view-${v}`).hidden = true;
  $('#nav').hidden = true;
  $('#session').hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = message;
  $('#token').focus();
}

export function enter() {
  S.loggedIn = true;
  $('#login').hidden = true;
  $('#nav').hidden = false;
  $('#session').hidden = false;
  route();
  void reload();
  S.stopEvents = startLive();
}
