/**
 * `strata serve` the way the systemd unit runs it: as an unprivileged user
 * (no capabilities, no new privileges) against a data directory it owns, its
 * settings from a config file. A real OpenSSH push is baked and committed, a
 * client gets its boot script, and SIGHUP (`systemctl reload`) re-reads the
 * limits or, for a broken file, keeps the running ones.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readdirSync, lstatSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../server/cluster.ts';
import { STRATA } from './helpers/cli.ts';
import { tempDir, writeTar } from './helpers/server-fixture.ts';
import { lastLine, makeKey, opensshExec, zstdTar, type KeyPair } from './helpers/server-ssh.ts';

/** A uid/gid no account uses: the service's `strata` user without touching /etc/passwd. */
const UID = 64_123;

let tmp: ReturnType<typeof tempDir>;
let data: string;
let conf: string;
let key: KeyPair;
let httpPort: number;
let sshPort: number;
let server: ChildProcess;
let serverLog = '';

/** Runs strata as the unprivileged user, the way the unit's hardening leaves it. */
function asUser(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawnAsUser(args);
    let stdout = '';
    let stderr = '';
    p.stdout?.on('data', (d) => (stdout += d));
    p.stderr?.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function spawnAsUser(args: string[]): ChildProcess {
  const priv = [
    '--reuid',
    String(UID),
    '--regid',
    String(UID),
    '--clear-groups',
    '--no-new-privs',
    '--inh-caps=-all',
    '--bounding-set=-all',
  ];
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: data, STRATA_CONFIG: conf };
  return spawn('setpriv', [...priv, STRATA, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
}

function writeConfig(extra = ''): void {
  writeFileSync(
    conf,
    `data_dir = "${data}"\n\n[http]\nlisten = "127.0.0.1:${httpPort}"\n\n[ssh]\nlisten = "127.0.0.1:${sshPort}"\n${extra}`,
  );
}

async function waitFor(what: () => boolean, label: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${label}; server log:\n${serverLog}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  tmp = tempDir('strata-unpriv-');
  chmodSync(tmp.dir, 0o755);
  data = join(tmp.dir, 'data');
  mkdirSync(data);
  chownSync(data, UID, UID);
  conf = join(tmp.dir, 'strata.toml');
  [httpPort, sshPort] = [await freePort(), await freePort()];
  writeConfig();
  const base = await writeTar(tmp.dir, 'base.tar', { 'etc/hostname': 'lab\n' });
  const kernel = join(tmp.dir, 'vmlinuz');
  writeFileSync(kernel, 'not really a kernel');
  key = makeKey(tmp.dir, 'lab');
  for (const f of [base, kernel, `${key.privateFile}.pub`]) chmodSync(f, 0o644);
  for (const args of [
    ['import', 'lab', base, '--kernel', kernel, '--level', '3'],
    ['keys', 'add', 'lab-client', `${key.privateFile}.pub`, '--profile', 'lab'],
    ['assign', 'default', 'lab'],
  ]) {
    const r = await asUser(args);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  }
  server = spawnAsUser(['serve']);
  server.stderr?.on('data', (d) => (serverLog += d));
  await waitFor(() => /HTTP on .*SSH on/.test(serverLog), 'the server to listen');
}, 180_000);

afterAll(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
  tmp?.cleanup();
});

describe('strata serve as an unprivileged user', () => {
  it('listens where the config file says, takes a push over SSH and answers a boot script', async () => {
    expect(serverLog).toContain(`HTTP on 127.0.0.1:${httpPort}, SSH on 127.0.0.1:${sshPort}, data in ${data}`);
    const head = JSON.parse((await asUser(['--json', 'log', 'lab', '-n', '1'])).stdout)[0].id as string;
    const archive = zstdTar(tmp.dir, { 'etc/motd': 'pushed as nobody\n' });
    const r = await opensshExec(sshPort, key.privateFile, `push lab --parent ${head} -m unprivileged`, archive);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const id = lastLine(r.stdout);
    let status = '';
    const deadline = Date.now() + 120_000;
    while (!status.startsWith('committed') && Date.now() < deadline) {
      status = (await opensshExec(sshPort, key.privateFile, `status ${id}`)).stdout;
      if (!status.startsWith('committed')) await new Promise((res) => setTimeout(res, 500));
    }
    expect(status).toMatch(/^committed [0-9a-f]{64}\n$/);
    const commit = status.split(' ')[1].trim();

    const boot = await fetch(`http://127.0.0.1:${httpPort}/v1/boot/ipxe?mac=52:54:00:12:34:56`);
    expect(boot.status).toBe(200);
    const text = await boot.text();
    expect(text).toMatch(/^#!ipxe\n/);
    expect(text).toContain(`kernel http://127.0.0.1:${httpPort}/`);
    expect(text).toContain(commit.slice(0, 12));

    // Everything the service wrote belongs to it: nothing needed root.
    const owners = new Set<number>();
    const walk = (dir: string) => {
      for (const e of readdirSync(dir)) {
        const st = lstatSync(join(dir, e));
        owners.add(st.uid);
        if (st.isDirectory()) walk(join(dir, e));
      }
    };
    walk(data);
    expect([...owners]).toEqual([UID]);
  }, 300_000);

  it('SIGHUP (systemctl reload) applies new limits; a broken file is reported and the running settings stay', async () => {
    writeConfig('\n[limits]\nmax_push_size = "1KiB"\n');
    server.kill('SIGHUP');
    await waitFor(() => serverLog.includes('in force: maxPushBytes=1024'), 'the reload');
    const head = JSON.parse((await asUser(['--json', 'log', 'lab', '-n', '1'])).stdout)[0].id as string;
    const big = zstdTar(tmp.dir, { 'opt/random': Buffer.from(Array.from({ length: 64 * 1024 }, () => Math.floor(Math.random() * 256))) });
    const refused = await opensshExec(sshPort, key.privateFile, `push lab --parent ${head} -m too-big`, big);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/1024|too large|limit/i);

    writeConfig('\n[limits]\nmax_push_size = "lots"\n');
    server.kill('SIGHUP');
    await waitFor(() => serverLog.includes('kept the running settings'), 'the refused reload');
    expect(serverLog).toMatch(/strata\.toml:\d+: limits\.max_push_size: must be a size/);
    expect(server.exitCode).toBe(null);
    const health = await fetch(`http://127.0.0.1:${httpPort}/v1/boot/ipxe?mac=52:54:00:12:34:57`);
    expect(health.status).toBe(200);
  }, 120_000);
});
