// @ts-check
/**
 * strata's admin page: the entry point. Plain DOM, no framework: state in one
 * object (state.js), each part of the page re-rendered from it when its data
 * is reloaded (loaders.js). Data comes only from the admin API (/v1/...);
 * live updates from /v1/events (live.js). Everything user-supplied (commit
 * messages, names) goes in via textContent (dom.js). This file only wires
 * the page's controls to the views, the views to the loaders (wiring.js),
 * and starts the session.
 */
import { session } from './api.js';
import { $ } from './dom.js';
import { reload } from './loaders.js';
import { followHash } from './router.js';
import { enter, login, logout } from './session.js';
import { ONLINE_MS, S } from './state.js';
import { renderAssignForm, renderAssignments, renderPreview, resetAssignForm, submitAssignment } from './views/assignments.js';
import { renderClients } from './views/clients.js';
import { drawGraph, renderCommit } from './views/history.js';
import { createProfile, fillBaseChoices, renderProfiles, saveCmdline } from './views/profiles.js';
import { renderPendingKeys } from './views/pending-keys.js';
import { renderPushes } from './views/pushes.js';
import { chooseReflogBranch, renderReflog } from './views/reflog.js';
import { gcCheck, renderGc } from './views/storage.js';
import { setupBuilds } from './views/builds.js';
import { wire } from './wiring.js';

function start() {
  // What the loaders, the session and live updates call without importing the views.
  wire({
    renderProfiles,
    renderAssignForm,
    renderAssignments,
    renderPreview,
    renderClients,
    drawGraph,
    renderCommit,
    renderPushes,
    renderPendingKeys: () => renderPendingKeys(() => reload(['clients', 'pushes'])),
    renderReflog,
    renderGc,
    logout,
  });
  window.addEventListener('hashchange', followHash);
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', () => logout('Logged out.'));
  $('#cmdline-form').addEventListener('submit', saveCmdline);
  $('#new-profile').addEventListener('toggle', () => {
    if ($('#new-profile').open) void fillBaseChoices();
  });
  $('#new-profile-form').addEventListener('submit', createProfile);
  $('#assign-form').addEventListener('submit', submitAssignment);
  $('#assign-form').addEventListener('input', renderPreview);
  $('#as-cancel').addEventListener('click', resetAssignForm);
  $('#reflog-branch').addEventListener('change', chooseReflogBranch);
  $('#gc-check').addEventListener('click', gcCheck);
  $('#online-minutes').textContent = String(ONLINE_MS / 60000);
  // Online/offline and "n min ago" change with time alone.
  setInterval(() => {
    if (S.loggedIn) {
      renderClients();
      renderPushes();
    }
  }, 30_000);
  // Changes made with the strata command on the server send no event: look now and then.
  setInterval(() => {
    if (S.loggedIn && document.visibilityState === 'visible') void reload();
  }, 60_000);
  renderPreview();
  renderGc();
  setupBuilds();
  if (session.get()) enter();
  else logout();
}

// dagre is a deferred classic script before this module: both run after parsing, in order.
start();
