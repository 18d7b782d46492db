/**
 * For the web UI tests: a real `strata serve` (startServer: HTTP + SSH +
 * baker) on loopback over a real store in a temp dir, a profile `lab` with
 * three commits, an admin token, and a headless Debian chromium.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startServer, type RunningServer } from '../../server/main.ts';
import { makeTar, type Spec } from './tars.ts';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const ARTIFACTS = join(ROOT, 'test-artifacts');

export interface WebFixture {
  srv: RunningServer;
  dataDir: string;
  work: string;
  token: string;
  /** lab's commits, oldest first: base, tools, motd. */
  base: string;
  tools: string;
  motd: string;
  commit(profileOrBranch: string, files: Record<string, Spec>, message: string): Promise<string>;
  close(): Promise<void>;
}

export async function startWebFixture(): Promise<WebFixture> {
  const work = mkdtempSync(join(tmpdir(), 'strata-web-'));
  const dataDir = join(work, 'data');
  let srv: RunningServer | null = null;
  try {
    srv = await startServer({
      dataDir,
      http: '127.0.0.1:0',
      ssh: '127.0.0.1:0',
      webDir: join(ROOT, 'web'),
      handleSignals: false,
      log: () => {},
    });
    const store = srv.store;
    const kernel = join(work, 'vmlinuz');
    const initrd = join(work, 'initrd.img');
    writeFileSync(kernel, randomBytes(200_000));
    writeFileSync(initrd, randomBytes(80_000));
    const baseTar = join(work, 'base.tar');
    writeFileSync(baseTar, await makeTar({ 'etc/hostname': 'lab\n', 'etc/motd': 'welcome v1\n', 'usr/share/doc/readme': 'base image\n' }));
    // Level 3: fast bakes; the tests are about the page, not the ratio.
    const base = (await store.importBase('lab', baseTar, { kernel, initrd, level: 3, message: 'base image' })).id;
    let n = 0;
    const commit = async (profile: string, files: Record<string, Spec>, message: string): Promise<string> => {
      const tar = join(work, `layer-${n++}.tar`);
      writeFileSync(tar, await makeTar(files));
      return (await store.commitTar(profile, tar, { message, author: 'test' })).commit.id;
    };
    const tools = await commit('lab', { 'usr/bin/tool': '#!/bin/sh\necho tool\n' }, 'add tools');
    const motd = await commit('lab', { 'etc/motd': 'welcome v2\n' }, 'new motd');
    const { token } = store.createToken('web-test');
    const running = srv;
    return {
      srv,
      dataDir,
      work,
      token,
      base,
      tools,
      motd,
      commit,
      close: async () => {
        await running.close();
        rmSync(work, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await srv?.close().catch(() => {});
    rmSync(work, { recursive: true, force: true });
    throw e;
  }
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Opens the admin page of FX and signs in with its token. */
export async function signIn(page: Page, fx: WebFixture): Promise<void> {
  await page.goto(`${fx.srv.httpUrl}/`);
  await page.fill('#token', fx.token);
  await page.click('#login-form button[type=submit]');
}

/** A chromium page at 1280x800, signed in to FX; page errors are pushed onto ERRORS. */
export async function signedInPage(fx: WebFixture, errors: string[]): Promise<{ browser: Browser; page: Page }> {
  const browser = await launchChromium();
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  await signIn(page, fx);
  return { browser, page };
}

export function artifactPath(name: string): string {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}

/** An ed25519 key pair made with ssh-keygen; returns the private key file and the public line. */
export function makeSshKey(dir: string, name: string): { keyFile: string; publicLine: string } {
  const keyFile = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', keyFile]);
  return { keyFile, publicLine: readFileSync(`${keyFile}.pub`, 'utf8').trim() };
}

/**
 * What a client does: `tar -C dir -cf - . | zstd | ssh ... push PROFILE --parent ID -m MSG`
 * with the system tar, zstd and OpenSSH client. With `raw` instead of `dir`,
 * those bytes are compressed and sent instead of a tar. Resolves with ssh's output.
 */
export function sshPush(o: {
  dir?: string;
  raw?: Buffer;
  keyFile: string;
  port: number;
  profile: string;
  parent: string;
  message: string;
}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const ssh = [
    'ssh',
    '-i',
    o.keyFile,
    '-p',
    String(o.port),
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'LogLevel=ERROR',
    '-o',
    'ConnectTimeout=20',
    'strata@127.0.0.1',
    `push ${o.profile} --parent ${o.parent} -m '${o.message.replace(/'/g, '')}'`,
  ];
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const source = o.dir !== undefined ? `tar -C ${q(o.dir)} -cf - . | ` : '';
  const pipeline = `set -o pipefail; ${source}zstd -q -c | ${ssh.map(q).join(' ')}`;
  return new Promise((res, rej) => {
    const p = spawn('bash', ['-c', pipeline], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', rej);
    p.on('close', (code) => res({ code, stdout, stderr }));
    p.stdin.on('error', () => {});
    p.stdin.end(o.raw ?? Buffer.alloc(0));
  });
}

/** Checks the open confirmation dialog says `expectText`, then presses its OK button and waits for it to close. */
export async function confirmDialog(page: Page, expectText: RegExp, timeout: number): Promise<void> {
  const dlg = page.locator('#dialog');
  await dlg.waitFor({ state: 'visible', timeout });
  const text = await dlg.innerText();
  if (!expectText.test(text)) throw new Error(`the dialog says ${JSON.stringify(text)}, expected ${expectText}`);
  await page.click('#dialog-ok');
  await dlg.waitFor({ state: 'hidden', timeout });
}
