/**
 * The web page's ref actions in Debian's chromium (playwright-core, headless)
 * against a real `strata serve` on loopback with a real store: rebasing a
 * side branch onto a newer commit (its layer reused as it is), a refused
 * rebase listing the conflicting path, deleting a side branch and a tag
 * (and rollback bringing them back), and removing a profile, refused while
 * an assignment boots it. A screenshot of the conflict goes to test-artifacts/.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Commit, Ref } from '../store/types.ts';
import { confirmDialog as confirmDialogIn, artifactPath, signedInPage, startWebFixture, type WebFixture } from './helpers/web-fixture.ts';

const WAIT = 30_000;

let fx: WebFixture;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];
/** lab/dev and lab/conf fork at lab's base; dev adds opt/dev/notes.txt, conf changes etc/motd (as lab's motd did). */
let dev = '';
let conf = '';
/** lab's newest commit: a layer on a path neither branch touches. */
let issue = '';

async function call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const headers: Record<string, string> = { authorization: `Bearer ${fx.token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${fx.srv.httpUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as T };
}

const refAt = async (name: string): Promise<string | null> =>
  (await call<{ refs: Ref[] }>('GET', '/v1/refs')).json.refs.find((r) => r.name === name)?.commit ?? null;
const getCommit = async (id: string): Promise<Commit> => (await call<{ commit: Commit }>('GET', `/v1/commits/${id}`)).json.commit;
const profileNames = async (): Promise<string[]> =>
  (await call<{ profiles: { name: string }[] }>('GET', '/v1/profiles')).json.profiles.map((p) => p.name);
const s12 = (id: string) => id.slice(0, 12);
const node = (id: string) => page.locator(`#graph [data-commit="${id}"]`);
const badge = (text: string) => page.locator('#graph .badge', { hasText: new RegExp(`^${text}$`) });
const branchOption = (name: string) => page.locator(`#act-branch option[value="${name}"]`);
const confirmDialog = (expectText: RegExp): Promise<void> => confirmDialogIn(page, expectText, WAIT);

/** Selects commit ID in the graph and BRANCH as the branch to act on. */
async function select(id: string, branch: string): Promise<void> {
  await node(id).click();
  await page
    .locator('#commit-h')
    .filter({ hasText: s12(id) })
    .waitFor({ timeout: WAIT });
  await page.selectOption('#act-branch', branch);
  expect(await page.locator('#act-branch').inputValue()).toBe(branch);
}

beforeAll(async () => {
  fx = await startWebFixture();
  const store = fx.srv.store;
  store.branch('lab/dev', fx.base);
  dev = await fx.commit('lab/dev', { 'opt/dev/notes.txt': 'dev notes\n' }, 'dev notes');
  store.branch('lab/conf', fx.base);
  conf = await fx.commit('lab/conf', { 'etc/motd': 'conf motd\n' }, 'conf motd');
  issue = await fx.commit('lab', { 'etc/issue': 'lab v3\n' }, 'issue banner');
  store.tag('v1', fx.tools);
  ({ browser, page } = await signedInPage(fx, pageErrors));
  await node(conf).waitFor({ timeout: WAIT });
  await page.locator('#live').filter({ hasText: 'on' }).waitFor({ timeout: WAIT });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await fx?.close();
});

describe('web UI: rebase and deleting refs', () => {
  it('rebases lab/dev onto the newer lab commit: the branch moves and its layer is reused as it is', async () => {
    const layer = (await getCommit(dev)).addedLayer;
    expect(layer).toBeTruthy();
    await select(issue, 'lab/dev');
    await page.getByRole('button', { name: 'Rebase branch onto here…' }).click();
    await confirmDialog(new RegExp(`Rebase lab/dev onto ${s12(issue)}\\?[\\s\\S]*issue banner`));
    await page
      .locator('#toast')
      .filter({ hasText: /^Rebased: lab\/dev is now [0-9a-f]{12} \(1 layer\(s\) reused\)$/ })
      .waitFor({ timeout: WAIT });
    await expect.poll(() => refAt('lab/dev'), { timeout: WAIT }).not.toBe(dev);
    const head = await getCommit((await refAt('lab/dev'))!);
    expect(await page.locator('#toast').innerText()).toContain(s12(head.id));
    expect(head.parent).toBe(issue);
    expect(head.addedLayer).toBe(layer);
    expect(head.manifest.layers.map((l) => l.digest)).toEqual([...(await getCommit(issue)).manifest.layers.map((l) => l.digest), layer]);
    expect(head.message).toBe('dev notes');
    // The graph draws the branch at its new head; lab did not move.
    await node(head.id)
      .locator('.badge', { hasText: /^lab\/dev$/ })
      .waitFor({ timeout: WAIT });
    expect(await badge('lab/dev').count()).toBe(1);
    expect(await refAt('lab')).toBe(issue);
  });

  it('refuses a rebase whose target changed the same path, listing it; leaving it changes nothing', async () => {
    await select(fx.motd, 'lab/conf');
    await page.getByRole('button', { name: 'Rebase branch onto here…' }).click();
    // The confirmation, then at once the same dialog again with the refusal.
    await page.locator('#dialog').filter({ hasText: 'Rebase lab/conf onto' }).waitFor({ timeout: WAIT });
    await page.click('#dialog-ok');
    const list = page.locator('#dialog #conflict-list');
    await list.waitFor({ state: 'visible', timeout: WAIT });
    expect(await page.locator('#dialog-h').innerText()).toBe('Rebase refused: conflicts');
    const items = await list.locator('li').allInnerTexts();
    expect(items).toHaveLength(1);
    expect(items[0]).toMatch(/^etc\/motd old base: .+; new base: .+; layer [0-9a-f]{12}$/);
    expect(await page.locator('#dialog').innerText()).toMatch(/Nothing was changed/);
    await page.screenshot({ path: artifactPath('web-rebase-conflict-1280x800.png') });
    expect(await page.locator('#dialog-cancel').innerText()).toBe('Leave it');
    await page.click('#dialog-cancel');
    await page.locator('#dialog').waitFor({ state: 'hidden', timeout: WAIT });
    expect(await refAt('lab/conf')).toBe(conf);
    expect(await badge('lab/conf').count()).toBe(1);
    expect(
      await node(conf)
        .locator('.badge', { hasText: /^lab\/conf$/ })
        .count(),
    ).toBe(1);
  });

  it('deletes a side branch and a tag after asking; they leave the page, and rollback brings them back', async () => {
    await select(conf, 'lab/conf');
    await page.getByRole('button', { name: 'Delete branch…' }).click();
    await confirmDialog(/Delete branch lab\/conf\?[\s\S]*strata rollback lab\/conf/);
    await branchOption('lab/conf').waitFor({ state: 'detached', timeout: WAIT });
    await badge('lab/conf').waitFor({ state: 'detached', timeout: WAIT });
    expect(await refAt('lab/conf')).toBeNull();
    // Its commit is still drawn, kept by the reflog entry of the deletion.
    await node(conf).locator('.badge.held').filter({ hasText: 'kept: reflog' }).waitFor({ timeout: WAIT });

    await node(fx.tools).click();
    await page
      .locator('#commit-h')
      .filter({ hasText: s12(fx.tools) })
      .waitFor({ timeout: WAIT });
    await page.getByRole('button', { name: 'Delete tag v1…' }).click();
    await confirmDialog(/Delete tag v1\?[\s\S]*strata rollback v1/);
    await badge('tag v1').waitFor({ state: 'detached', timeout: WAIT });
    expect(await page.getByRole('button', { name: 'Delete tag v1…' }).count()).toBe(0);
    expect(await refAt('v1')).toBeNull();

    for (const name of ['lab/conf', 'v1']) {
      const r = await call<{ restored: string[] }>('POST', `/v1/profiles/${encodeURIComponent(name)}/rollback`, {});
      expect(r.status).toBe(200);
      expect(r.json.restored).toEqual([name]);
    }
    expect(await refAt('lab/conf')).toBe(conf);
    expect(await refAt('v1')).toBe(fx.tools);
    // The page follows live.
    await node(conf)
      .locator('.badge', { hasText: /^lab\/conf$/ })
      .waitFor({ timeout: WAIT });
    await node(fx.tools)
      .locator('.badge', { hasText: /^tag v1$/ })
      .waitFor({ timeout: WAIT });
    await branchOption('lab/conf').waitFor({ state: 'attached', timeout: WAIT });
  });

  it('refuses to remove a profile an assignment boots, saying E_IN_USE; removes it once unassigned', async () => {
    expect((await call('PUT', '/v1/assignments', { match: 'default', target: 'lab' })).status).toBe(200);
    const refsBefore = (await call<{ refs: Ref[] }>('GET', '/v1/refs')).json.refs;
    await select(issue, 'lab');
    await page.getByRole('button', { name: 'Remove profile…' }).click();
    await page.locator('#dialog').filter({ hasText: 'Remove profile lab?' }).waitFor({ timeout: WAIT });
    expect(await page.locator('#dialog').innerText()).toMatch(/Refused while an assignment boots it/);
    await page.click('#dialog-ok');
    await page.locator('#dialog-h').filter({ hasText: 'Removing profile lab did not work' }).waitFor({ timeout: WAIT });
    expect(await page.locator('#dialog').innerText()).toMatch(
      /profile lab is used by the assignment\(s\) default[\s\S]*Error code E_IN_USE, HTTP 409\. Nothing was changed\./,
    );
    await page.click('#dialog-cancel');
    await page.locator('#dialog').waitFor({ state: 'hidden', timeout: WAIT });
    expect(await profileNames()).toEqual(['lab']);
    expect((await call<{ refs: Ref[] }>('GET', '/v1/refs')).json.refs).toEqual(refsBefore);
    expect(await page.locator('#profile-list button', { hasText: /^lab$/ }).count()).toBe(1);

    expect((await call('DELETE', '/v1/assignments?match=default')).status).toBe(200);
    await page.getByRole('button', { name: 'Remove profile…' }).click();
    await confirmDialog(/Remove profile lab\?[\s\S]*strata rollback lab/);
    await page.locator('#profile-list').filter({ hasText: 'No profiles yet' }).waitFor({ timeout: WAIT });
    expect(await profileNames()).toEqual([]);
    expect((await call('GET', '/v1/profiles/lab')).status).toBe(404);
    expect(await page.locator('#graph [data-commit]').count()).toBe(0);

    // Rollback brings the whole profile back, with its branches and tag, and the page shows it again.
    const back = await call<{ restored: string[] }>('POST', '/v1/profiles/lab/rollback', {});
    expect(back.status).toBe(200);
    expect([...back.json.restored].sort()).toEqual(refsBefore.map((r) => r.name).sort());
    await page.locator('#profile-list button', { hasText: /^lab$/ }).waitFor({ timeout: WAIT });
    await page.waitForFunction((id) => document.querySelector('#graph .node.head')?.getAttribute('data-commit') === id, issue, {
      timeout: WAIT,
    });
    expect(await refAt('lab')).toBe(issue);
  });

  it('raised no page errors', () => {
    expect(pageErrors).toEqual([]);
  });
});
