/**
 * The admin web page in Debian's chromium (playwright-core, headless) against
 * a real `strata serve` (HTTP + SSH + baker) on loopback with a real store.
 * The steps build on each other: log in, roll back, cherry-pick, a refused
 * cherry-pick, a CIDR assignment, a push over SSH that shows up live.
 * Screenshots at 1280x800 and 390x844 go to test-artifacts/.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Commit } from '../store/types.ts';
import { strataJson } from './helpers/cli.ts';
import {
  confirmDialog as confirmDialogIn,
  artifactPath,
  launchChromium,
  makeSshKey,
  sshPush,
  startWebFixture,
  type WebFixture,
} from './helpers/web-fixture.ts';

const WAIT = 60_000;

let fx: WebFixture;
let browser: Browser;
let ctx: BrowserContext;
let page: Page;
const requested: string[] = [];
const pageErrors: string[] = [];

async function shots(name: string): Promise<void> {
  await page.screenshot({ path: artifactPath(`web-${name}-1280x800.png`) });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(250);
  await page.screenshot({ path: artifactPath(`web-${name}-390x844.png`) });
  await page.screenshot({ path: artifactPath(`web-${name}-390x844-full.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.waitForTimeout(100);
}

const node = (id: string) => page.locator(`#graph [data-commit="${id}"]`);
const headInGraph = () => page.locator('#graph .node.head').getAttribute('data-commit');

async function waitForHead(id: string): Promise<void> {
  await page.waitForFunction((want) => document.querySelector('#graph .node.head')?.getAttribute('data-commit') === want, id, {
    timeout: WAIT,
  });
}

const confirmDialog = (expectText: RegExp): Promise<void> => confirmDialogIn(page, expectText, WAIT);

async function labLogHead(): Promise<string> {
  const commits = await strataJson<Commit[]>(['log', 'lab'], { data: fx.dataDir });
  return commits[0]!.id;
}

beforeAll(async () => {
  fx = await startWebFixture();
  browser = await launchChromium();
  ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await ctx.newPage();
  page.on('request', (r) => requested.push(r.url()));
  page.on('pageerror', (e) => pageErrors.push(e.message));
});

afterAll(async () => {
  await browser?.close();
  await fx?.close();
});

describe('web UI without a token', () => {
  it('shows only the login, and the API refuses every state-changing call', async () => {
    const anon = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    try {
      const p = await anon.newPage();
      await p.goto(`${fx.srv.httpUrl}/`);
      await p.locator('#login').waitFor({ state: 'visible' });
      expect(await p.locator('#view-profiles').isHidden()).toBe(true);
      expect(await p.locator('#nav').isHidden()).toBe(true);
      expect(await p.locator('#graph [data-commit]').count()).toBe(0);
      // A wrong token is refused and the page says so.
      await p.fill('#token', 'not-a-token');
      await p.click('#login-form button[type=submit]');
      await p.locator('#login-error').filter({ hasText: 'refused' }).waitFor({ timeout: WAIT });
      expect(await p.locator('#view-profiles').isHidden()).toBe(true);
      await p.screenshot({ path: artifactPath('web-login-1280x800.png') });
    } finally {
      await anon.close();
    }

    const calls: [string, string, unknown][] = [
      ['POST', '/v1/profiles/lab/rollback', { to: fx.base }],
      ['POST', '/v1/profiles/lab/revert', { commit: fx.tools }],
      ['POST', '/v1/profiles/lab/cherry-pick', { commit: fx.tools }],
      ['POST', '/v1/profiles/lab/flatten', {}],
      ['PUT', '/v1/profiles/lab/cmdline', { cmdline: 'quiet' }],
      ['POST', '/v1/tags', { name: 'v1', commit: fx.base }],
      ['POST', '/v1/branches', { name: 'evil', commit: fx.base }],
      ['PUT', '/v1/assignments', { match: 'default', target: 'lab' }],
      ['DELETE', '/v1/assignments?match=default', undefined],
      ['POST', '/v1/gc', {}],
    ];
    for (const auth of [undefined, 'Bearer not-a-token']) {
      for (const [method, path, body] of calls) {
        const headers: Record<string, string> = {};
        if (auth) headers.authorization = auth;
        if (body !== undefined) headers['content-type'] = 'application/json';
        const res = await fetch(`${fx.srv.httpUrl}${path}`, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        expect(res.status, `${method} ${path} with ${auth ?? 'no token'}`).toBe(401);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('E_UNAUTHORIZED');
      }
    }
    const ev = await fetch(`${fx.srv.httpUrl}/v1/events`);
    expect(ev.status).toBe(401);
    // Nothing moved.
    expect(fx.srv.store.resolve('lab')).toBe(fx.motd);
    expect(fx.srv.store.listAssignments()).toEqual([]);
    expect(fx.srv.store.listRefs().map((r) => r.name)).toEqual(['lab']);
  });
});

/** GET with the path sent as written: fetch() would resolve `..` before sending. */
function rawGet(url: string, path: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('web UI files', () => {
  it('serves the page modules from web/views/, and nothing outside web/', async () => {
    const view = await fetch(`${fx.srv.httpUrl}/views/history.js`);
    expect(view.status).toBe(200);
    expect(view.headers.get('content-type')).toContain('javascript');
    expect(view.headers.get('cache-control')).toBe('no-cache');
    expect(await view.text()).toContain('export function renderCommit');
    for (const path of [
      '/views/../package.json',
      '/views/..%2F..%2Fpackage.json',
      '/views/%2e%2e%2fpackage.json',
      '/views/..',
      '/../package.json',
      '/views/../../server/web-routes.ts',
      '/views/missing.js',
    ]) {
      const res = await rawGet(fx.srv.httpUrl, path);
      expect(res.status, path).toBe(404);
      expect(res.body, path).not.toContain('"dependencies"');
    }
  });
});

describe('web UI as an admin', () => {
  it('logs in and shows the profile graph with three commits', async () => {
    await page.goto(`${fx.srv.httpUrl}/`);
    await page.fill('#token', fx.token);
    await page.click('#login-form button[type=submit]');
    await page.locator('#graph [data-commit]').nth(2).waitFor({ timeout: WAIT });
    expect(await page.locator('#graph [data-commit]').count()).toBe(3);
    for (const id of [fx.base, fx.tools, fx.motd]) expect(await node(id).count()).toBe(1);
    expect(await headInGraph()).toBe(fx.motd);
    // Two parent edges, drawn by dagre.
    expect(await page.locator('#graph path.edge').count()).toBe(2);
    // The token is kept in this tab's session storage only.
    expect(await page.evaluate(() => sessionStorage.getItem('strata.token'))).toBe(fx.token);
    await page.locator('#live').filter({ hasText: 'on' }).waitFor({ timeout: WAIT });
    // The selected commit's details: message, layer size, diff.
    await page.locator('#commit .diff').filter({ hasText: '1 changed' }).waitFor({ timeout: WAIT });
    expect(await page.locator('#commit').innerText()).toMatch(/new motd[\s\S]*test[\s\S]*KiB[\s\S]*etc\/motd/);
    // Every form control has a label; every button says what it does.
    const unlabelled = await page.evaluate(() => [
      ...[...document.querySelectorAll('input, select')]
        .filter((e) => !(e as HTMLInputElement).labels?.length && !e.getAttribute('aria-label'))
        .map((e) => e.id || e.outerHTML.slice(0, 60)),
      ...[...document.querySelectorAll('button')]
        .filter((b) => !(b.textContent ?? '').trim() && !b.getAttribute('aria-label'))
        .map((b) => b.outerHTML.slice(0, 60)),
    ]);
    expect(unlabelled).toEqual([]);
    expect(await page.locator('main, nav, header').count()).toBe(3);
    await shots('profiles');
  });

  it('rolls back through the UI: the head moves in the graph and in strata log', async () => {
    // Keyboard: a graph node is a button.
    await node(fx.tools).focus();
    await page.keyboard.press('Enter');
    await page
      .locator('#commit-h')
      .filter({ hasText: fx.tools.slice(0, 12) })
      .waitFor();
    expect(await node(fx.tools).getAttribute('aria-pressed')).toBe('true');
    await page.getByRole('button', { name: 'Roll back to here…' }).click();
    await confirmDialog(/Move branch lab from[\s\S]*to[\s\S]*add tools[\s\S]*reflog/);
    await waitForHead(fx.tools);
    expect(await labLogHead()).toBe(fx.tools);
    expect(fx.srv.store.resolve('lab')).toBe(fx.tools);
  });

  let picked = '';
  let conflicting = '';
  it('cherry-picks a commit from another branch', async () => {
    // lab moves on (changes etc/motd); lab/feature forks at `tools`.
    await fx.commit('lab', { 'etc/motd': 'welcome v3\n' }, 'motd v3');
    fx.srv.store.branch('lab/feature', fx.tools);
    picked = await fx.commit('lab/feature', { 'opt/feature.txt': 'feature\n' }, 'feature file');
    conflicting = await fx.commit('lab/feature', { 'etc/motd': 'feature motd\n' }, 'feature motd');
    // These were made behind the server's back (no event): load the page again; the session survives.
    await page.reload();
    await node(conflicting).waitFor({ timeout: WAIT });
    const before = fx.srv.store.resolve('lab');
    await node(picked).click();
    await page
      .locator('#commit-h')
      .filter({ hasText: picked.slice(0, 12) })
      .waitFor();
    expect(await page.locator('#act-branch').inputValue()).toBe('lab');
    await page.getByRole('button', { name: 'Cherry-pick onto branch…' }).click();
    await confirmDialog(/stacks the layer of[\s\S]*feature file/);
    await page.waitForFunction(
      (old) => {
        const h = document.querySelector('#graph .node.head');
        return h && h.getAttribute('data-commit') !== old && /cherry-pick/.test(h.getAttribute('aria-label') ?? '');
      },
      before,
      { timeout: WAIT },
    );
    const head = fx.srv.store.getCommit(fx.srv.store.resolve('lab'));
    expect(head.kind).toBe('cherry-pick');
    expect(head.parent).toBe(before);
    expect(head.addedLayer).toBe(fx.srv.store.getCommit(picked).addedLayer);
    expect(await headInGraph()).toBe(head.id);
    expect(await labLogHead()).toBe(head.id);
  });

  it('shows the conflict list of a refused cherry-pick and changes nothing', async () => {
    const before = fx.srv.store.resolve('lab');
    await node(conflicting).click();
    await page
      .locator('#commit-h')
      .filter({ hasText: conflicting.slice(0, 12) })
      .waitFor();
    await page.getByRole('button', { name: 'Cherry-pick onto branch…' }).click();
    // The confirmation, then at once the same dialog again with the refusal.
    await page.locator('#dialog').waitFor({ state: 'visible', timeout: WAIT });
    expect(await page.locator('#dialog').innerText()).toMatch(/feature motd/);
    await page.click('#dialog-ok');
    const list = page.locator('#dialog #conflict-list');
    await list.waitFor({ state: 'visible', timeout: WAIT });
    expect(await page.locator('#dialog-h').innerText()).toMatch(/refused/i);
    expect((await list.locator('li').allInnerTexts()).map((s) => s.trim())).toEqual(['etc/motd']);
    await shots('conflict');
    await page.click('#dialog-cancel');
    await page.locator('#dialog').waitFor({ state: 'hidden' });
    expect(fx.srv.store.resolve('lab')).toBe(before);
    expect(await headInGraph()).toBe(before);
  });

  it('adds a CIDR assignment with a preview, and /v1/boot/ipxe answers by it', async () => {
    const base = fx.srv.httpUrl;
    await page.locator('#live').filter({ hasText: 'on' }).waitFor({ timeout: WAIT });
    // A known client in that network, booted on tools earlier (its heartbeat reaches the page live;
    // a heartbeat may name only a commit the client was served or its assigned profile's).
    fx.srv.store.recordClient({ mac: '52:54:00:12:34:56', ip: '10.9.3.4', commit: fx.tools, profile: 'lab', boot: true });
    const hb = await fetch(`${base}/v1/clients/52:54:00:12:34:56/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ commit: fx.tools, ip: '10.9.3.4' }),
    });
    expect(hb.status).toBe(200);
    await page.goto(`${base}/#assignments`);
    await page.locator('#view-assignments').waitFor({ state: 'visible' });
    await page.waitForFunction(() => document.querySelector('#as-profile option[value="lab"]') !== null, null, { timeout: WAIT });
    await page.fill('#as-match', '10.9.0.0/16');
    await page.selectOption('#as-profile', 'lab');
    const preview = page.locator('#assign-preview');
    await preview.filter({ hasText: '52:54:00:12:34:56' }).waitFor({ timeout: WAIT });
    expect(await preview.innerText()).toMatch(/Would catch 1 of 1 known client/);
    await shots('assign-preview');
    await page.fill('#as-match', '10.10.0.0/16');
    await preview.filter({ hasText: 'Would catch 0 of 1' }).waitFor({ timeout: WAIT });
    await page.fill('#as-match', '10.9.0.0/16');
    await page.click('#as-submit');
    await confirmDialog(/Clients matching 10\.9\.0\.0\/16 boot lab/);
    await page.locator('#assignments-table td').filter({ hasText: '10.9.0.0/16' }).first().waitFor({ timeout: WAIT });
    expect(fx.srv.store.listAssignments()).toMatchObject([{ match: '10.9.0.0/16', kind: 'cidr', profile: 'lab', pin: null }]);

    const head = fx.srv.store.resolve('lab');
    const inside = await (await fetch(`${base}/v1/boot/ipxe?mac=52:54:00:aa:bb:cc&ip=10.9.7.7`)).text();
    expect(inside).toContain(`strata.commit=${head}`);
    expect(inside).toContain('strata.profile=lab');
    const outside = await (await fetch(`${base}/v1/boot/ipxe?mac=52:54:00:aa:bb:dd&ip=10.10.0.1`)).text();
    expect(outside).not.toContain('strata.commit=');
    await shots('assignments');

    // That boot shows up in the clients table without a reload.
    await page.click('#nav a[data-view="clients"]');
    const row = page.locator('#clients-table tr', { hasText: '52:54:00:aa:bb:cc' });
    await row.waitFor({ timeout: WAIT });
    expect(await row.innerText()).toMatch(/10\.9\.7\.7[\s\S]*online[\s\S]*lab[\s\S]*10\.9\.0\.0\/16/);
    // Its heartbeat brings its hardware onto the page, live; opened, the details.
    const inventory = {
      cpus: 2,
      memoryKb: 2048000,
      cpuModel: 'Test CPU 3000',
      nics: [{ name: 'eth0', mac: '52:54:00:aa:bb:cc' }],
      disks: [{ name: 'vda', bytes: 8 * 2 ** 30 }],
      dmi: { vendor: 'QEMU', product: 'Standard PC', serial: 'S123' },
    };
    const beat = await fetch(`${base}/v1/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ mac: '52:54:00:aa:bb:cc', commit: head, uptimeSec: 7300, inventory }),
    });
    expect(beat.status).toBe(200);
    const hw = row.locator('details.hardware');
    await hw.filter({ hasText: '2 CPUs, 2.0 GiB' }).waitFor({ timeout: WAIT });
    expect(await row.innerText()).toMatch(/up 2 h/);
    await hw.locator('summary').click();
    expect(await hw.innerText()).toMatch(
      /Test CPU 3000[\s\S]*eth0 52:54:00:aa:bb:cc[\s\S]*vda 8\.0 GiB[\s\S]*QEMU Standard PC serial S123/,
    );
    await shots('clients');
  });

  it('shows a client held back on its last good commit, and Clear lets it try again', async () => {
    const base = fx.srv.httpUrl;
    const store = fx.srv.store;
    const mac = '52:54:00:aa:bb:cc';
    const head = store.resolve('lab');
    // Its boot of the head (the test above) proves healthy: the head is its last good commit.
    const ok = await fetch(`${base}/v1/boot-health`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ mac, commit: head, ok: true }),
    });
    expect(ok.status).toBe(200);
    // Pinned to an older commit that never reports back: 3 failed boots, then the 4th gets the head.
    const older = store.resolve('lab~1');
    store.assign(mac, `lab@${older}`);
    const bootOnce = async () =>
      /strata\.commit=([0-9a-f]{64})/.exec(await (await fetch(`${base}/v1/boot/ipxe?mac=${mac}&ip=10.9.7.7`)).text())?.[1];
    for (let i = 0; i < 3; i++) expect(await bootOnce()).toBe(older);
    expect(await bootOnce()).toBe(head);
    await page.click('#nav a[data-view="clients"]');
    const row = page.locator('#clients-table tr', { hasText: mac });
    await row.filter({ hasText: 'held back' }).waitFor({ timeout: WAIT });
    expect(await row.innerText()).toContain(`held back: ${older.slice(0, 7)}`);
    await row.getByRole('button', { name: 'Clear' }).click();
    await row.filter({ hasNotText: 'held back' }).waitFor({ timeout: WAIT });
    expect(store.clientHealth(mac).heldBack).toBeNull();
    expect(await bootOnce()).toBe(older);
    store.unassign(mac);
  });

  it('shows a push made over SSH without reloading', async () => {
    const { keyFile, publicLine } = makeSshKey(fx.work, 'dev-key');
    fx.srv.store.addKey('dev', publicLine, { admin: true, profiles: [] });
    await page.evaluate(() => {
      (window as unknown as { notReloaded: string }).notReloaded = 'yes';
    });
    await page.click('#nav a[data-view="pushes"]');
    await page.locator('#view-pushes').waitFor({ state: 'visible' });
    await page.locator('#live').filter({ hasText: 'on' }).waitFor({ timeout: WAIT });
    const upper = join(fx.work, 'upper');
    mkdirSync(join(upper, 'etc'), { recursive: true });
    writeFileSync(join(upper, 'etc', 'pushed.txt'), 'from a client\n');
    const parent = fx.srv.store.resolve('lab');
    const r = await sshPush({ dir: upper, keyFile, port: fx.srv.sshPort, profile: 'lab', parent, message: 'pushed over ssh' });
    expect(r.code, r.stderr).toBe(0);
    const pushId = r.stdout.trim();
    expect(pushId).not.toBe('');
    const row = page.locator('#pushes-table tr', { hasText: pushId });
    await row.filter({ hasText: 'committed' }).waitFor({ timeout: 90_000 });
    expect(await row.innerText()).toMatch(/pushed over ssh[\s\S]*dev/);
    // Not a tar: queued, then rejected by the baker with a reason.
    const bad = await sshPush({
      raw: Buffer.from('this is not a tar archive\n'.repeat(40)),
      keyFile,
      port: fx.srv.sshPort,
      profile: 'lab',
      parent,
      message: 'garbage',
    });
    expect(bad.code, bad.stderr).toBe(0);
    const badRow = page.locator('#pushes-table tr', { hasText: bad.stdout.trim() });
    await badRow.filter({ hasText: 'rejected' }).waitFor({ timeout: 90_000 });
    const reason = fx.srv.store.getPush(bad.stdout.trim()).reason;
    expect(reason).toBeTruthy();
    expect(await badRow.innerText()).toContain(reason!.slice(0, 40));
    await shots('pushes');
    await page.click('#nav a[data-view="profiles"]');
    const pushed = fx.srv.store.getPush(pushId).commit!;
    await waitForHead(pushed);
    expect(await node(pushed).getAttribute('aria-label')).toContain('pushed over ssh');
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: string }).notReloaded)).toBe('yes');
    await shots('after-push');
  });

  it('edits the command line, creates a profile from the imported base, tags and pins a commit', async () => {
    await page.click('#nav a[data-view="profiles"]');
    await page.fill('#cmdline', 'console=ttyS0 quiet');
    await page.click('#cmdline-form button[type=submit]');
    await confirmDialog(/Now[\s\S]*\(empty\)[\s\S]*New[\s\S]*console=ttyS0 quiet/);
    await expect.poll(() => fx.srv.store.getProfile('lab').cmdline, { timeout: WAIT }).toBe('console=ttyS0 quiet');

    await page.click('#new-profile summary');
    await page.waitForFunction((id) => document.querySelector(`#np-base option[value="${id}"]`) !== null, fx.base, { timeout: WAIT });
    await page.fill('#np-name', 'lab2');
    await page.selectOption('#np-base', fx.base);
    await page.click('#new-profile-form button[type=submit]');
    await confirmDialog(/Create profile lab2\?[\s\S]*imported base/);
    await page.locator('#profile-list button', { hasText: 'lab2' }).waitFor({ timeout: WAIT });
    expect(fx.srv.store.getProfile('lab2').head).toBe(fx.base);
    await page.locator('#profile-list button', { hasText: /^lab$/ }).click();
    await node(fx.tools).waitFor({ timeout: WAIT });

    await node(fx.tools).click();
    await page.getByRole('button', { name: 'Tag…' }).click();
    await page.locator('#tag-name').fill('v1');
    await page.keyboard.press('Enter'); // Enter in the dialog's field means OK
    await page.waitForFunction(
      (id) => /tag v1/.test(document.querySelector(`#graph [data-commit="${id}"]`)?.getAttribute('aria-label') ?? ''),
      fx.tools,
      { timeout: WAIT },
    );
    expect(fx.srv.store.resolve('v1')).toBe(fx.tools);

    await page.getByRole('button', { name: 'Pin clients…' }).click();
    await page.locator('#pin-match').fill('52:54:00:12:34:56');
    await page.locator('#dialog .preview').filter({ hasText: 'Would catch 1 of' }).waitFor({ timeout: WAIT });
    await page.click('#dialog-ok');
    await page.waitForFunction(
      (id) => /pin 52:54:00:12:34:56/.test(document.querySelector(`#graph [data-commit="${id}"]`)?.getAttribute('aria-label') ?? ''),
      fx.tools,
      { timeout: WAIT },
    );
    expect(fx.srv.store.listAssignments().find((a) => a.kind === 'mac')).toMatchObject({
      match: '52:54:00:12:34:56',
      profile: 'lab',
      pin: fx.tools,
    });
    const script = await (await fetch(`${fx.srv.httpUrl}/v1/boot/ipxe?mac=52:54:00:12:34:56&ip=10.9.3.4`)).text();
    expect(script).toContain(`strata.commit=${fx.tools}`);
    expect(script).toContain('console=ttyS0 quiet');
    await shots('pinned');
  });

  it('reverts a commit and flattens the branch through the UI', async () => {
    const store = fx.srv.store;
    const pick = store.log('lab').find((c) => c.kind === 'cherry-pick')!;
    await node(pick.id).click();
    await page.getByRole('button', { name: 'Revert…' }).click();
    await confirmDialog(/no longer has the layer[\s\S]*feature file[\s\S]*2 added/);
    await expect.poll(() => store.getCommit(store.resolve('lab')).kind, { timeout: WAIT }).toBe('revert');
    const reverted = store.getCommit(store.resolve('lab'));
    expect(reverted.manifest.layers.map((l) => l.digest)).not.toContain(pick.addedLayer);
    await waitForHead(reverted.id);

    await node(reverted.id).click();
    await page.getByRole('button', { name: 'Flatten branch…' }).click();
    await confirmDialog(new RegExp(`Bake the ${reverted.manifest.layers.length} layers`));
    await expect.poll(() => store.getCommit(store.resolve('lab')).kind, { timeout: WAIT }).toBe('flatten');
    const flat = store.getCommit(store.resolve('lab'));
    expect(flat.manifest.layers).toHaveLength(1);
    await waitForHead(flat.id);
    expect(await labLogHead()).toBe(flat.id);
  });

  it('never put the token in a URL and raised no page errors', () => {
    expect(requested.length).toBeGreaterThan(5);
    expect(requested.filter((u) => u.includes(fx.token))).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
