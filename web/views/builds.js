// @ts-check
/**
 * The builds view: write or edit a profile's recipe (TOML, docs/cli.md,
 * "Recipes"), start a build, watch its log as it runs, and see the result
 * (the commit, "unchanged", or the error with the log's last lines). Also
 * saves a rebuild schedule. Talks to /v1/profiles/NAME/builds, /v1/builds
 * and /v1/profiles/NAME/recipe|schedule (docs/api.md, "Builds").
 */
import { api, session } from '../api.js';
import { showError, toast } from '../dialogs.js';
import { $, enc, h, short, table, time } from '../dom.js';

/** @typedef {{ id: string, profile: string, state: string, commit: string | null, error: string | null, createdAt: number, stats: Record<string, number> }} BuildRow */

const EXAMPLE = `suite = "bookworm"
variant = "minbase"
packages = ["less", "procps", "systemd-sysv", "udev", "iproute2"]
kernel = "linux-image-cloud-amd64"
`;

/** The build whose log is shown, and where its log was read up to. */
const watch = { id: /** @type {string | null} */ (null), offset: 0, timer: /** @type {number | null} */ (null) };

const FINISHED = ['committed', 'unchanged', 'failed'];

/** @param {BuildRow} b */
function outcome(b) {
  if (b.state === 'committed') return `committed ${short(b.commit)}`;
  if (b.state === 'unchanged') return `unchanged (identical to ${short(b.commit)})`;
  return b.state;
}

async function renderList() {
  try {
    /** @type {{ builds: BuildRow[], schedules: { profile: string, everyMs: number | null, atMinute: number | null, nextRun: number }[] }} */
    const r = await api('GET', '/v1/builds');
    $('#builds-table').replaceChildren(
      table(
        'Recent builds',
        [
          { label: 'build', cell: (b) => h('button', { type: 'button', class: 'link', onclick: () => follow(b.id) }, b.id) },
          { label: 'profile', cell: (b) => b.profile },
          { label: 'result', cell: (b) => outcome(b) },
          { label: 'queued', cell: (b) => time(b.createdAt) },
          { label: '.debs downloaded', cell: (b) => (b.stats?.debsDownloaded === undefined ? '' : String(b.stats.debsDownloaded)) },
        ],
        r.builds,
      ),
    );
    $('#builds-schedules').replaceChildren(
      ...r.schedules.map((s) =>
        h(
          'p',
          {},
          `${s.profile}: ${s.everyMs ? `every ${s.everyMs / 3_600_000} h` : `daily at minute ${s.atMinute} (UTC)`}, next ${time(s.nextRun)}`,
        ),
      ),
    );
  } catch (e) {
    await showError(e, 'Loading the builds');
  }
}

/** Shows build ID's log, polling it until the build has finished. @param {string} id */
function follow(id) {
  if (watch.timer !== null) clearTimeout(watch.timer);
  watch.id = id;
  watch.offset = 0;
  $('#build-log').textContent = '';
  $('#build-result').textContent = `build ${id}: waiting…`;
  void poll();
}

async function poll() {
  const id = watch.id;
  if (!id) return;
  try {
    const res = await fetch(`/v1/builds/${enc(id)}/log?offset=${watch.offset}`, {
      headers: { Authorization: `Bearer ${session.get()}` },
      cache: 'no-store',
    });
    const text = await res.text();
    if (watch.id !== id) return;
    watch.offset = Number(res.headers.get('X-Next-Offset') ?? watch.offset);
    const log = $('#build-log');
    if (text) {
      log.append(text);
      log.scrollTop = log.scrollHeight;
    }
    const state = res.headers.get('X-Build-State') ?? '';
    if (FINISHED.includes(state)) {
      /** @type {{ build: BuildRow }} */
      const { build } = await api('GET', `/v1/builds/${enc(id)}`);
      $('#build-result').replaceChildren(
        h('strong', { class: build.state === 'failed' ? 'error' : '' }, `build ${id}: ${outcome(build)}`),
        build.error ? h('pre', { class: 'build-error' }, build.error) : null,
      );
      void renderList();
      return;
    }
    $('#build-result').textContent = `build ${id}: ${state}…`;
  } catch (e) {
    $('#build-result').textContent = `build ${id}: cannot read the log (${e instanceof Error ? e.message : e})`;
  }
  watch.timer = window.setTimeout(poll, 1000);
}

/** Loads the profile's recipe into the editor (its schedule's, else its last build's). */
async function loadRecipe() {
  const name = $('#build-profile').value.trim();
  if (!name) return;
  try {
    /** @type {{ recipe: string | null }} */
    const r = await api('GET', `/v1/profiles/${enc(name)}/recipe`);
    $('#build-recipe').value = r.recipe ?? EXAMPLE;
  } catch (e) {
    await showError(e, 'Loading the recipe');
  }
}

/** @param {SubmitEvent} ev */
async function start(ev) {
  ev.preventDefault();
  const name = $('#build-profile').value.trim();
  try {
    /** @type {{ build: BuildRow }} */
    const r = await api('POST', `/v1/profiles/${enc(name)}/builds`, { recipe: $('#build-recipe').value });
    toast(`build ${r.build.id} queued`);
    follow(r.build.id);
    void renderList();
  } catch (e) {
    await showError(e, 'Starting the build');
  }
}

async function saveSchedule() {
  const name = $('#build-profile').value.trim();
  const when = $('#build-every').value.trim();
  try {
    if (!when) await api('DELETE', `/v1/profiles/${enc(name)}/schedule`);
    else
      await api('PUT', `/v1/profiles/${enc(name)}/schedule`, {
        recipe: $('#build-recipe').value,
        ...(when.includes(':') ? { at: when } : { every: when }),
      });
    toast(when ? `${name} rebuilds ${when.includes(':') ? `daily at ${when} UTC` : `every ${when}`}` : `${name}: no schedule`);
    void renderList();
  } catch (e) {
    await showError(e, 'Saving the schedule');
  }
}

/** Wires the view's controls; the list is loaded when the view is opened. */
export function setupBuilds() {
  $('#build-recipe').value ||= EXAMPLE;
  $('#build-form').addEventListener('submit', start);
  $('#build-load').addEventListener('click', loadRecipe);
  $('#build-schedule').addEventListener('click', saveSchedule);
  window.addEventListener('hashchange', () => {
    if (location.hash === '#builds') void renderList();
  });
  if (location.hash === '#builds') void renderList();
}
