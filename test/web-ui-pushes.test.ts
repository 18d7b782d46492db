/**
 * The pushes page for a push that cannot bake yet: it shows the attempts and
 * the last error, and the admin rejects it with the Reject button (after a
 * confirmation), as `strata push reject ID` does. Real server, SSH push,
 * headless chromium.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { confirmDialog, launchChromium, signIn, startWebFixture, type WebFixture } from './helpers/web-fixture.ts';
import { lastLine, makeKey, ssh2Run, zstdTar } from './helpers/server-ssh.ts';

const WAIT = 30_000;
let fx: WebFixture;
let browser: Browser;
let page: Page;
const realPath = process.env.PATH;

beforeAll(async () => {
  fx = await startWebFixture();
  browser = await launchChromium();
  page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
}, 180_000);

afterAll(async () => {
  process.env.PATH = realPath;
  await browser?.close();
  await fx?.close();
});

describe('the pushes page', () => {
  it('shows a waiting push with its attempts and last error, and rejects it with the Reject button', async () => {
    const key = makeKey(fx.work, 'lab');
    fx.srv.store.addKey('lab-client', key.publicLine, { admin: false, profiles: ['lab'] });
    const archive = zstdTar(fx.work, { 'etc/motd': 'waits for tar2sqfs\n' });
    // A PATH with zstd but no tar2sqfs: the bake fails for a reason that may pass, the push waits.
    const bin = join(fx.work, 'bin-no-tar2sqfs');
    mkdirSync(bin, { recursive: true });
    const zstd = execFileSync('sh', ['-c', 'command -v zstd'], { encoding: 'utf8' }).trim();
    if (!existsSync(join(bin, 'zstd'))) symlinkSync(zstd, join(bin, 'zstd'));
    process.env.PATH = bin;
    let id: string;
    try {
      const r = await ssh2Run(
        { port: fx.srv.sshPort, privateKey: key.privateKey },
        `push lab --parent ${fx.srv.store.getProfile('lab').head} -m waiting`,
        archive,
      );
      expect(r.code, r.stderr).toBe(0);
      id = lastLine(r.stdout);
      const deadline = Date.now() + WAIT;
      while (!fx.srv.store.getPush(id).lastError) {
        if (Date.now() > deadline) throw new Error('the first bake attempt did not fail');
        await new Promise((res) => setTimeout(res, 50));
      }
    } finally {
      process.env.PATH = realPath;
    }

    await signIn(page, fx);
    await page.click('#nav a[data-view="pushes"]');
    const row = page.locator('#pushes-table tr', { hasText: id });
    await row.locator('button', { hasText: 'Reject' }).waitFor({ timeout: WAIT });
    expect(await row.innerText()).toMatch(/waiting \(1 attempt, last: .*tar2sqfs/);

    await row.locator('button', { hasText: 'Reject' }).click();
    await confirmDialog(page, new RegExp(`Reject push ${id}\\?[\\s\\S]*archive is deleted`), WAIT);
    await row.locator('.reason', { hasText: 'rejected by token:web-test' }).waitFor({ timeout: WAIT });
    expect(fx.srv.store.getPush(id)).toMatchObject({ state: 'rejected', reason: 'rejected by token:web-test' });
    expect(existsSync(fx.srv.store.pushArchivePath(id))).toBe(false);
    expect(await row.locator('button', { hasText: 'Reject' }).count()).toBe(0);
  }, 180_000);
});
