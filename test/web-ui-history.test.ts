/**
 * The web page's history tools in Debian's chromium (playwright-core,
 * headless) against a real `strata serve` on loopback with a real store:
 * commits kept only by the reflog or a client drawn distinct in the graph,
 * the reflog view and rolling back from it, and the garbage-collection panel
 * (a dry run first; nothing leaves the disk before the confirm).
 * Screenshots at 1280x800 and 390x844 go to test-artifacts/.
 */
import { existsSync, utimesSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Profile } from '../store/types.ts';
import { confirmDialog as confirmDialogIn, artifactPath, launchChromium, startWebFixture, type WebFixture } from './helpers/web-fixture.ts';

const WAIT = 30_000;
const DAY = 24 * 3600 * 1000;

let fx: WebFixture;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

async function call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const headers: Record<string, string> = { authorization: `Bearer ${fx.token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${fx.srv.httpUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as T };
}

const labHead = async (): Promise<string | null> => (await call<{ profile: Profile }>('GET', '/v1/profiles/lab')).json.profile.head;
const node = (id: string) => page.locator(`#graph [data-commit="${id}"]`);
const s12 = (id: string) => id.slice(0, 12);

async function shots(name: string): Promise<void> {
  await page.screenshot({ path: artifactPath(`web-${name}-1280x800.png`) });
  await page.screenshot({ path: artifactPath(`web-${name}-1280x800-full.png`), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  await page.screenshot({ path: artifactPath(`web-${name}-390x844-full.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
}

const confirmDialog = (expectText: RegExp): Promise<void> => confirmDialogIn(page, expectText, WAIT);

beforeAll(async () => {
  fx = await startWebFixture();
  browser = await launchChromium();
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await ctx.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await fx?.close();
});

describe('web UI: held commits, reflog, gc', () => {
  it('draws a commit that only the reflog and a client keep, dimmed and saying why', async () => {
    // The mistake: lab rolled back past "new motd" (over the API, as another admin would).
    const r = await call<{ from: string; to: string }>('POST', '/v1/profiles/lab/rollback', { to: fx.tools });
    expect(r.status).toBe(200);
    expect(await labHead()).toBe(fx.tools);

    await page.goto(`${fx.srv.httpUrl}/`);
    await page.fill('#token', fx.token);
    await page.click('#login-form button[type=submit]');
    await node(fx.motd).waitFor({ timeout: WAIT });
    // motd is on no branch now, but drawn: dimmed (class held), with its reason.
    expect(await node(fx.motd).getAttribute('class')).toMatch(/\bheld\b/);
    expect(await node(fx.motd).getAttribute('aria-label')).toMatch(/on no branch or tag[\s\S]*kept: reflog/);
    expect(await node(fx.motd).locator('.badge.held').textContent()).toBe('kept: reflog');
    for (const id of [fx.base, fx.tools]) expect(await node(id).getAttribute('class')).not.toMatch(/\bheld\b/);
    expect(await page.locator('#graph .node.head').getAttribute('data-commit')).toBe(fx.tools);
    // Its edge to its parent is drawn too.
    expect(await page.locator('#graph path.edge.held').count()).toBe(1);

    // A client still runs it: the reason says so, live.
    await page.locator('#live').filter({ hasText: 'on' }).waitFor({ timeout: WAIT });
    // It booted motd before the rollback (a heartbeat may only name a commit its machine was served).
    fx.srv.store.recordClient({ mac: '52:54:00:00:00:01', ip: '10.0.0.1', commit: fx.motd, profile: 'lab', boot: true });
    const hb = await fetch(`${fx.srv.httpUrl}/v1/clients/52:54:00:00:00:01/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ commit: fx.motd, ip: '10.0.0.1', profile: 'lab' }),
    });
    expect(hb.status).toBe(200);
    await page.waitForFunction(
      (id) =>
        /kept: reflog, pinned by 1 client/.test(document.querySelector(`#graph [data-commit="${id}"]`)?.getAttribute('aria-label') ?? ''),
      fx.motd,
      { timeout: WAIT },
    );

    // Its details say it is unreachable and why it still exists.
    await node(fx.motd).click();
    await page
      .locator('#commit-h')
      .filter({ hasText: s12(fx.motd) })
      .waitFor({ timeout: WAIT });
    expect(await page.locator('#commit').innerText()).toMatch(
      /Reachable\s*No: on no branch or tag[\s\S]*Kept by\s*reflog, pinned by 1 client/,
    );
  });

  it('lists the rollback in the reflog and rolls back from there: the head moves', async () => {
    const rows = page.locator('#reflog-table tbody tr');
    await rows.first().filter({ hasText: 'rollback' }).waitFor({ timeout: WAIT });
    const top = await rows.first().innerText();
    // when, action, old -> new, message
    expect(top).toMatch(new RegExp(`just now[\\s\\S]*rollback[\\s\\S]*${s12(fx.motd)}\\s*→\\s*${s12(fx.tools)}[\\s\\S]*rollback from`));
    expect(top).toContain('current head');
    // The older entries: the import and the two commits.
    expect(await rows.count()).toBe(4);
    expect(await rows.nth(1).innerText()).toMatch(new RegExp(`commit[\\s\\S]*${s12(fx.tools)}\\s*→\\s*${s12(fx.motd)}[\\s\\S]*new motd`));
    await shots('reflog');

    // Cancel first: nothing moves.
    await page.getByRole('button', { name: `Undo this rollback: roll lab back to ${s12(fx.motd)}` }).click();
    await page.locator('#dialog').waitFor({ state: 'visible', timeout: WAIT });
    await page.click('#dialog-cancel');
    await page.locator('#dialog').waitFor({ state: 'hidden', timeout: WAIT });
    expect(await labHead()).toBe(fx.tools);

    await page.getByRole('button', { name: `Undo this rollback: roll lab back to ${s12(fx.motd)}` }).click();
    await confirmDialog(/Move branch lab from[\s\S]*add tools[\s\S]*to[\s\S]*new motd/);
    await expect.poll(labHead, { timeout: WAIT }).toBe(fx.motd);
    // The page follows: motd is the head again and no longer dimmed; the reflog has the new move on top.
    await page.waitForFunction((id) => document.querySelector('#graph .node.head')?.getAttribute('data-commit') === id, fx.motd, {
      timeout: WAIT,
    });
    expect(await node(fx.motd).getAttribute('class')).not.toMatch(/\bheld\b/);
    await rows
      .first()
      .filter({ hasText: `${s12(fx.tools)} → ${s12(fx.motd)}` })
      .waitFor({ timeout: WAIT });
    expect(await rows.count()).toBe(5);

    // An older entry's head is one click away too (back to the base, then forward again).
    const baseRow = rows.filter({ hasText: 'import' });
    await baseRow.getByRole('button', { name: new RegExp(`Roll lab back to ${s12(fx.base)}`) }).click();
    await confirmDialog(/Move branch lab from[\s\S]*new motd[\s\S]*to[\s\S]*base image[\s\S]*2 commits leave/);
    await expect.poll(labHead, { timeout: WAIT }).toBe(fx.base);
    await page.waitForFunction((id) => document.querySelector('#graph .node.head')?.getAttribute('data-commit') === id, fx.base, {
      timeout: WAIT,
    });
    await page.getByRole('button', { name: `Undo this rollback: roll lab back to ${s12(fx.motd)}` }).click();
    await confirmDialog(/Move branch lab/);
    await expect.poll(labHead, { timeout: WAIT }).toBe(fx.motd);
  });

  it('gc: a dry run lists the unreachable layer; it leaves the disk only after the confirm', async () => {
    const store = fx.srv.store;
    // A commit dropped from lab long ago: its reflog entries are older than the
    // store keeps them (30 days), so nothing keeps it or its layer any more.
    const scratch = await fx.commit('lab', { 'opt/scratch.bin': 'x'.repeat(50_000) }, 'scratch experiment');
    expect((await call('POST', '/v1/profiles/lab/rollback', { to: fx.motd })).status).toBe(200);
    store.db.prepare('UPDATE reflog SET time = time - ? WHERE old = ? OR new = ?').run(31 * DAY, scratch, scratch);
    const layer = store.getCommit(scratch).addedLayer!;
    const file = store.objects.pathOf(layer);
    expect(existsSync(file)).toBe(true);
    // ...and its layer was baked that long ago (gc spares blobs younger than an hour).
    const then = new Date(Date.now() - 31 * DAY);
    utimesSync(file, then, then);

    await page.click('#nav a[data-view="gc"]');
    await page.locator('#view-gc').waitFor({ state: 'visible' });
    expect(await page.locator('#gc-result').innerText()).toMatch(/Not checked yet/);
    await page.click('#gc-check');
    const summary = page.locator('#gc-summary');
    await summary.waitFor({ timeout: WAIT });
    expect(await summary.innerText()).toMatch(/^1 commit and 1 object \([\d.]+ (B|KiB)\)\. Nothing has been deleted yet\./);
    const objRow = page.locator('#gc-result tr.gc-object', { hasText: s12(layer) });
    expect(await objRow.innerText()).toMatch(new RegExp(`layer of\\s*${s12(scratch)}[\\s\\S]*\\d (B|KiB)`));
    expect(await page.locator('#gc-result').innerText()).toMatch(/scratch experiment/);
    // The held-by-a-client or reachable commits are not on the list.
    expect(await page.locator('#gc-result').innerText()).not.toContain(s12(fx.motd));
    // The dry run deleted nothing.
    expect(existsSync(file)).toBe(true);
    expect(store.hasObject(layer)).toBe(true);
    expect((await call('GET', `/v1/commits/${scratch}`)).status).toBe(200);
    await shots('gc-dry-run');

    // The delete button asks; cancelling keeps everything.
    await page.click('#gc-run');
    await page.locator('#dialog').waitFor({ state: 'visible', timeout: WAIT });
    expect(await page.locator('#dialog').innerText()).toMatch(/gc removes 1 commit and 1 object[\s\S]*cannot be undone/);
    await page.click('#dialog-cancel');
    await page.locator('#dialog').waitFor({ state: 'hidden', timeout: WAIT });
    expect(existsSync(file)).toBe(true);

    await page.click('#gc-run');
    await confirmDialog(/Delete for good/);
    await summary.filter({ hasText: 'Freed' }).waitFor({ timeout: WAIT });
    expect(await summary.innerText()).toMatch(/Freed [\d.]+ (B|KiB): removed 1 commit and 1 object/);
    expect(existsSync(file)).toBe(false);
    expect((await call('GET', `/v1/commits/${scratch}`)).status).toBe(404);
    // What gc kept is still there: the head, and the client's commit.
    expect(await labHead()).toBe(fx.motd);
    for (const c of store.getCommit(fx.motd).manifest.layers) expect(store.hasObject(c.digest)).toBe(true);
    await shots('gc-done');

    // A second check finds nothing more.
    await page.click('#gc-check');
    await summary.filter({ hasText: 'Nothing' }).waitFor({ timeout: WAIT });
  });

  it('GET /v1/gc/roots needs the token and names what gc keeps', async () => {
    const anon = await fetch(`${fx.srv.httpUrl}/v1/gc/roots`);
    expect(anon.status).toBe(401);
    const { status, json } = await call<{ roots: { commit: string; reason: string }[] }>('GET', '/v1/gc/roots');
    expect(status).toBe(200);
    // lab's head is kept (gc names one reason per commit: its branch or the client running it).
    const motd = json.roots.find((r) => r.commit === fx.motd);
    expect(motd?.reason).toMatch(/^(branch lab|booted by client 52:54:00:00:00:01)$/);
  });

  it('raised no page errors', () => {
    expect(pageErrors).toEqual([]);
  });
});
