// @ts-check
/**
 * Calls that run up the page's layers. The loaders, the session, live
 * updates and dialogs re-render views and end the session, but importing
 * the views (which import the loaders) would make a cycle. So they call
 * through `wired`, which app.js fills in at start with the real functions.
 * This module imports nothing.
 */

/**
 * @typedef {object} Wired
 * @property {() => void} renderProfiles
 * @property {() => void} renderAssignForm
 * @property {() => void} renderAssignments
 * @property {() => void} renderPreview
 * @property {() => void} renderClients
 * @property {() => void} drawGraph
 * @property {() => void} renderCommit
 * @property {() => void} renderPushes
 * @property {() => void} renderPendingKeys
 * @property {() => void} renderReflog
 * @property {(busyText?: string) => void} renderGc
 * @property {(message?: string) => void} logout
 */

/** @param {string} name */
const notWired = (name) => () => {
  throw new Error(`${name} called before app.js wired the page`);
};

/** @type {Wired} */
export const wired = {
  renderProfiles: notWired('renderProfiles'),
  renderAssignForm: notWired('renderAssignForm'),
  renderAssignments: notWired('renderAssignments'),
  renderPreview: notWired('renderPreview'),
  renderClients: notWired('renderClients'),
  drawGraph: notWired('drawGraph'),
  renderCommit: notWired('renderCommit'),
  renderPushes: notWired('renderPushes'),
  renderPendingKeys: notWired('renderPendingKeys'),
  renderReflog: notWired('renderReflog'),
  renderGc: notWired('renderGc'),
  logout: notWired('logout'),
};

/** @param {Wired} parts */
export function wire(parts) {
  Object.assign(wired, parts);
}
