/**
 * Serving benchmark (issue 3), both ratios measured in the same run:
 *  - 50 concurrent clients each GET a 100 MB layer from strata's object route,
 *    then from nginx (Debian package, its own temp config, sendfile on) serving
 *    the very same file. Goal: strata/nginx throughput >= 0.8. Measured twice:
 *    strata in one process (the default) and with httpWorkers = 2 (node:cluster,
 *    server/cluster.ts); both are divided by the best nginx run. A third row:
 *    strata behind nginx as `strata nginx-conf` configures it (objects sent by
 *    nginx from the store, everything else proxied to strata).
 *  - A 200 MB push over SSH (OpenSSH client -> strata's ssh2 endpoint, until
 *    the push id is printed) against `scp` of the same file to a local sshd
 *    (temp config, host key and authorized_keys). Goal: >= 0.7.
 *
 *   node --import tsx bench/serve.ts
 *
 * The strata server runs in a child process, like `strata serve`, so the
 * load generator does not share its event loop. Prints; never fails on a
 * slow machine.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { freePort, waitPort } from '../test/helpers/ports.ts';
import { nginxMainConf } from '../test/helpers/nginx.ts';

const SELF = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLIENTS = 50;
const LAYER_BYTES = 100 * 1024 * 1024;
const PUSH_BYTES = 200 * 1024 * 1024;
const RUNS = 3;

export interface ServeBenchResult {
  httpStrataMBps: number;
  httpNginxMBps: number;
  httpRatio: number;
  /** The same load against `startServer({ httpWorkers: 2 })`. */
  httpStrata2MBps: number;
  httpRatio2: number;
  /** The same load through an nginx front made by renderNginxConf (cli/nginx-conf.ts). */
  httpFrontMBps: number;
  httpRatioFront: number;
  pushStrataMBps: number;
  pushScpMBps: number;
  pushRatio: number;
}

function stop(child: ChildProcess | null): Promise<void> {
  return new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}

/** 50 parallel GETs of the same URL; returns aggregate MB/s. */
async function loadHttp(url: string, expectBytes: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: false, maxSockets: CLIENTS });
  const t0 = process.hrtime.bigint();
  const sizes = await Promise.all(
    Array.from(
      { length: CLIENTS },
      () =>
        new Promise<number>((resolve, reject) => {
          http
            .get(url, { agent }, (res) => {
              if (res.statusCode !== 200) return reject(new Error(`${url}: HTTP ${res.statusCode}`));
              let n = 0;
              res.on('data', (c: Buffer) => (n += c.length));
              res.on('end', () => resolve(n));
              res.on('error', reject);
            })
            .on('error', reject);
        }),
    ),
  );
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  agent.destroy();
  for (const n of sizes) if (n !== expectBytes) throw new Error(`${url}: got ${n} bytes, want ${expectBytes}`);
  return (CLIENTS * expectBytes) / 1e6 / s;
}

function timeCommand(cmd: string, args: string[], input?: string): Promise<{ seconds: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    // The file itself is stdin, as with `ssh ... push < file`.
    const fd = input ? openSync(input, 'r') : 'ignore';
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: [fd, 'pipe', 'pipe'] });
    if (typeof fd === 'number') closeSync(fd);
    let out = '';
    let err = '';
    child.stdout!.on('data', (c) => (out += c));
    child.stderr!.on('data', (c) => (err += c));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (code !== 0) reject(new Error(`${cmd} exited ${code}: ${err.trim()}`));
      else resolve({ seconds, stdout: out });
    });
  });
}

const sshOpts = (port: number, key: string) => [
  '-i',
  key,
  '-P_OR_p',
  String(port),
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
];

async function startStrataChild(data: string, httpWorkers = 1): Promise<{ child: ChildProcess; http: number; ssh: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--child', data, String(httpWorkers)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
    // File reads go through libuv's pool (4 threads by default); 50 clients want more.
    env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (c) => reject(new Error(`strata server exited (${c})`)));
  });
  const p = JSON.parse(line) as { http: number; ssh: number };
  return { child, ...p };
}

async function childMain(data: string, httpWorkers: number): Promise<void> {
  const { startServer } = await import('../server/main.ts');
  const srv = await startServer({ dataDir: data, http: '127.0.0.1:0', ssh: '127.0.0.1:0', log: () => {}, httpWorkers });
  process.stdout.write(`${JSON.stringify({ http: srv.httpPort, ssh: srv.sshPort })}\n`);
}

export async function main(): Promise<ServeBenchResult | null> {
  for (const bin of ['/usr/sbin/nginx', '/usr/sbin/sshd']) {
    if (!existsSync(bin)) {
      console.log(`bench serve: ${bin} is missing; install nginx-light and openssh-server (scripts/setup.sh does)`);
      return null;
    }
  }
  const { Store } = await import('../store/store.ts');
  const work = await mkdtemp(join(tmpdir(), 'strata-bench-serve-'));
  const data = join(work, 'data');
  let strata: ChildProcess | null = null;
  let strata2: ChildProcess | null = null;
  let nginx: ChildProcess | null = null;
  let front: ChildProcess | null = null;
  let sshd: ChildProcess | null = null;
  try {
    // --- a store with a 100 MB blob (stored as the profile's kernel: any blob is served alike)
    const blobFile = join(work, 'layer.bin');
    writeFileSync(blobFile, randomBytes(LAYER_BYTES));
    execFileSync('tar', ['-C', work, '-cf', join(work, 'base.tar'), '--files-from', '/dev/null']);
    mkdirSync(join(work, 'root', 'etc'), { recursive: true });
    writeFileSync(join(work, 'root', 'etc', 'hostname'), 'bench\n');
    execFileSync('tar', ['-C', join(work, 'root'), '-cf', join(work, 'base.tar'), '.']);
    const store = await Store.open(data, { create: true });
    const commit = await store.importBase('bench', join(work, 'base.tar'), { kernel: blobFile });
    const digest = commit.manifest.kernel!.digest;
    const objectFile = store.objectPath(digest);
    const key = join(work, 'client_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const pub = readFileSync(`${key}.pub`, 'utf8').trim();
    store.addKey('bench', pub, { admin: true, profiles: [] });
    store.close();

    // --- servers (the two-worker strata starts later, after the single-process one stopped: one baker per data dir)
    const s = await startStrataChild(data);
    strata = s.child;
    const nginxPort = await freePort();
    const objectsRoot = objectFile.slice(0, objectFile.length - 65); // .../objects/sha256
    mkdirSync(join(work, 'nginx'), { recursive: true });
    writeFileSync(
      join(work, 'nginx', 'nginx.conf'),
      nginxMainConf(
        join(work, 'nginx'),
        `  server {
    listen 127.0.0.1:${nginxPort};
    location ~ "^/objects/sha256/([0-9a-f]{2})([0-9a-f]{62})$" {
      alias ${objectsRoot}/$1/$2;
      default_type application/octet-stream;
    }
  }`,
        { httpExtra: ['sendfile on;', 'tcp_nopush on;'] },
      ),
    );
    nginx = spawn('/usr/sbin/nginx', ['-c', join(work, 'nginx', 'nginx.conf'), '-p', join(work, 'nginx')], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    await waitPort(nginxPort);

    // --- strata behind nginx, configured by `strata nginx-conf` (objects from nginx, the rest proxied)
    const { renderNginxConf } = await import('../cli/nginx-conf.ts');
    const frontPort = await freePort();
    const fd = join(work, 'front');
    mkdirSync(fd, { recursive: true });
    writeFileSync(
      join(fd, 'nginx.conf'),
      nginxMainConf(fd, renderNginxConf({ dataDir: data, listen: `127.0.0.1:${frontPort}`, upstream: `127.0.0.1:${s.http}` })),
    );
    front = spawn('/usr/sbin/nginx', ['-c', join(fd, 'nginx.conf'), '-p', fd, '-e', join(fd, 'error.log')], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    await waitPort(frontPort);
    const script = await fetch(`http://127.0.0.1:${frontPort}/v1/boot/ipxe`);
    if (script.status !== 200 || !(await script.text()).startsWith('#!ipxe'))
      throw new Error(`the nginx front did not proxy /v1/boot/ipxe (HTTP ${script.status})`);

    const sshdPort = await freePort();
    mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege-separation directory
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, 'sshd_host_key')]);
    writeFileSync(join(work, 'authorized_keys'), `${pub}\n`, { mode: 0o600 });
    writeFileSync(
      join(work, 'sshd_config'),
      `
Port ${sshdPort}
ListenAddress 127.0.0.1
HostKey ${work}/sshd_host_key
AuthorizedKeysFile ${work}/authorized_keys
PidFile ${work}/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp /usr/lib/openssh/sftp-server
`,
    );
    sshd = spawn('/usr/sbin/sshd', ['-D', '-E', join(work, 'sshd.log'), '-f', join(work, 'sshd_config')], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    await waitPort(sshdPort);

    // --- HTTP: best of RUNS, alternating so both see the same page cache state
    let strataHttp = 0;
    let nginxHttp = 0;
    let frontHttp = 0;
    const path = `/objects/sha256/${digest}`;
    await loadHttp(`http://127.0.0.1:${nginxPort}${path}`, LAYER_BYTES); // warm the page cache
    for (let i = 0; i < RUNS; i++) {
      strataHttp = Math.max(strataHttp, await loadHttp(`http://127.0.0.1:${s.http}${path}`, LAYER_BYTES));
      nginxHttp = Math.max(nginxHttp, await loadHttp(`http://127.0.0.1:${nginxPort}${path}`, LAYER_BYTES));
      frontHttp = Math.max(frontHttp, await loadHttp(`http://127.0.0.1:${frontPort}${path}`, LAYER_BYTES));
    }
    await stop(front); // it proxies to the single-process strata, which stops next
    front = null;

    // --- SSH: a 200 MB zstd stream (not a tar: the bake rejects it at once and does not load the CPU)
    const pushFile = join(work, 'push.zst');
    execFileSync('sh', ['-c', `head -c ${PUSH_BYTES} /dev/urandom | zstd -q -1 -c > '${pushFile}'`]);
    const pushMB = Number(execFileSync('stat', ['-c', '%s', pushFile]).toString()) / 1e6;
    let strataPush = Infinity;
    let scpPush = Infinity;
    for (let i = 0; i < RUNS; i++) {
      const sshArgs = sshOpts(s.ssh, key).map((a) => (a === '-P_OR_p' ? '-p' : a));
      const r = await timeCommand('ssh', [...sshArgs, 'bench@127.0.0.1', `push bench --parent ${commit.id} -m bench`], pushFile);
      if (!/^p[0-9a-z]+$/.test(r.stdout.trim().split('\n').pop() ?? '')) throw new Error(`push answered ${r.stdout}`);
      strataPush = Math.min(strataPush, r.seconds);
      const scpArgs = sshOpts(sshdPort, key).map((a) => (a === '-P_OR_p' ? '-P' : a));
      const c = await timeCommand('scp', [...scpArgs, pushFile, `root@127.0.0.1:${work}/scp-dest-${i}`]);
      scpPush = Math.min(scpPush, c.seconds);
    }

    // --- HTTP again with two HTTP worker processes (the primary keeps SSH and the baker)
    await stop(strata);
    strata = null;
    const s2 = await startStrataChild(data, 2);
    strata2 = s2.child;
    let strata2Http = 0;
    for (let i = 0; i < RUNS; i++) {
      strata2Http = Math.max(strata2Http, await loadHttp(`http://127.0.0.1:${s2.http}${path}`, LAYER_BYTES));
      nginxHttp = Math.max(nginxHttp, await loadHttp(`http://127.0.0.1:${nginxPort}${path}`, LAYER_BYTES));
    }

    const result: ServeBenchResult = {
      httpStrataMBps: strataHttp,
      httpNginxMBps: nginxHttp,
      httpRatio: strataHttp / nginxHttp,
      httpStrata2MBps: strata2Http,
      httpRatio2: strata2Http / nginxHttp,
      httpFrontMBps: frontHttp,
      httpRatioFront: frontHttp / nginxHttp,
      pushStrataMBps: pushMB / strataPush,
      pushScpMBps: pushMB / scpPush,
      pushRatio: scpPush / strataPush,
    };
    const f = (n: number) => n.toFixed(0);
    console.log(
      `HTTP, ${CLIENTS} clients x ${LAYER_BYTES / 2 ** 20} MiB: strata ${f(result.httpStrataMBps)} MB/s, nginx ${f(result.httpNginxMBps)} MB/s, ratio ${result.httpRatio.toFixed(2)} (goal >= 0.8)`,
    );
    console.log(
      `HTTP, same load, strata --http-workers 2: ${f(result.httpStrata2MBps)} MB/s, ratio ${result.httpRatio2.toFixed(2)} (goal >= 0.8; ${os.availableParallelism()} cores shared with nginx and the load generator)`,
    );
    console.log(
      `HTTP, same load, strata behind nginx (objects from nginx, rest proxied; strata nginx-conf): ${f(result.httpFrontMBps)} MB/s, ratio ${result.httpRatioFront.toFixed(2)} (goal >= 0.8)`,
    );
    console.log(
      `SSH push of ${pushMB.toFixed(0)} MB: strata ${f(result.pushStrataMBps)} MB/s, scp to sshd ${f(result.pushScpMBps)} MB/s, ratio ${result.pushRatio.toFixed(2)} (goal >= 0.7)`,
    );
    return result;
  } finally {
    await Promise.all([stop(strata), stop(strata2), stop(nginx), stop(front), stop(sshd)]);
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(new URL(`file://${process.argv[1]}`)) === SELF) {
  if (process.argv[2] === '--child') await childMain(process.argv[3], Number(process.argv[4] ?? '1'));
  else await main();
}
