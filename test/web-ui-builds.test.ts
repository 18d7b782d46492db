/**
 * The Builds view in a real chromium against a real server: a recipe with a
 * mistake is refused with its line before anything runs; a recipe naming a
 * suite the mirror does not have is built by the server, its log shows up
 * as it runs, and the page ends on the error with the log's last lines;
 * nothing is committed. (Successful builds take minutes: they are proven by
 * test/recipe-build.test.ts through the CLI and the API the page uses.)
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactPath, signedInPage, startWebFixture, type WebFixture } from './helpers/web-fixture.ts';

const WAIT = 120_000;
let fx: WebFixture;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  fx = await startWebFixture();
  ({ browser, page } = await signedInPage(fx, pageErrors));
  await page.locator('#nav').waitFor({ state: 'visible', timeout: WAIT });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await fx?.close();
});

describe('the Builds view', () => {
  it(
    'refuses a recipe with a mistake, naming its line, and queues nothing',
    async () => {
      await page.click('#nav a[data-view="builds"]');
      await page.locator('#view-builds').waitFor({ state: 'visible' });
      await page.fill('#build-profile', 'web-built');
      await page.fill('#build-recipe', 'suite = "bookworm"\npackges = ["less"]\n');
      await page.click('#build-form button[type=submit]');
      await page.locator('#dialog').filter({ hasText: 'recipe:2: packges: unknown key' }).waitFor({ timeout: WAIT });
      await page.keyboard.press('Escape');
      expect(fx.srv.store.listBuilds()).toEqual([]);
    },
    WAIT,
  );

  it(
    'starts a build, shows its log as it runs, and ends on the error with the log tail; nothing is committed',
    async () => {
      await page.fill('#build-recipe', 'suite = "bookwormz"\n');
      await page.click('#build-form button[type=submit]');
      await page.locator('#build-result').filter({ hasText: 'failed' }).waitFor({ timeout: WAIT });
      expect(await page.locator('#build-log').textContent()).toMatch(/bookwormz/);
      expect(await page.locator('#build-result .build-error').textContent()).toMatch(/last lines of the build log[\s\S]*bookwormz/);
      await page.locator('#builds-table').filter({ hasText: 'web-built' }).waitFor({ timeout: WAIT });
      await page.screenshot({ path: artifactPath('web-builds-1280x800.png') });
      expect(fx.srv.store.listProfiles().map((p) => p.name)).toEqual(['lab']);
      expect(pageErrors).toEqual([]);
    },
    WAIT,
  );
});
