/**
 * The connection limits and quotas are config keys (issue 11): `strata
 * config check` reports a bad one by file, line and key, and `strata serve
 * --config` applies them (here a 1 s SSH authentication timeout closes a
 * silent raw TCP connection, and a 2 s HTTP request timeout closes a
 * trickled POST) while the boot route answers.
 */
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../server/cluster.ts';
import { STRATA } from './helpers/cli.ts';
import { waitPort } from './helpers/ports.ts';
import { tempDir } from './helpers/server-fixture.ts';

let tmp: ReturnType<typeof tempDir>;
beforeAll(() => {
  tmp = tempDir('strata-config-limits-');
});
afterAll(() => tmp?.cleanup());

const closedWithin = (sock: net.Socket, ms: number): Promise<number | 'still open'> => {
  const t0 = Date.now();
  return Promise.race([
    new Promise<number>((r) => sock.once('close', () => r(Date.now() - t0))),
    new Promise<'still open'>((r) => setTimeout(() => r('still open'), ms)),
  ]);
};

describe('connection limits in the config file', () => {
  it('config check names a bad limit by line and key', () => {
    const file = join(tmp.dir, 'bad.toml');
    writeFileSync(file, '[ssh]\nmax_channels = -1\n[limits]\nkey_quota = "lots"\n');
    const r = spawnSync(STRATA, ['config', 'check', file], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr + r.stdout).toMatch(/bad\.toml:2: ssh\.max_channels: must be a whole number from 0/);
    expect(r.stderr + r.stdout).toMatch(/bad\.toml:4: limits\.key_quota: must be a size/);
  });

  it('strata serve applies them: a silent SSH connection and a trickled POST are closed', async () => {
    const [http, ssh] = [await freePort(), await freePort()];
    const conf = join(tmp.dir, 'serve.toml');
    writeFileSync(
      conf,
      `data_dir = "${join(tmp.dir, 'data')}"\n[http]\nlisten = "127.0.0.1:${http}"\nrequest_timeout = "2s"\n[ssh]\nlisten = "127.0.0.1:${ssh}"\nauth_timeout = "1s"\n`,
    );
    const child = spawn(STRATA, ['--config', conf, 'serve'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d) => (log += d));
    const exited = new Promise((r) => child.once('exit', r));
    try {
      await waitPort(http, 60_000).catch((e) => {
        throw new Error(`${(e as Error).message}; server said: ${log}`);
      });
      await waitPort(ssh, 60_000);
      const s = net.connect(ssh, '127.0.0.1');
      s.on('error', () => {});
      s.resume();
      const h = net.connect(http, '127.0.0.1');
      h.on('error', () => {});
      h.resume();
      h.write('POST /v1/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{');
      const drip = setInterval(() => !h.destroyed && h.write(' '), 300);
      const [sshClosed, httpClosed] = await Promise.all([closedWithin(s, 15_000), closedWithin(h, 15_000)]);
      clearInterval(drip);
      expect(sshClosed).not.toBe('still open');
      expect(httpClosed).not.toBe('still open');
      const boot = await fetch(`http://127.0.0.1:${http}/v1/boot/ipxe?mac=52:54:00:12:00:01`);
      expect(boot.status).toBe(200);
      expect(await boot.text()).toMatch(/^#!ipxe/);
    } finally {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    }
  }, 180_000);
});
