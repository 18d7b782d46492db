/**
 * The service's config file, doctor and units as an admin meets them:
 * `strata config check` names the line and key of each mistake, flags beat
 * the file, every command finds data_dir in it, `strata doctor` says what to
 * install, and the units `strata install-service` writes pass
 * `systemd-analyze verify`.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDoctor, TOOLS } from '../cli/doctor.ts';
import { freePort } from '../server/cluster.ts';
import { ROOT, runStrata, STRATA } from './helpers/cli.ts';
import { tempDir } from './helpers/server-fixture.ts';

let tmp: ReturnType<typeof tempDir>;
beforeAll(() => {
  tmp = tempDir('strata-config-');
});
afterAll(() => tmp?.cleanup());

/** `strata config check` of TEXT: exit code and what it printed. */
function check(text: string) {
  const file = join(tmp.dir, `c${Math.random().toString(36).slice(2)}.toml`);
  writeFileSync(file, text);
  const r = spawnSync(STRATA, ['config', 'check', file], { encoding: 'utf8' });
  return { file, code: r.status, out: r.stdout + r.stderr };
}

const GOOD = ['data_dir = "/var/lib/strata"', '', '[http]', 'listen = "0.0.0.0:8080"', '', '[ssh]', 'listen = "[::]:2222"', ''];

describe('strata config check', () => {
  it('accepts the example file shipped in systemd/', () => {
    const r = check(readFileSync(join(ROOT, 'systemd/strata.toml'), 'utf8'));
    expect(r.out).toBe(`${r.file}: ok\n`);
    expect(r.code).toBe(0);
  });

  it('an unknown key fails with its line and name', () => {
    const r = check([...GOOD.slice(0, 4), 'lisen = "0.0.0.0:80"', ...GOOD.slice(4)].join('\n'));
    expect(r.code).toBe(2);
    expect(r.out).toContain(`${r.file}:5: http.lisen: unknown key`);
  });

  it('a wrong type fails with its line and name', () => {
    const r = check([...GOOD, '[http]'.replace('http', 'gc'), 'lease = true'].join('\n'));
    expect(r.code).toBe(2);
    expect(r.out).toContain(`${r.file}:10: gc.lease: must be a duration`);
    const w = check(['[http]', 'workers = "4"'].join('\n'));
    expect(w.out).toContain(`${w.file}:2: http.workers: must be a whole number`);
  });

  it('a bad address fails with its line and name', () => {
    const r = check(GOOD.join('\n').replace('[::]:2222', '300.1.2.3:22 22'));
    expect(r.code).toBe(2);
    expect(r.out).toContain(`${r.file}:7: ssh.listen: "300.1.2.3:22 22" is not a HOST:PORT address`);
    const port = check(GOOD.join('\n').replace('0.0.0.0:8080', '0.0.0.0:70000'));
    expect(port.out).toContain(`${port.file}:4: http.listen: "0.0.0.0:70000": port 70000 is out of range`);
  });

  it('a token is refused (secrets stay in the data directory) and broken TOML names its line', () => {
    const r = check(['token = "s3cret"'].join('\n'));
    expect(r.out).toContain(`${r.file}:1: token: secrets do not go in the config file`);
    const t = check(['[http]', 'listen = "0.0.0.0:8080', ''].join('\n'));
    expect(t.code).toBe(2);
    expect(t.out).toMatch(new RegExp(`${t.file}:2: .*not valid TOML`));
  });
});

describe('settings in force', () => {
  it('every command finds data_dir in the config file; --data beats it', async () => {
    const data = join(tmp.dir, 'from-config');
    const conf = join(tmp.dir, 'data.toml');
    writeFileSync(conf, `data_dir = "${data}"\n`);
    const env = { STRATA_CONFIG: conf, STRATA_DATA: '' };
    const init = spawnSync(STRATA, ['--json', 'init'], { encoding: 'utf8', env: { ...process.env, ...env } });
    expect(JSON.parse(init.stdout).dataDir).toBe(data);
    const other = join(tmp.dir, 'from-flag');
    const flag = await runStrata(['--json', 'init'], { data: other, env });
    expect(JSON.parse(flag.stdout).dataDir).toBe(other);
  });

  it('strata serve listens where the file says unless a flag says otherwise', async () => {
    const [fromFile, fromFlag, ssh] = [await freePort(), await freePort(), await freePort()];
    const conf = join(tmp.dir, 'serve.toml');
    writeFileSync(
      conf,
      `data_dir = "${join(tmp.dir, 'serve-data')}"\n[http]\nlisten = "127.0.0.1:${fromFile}"\n[ssh]\nlisten = "127.0.0.1:${ssh}"\n`,
    );
    const child = spawn(STRATA, ['--config', conf, 'serve', '--http', `127.0.0.1:${fromFlag}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d) => (log += d));
    try {
      const end = Date.now() + 60_000;
      while (!log.includes('HTTP on') && child.exitCode === null && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      expect(log).toContain(`HTTP on 127.0.0.1:${fromFlag}, SSH on 127.0.0.1:${ssh}`);
      expect(log).toContain(`settings from ${conf}`);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }, 90_000);
});

describe('strata doctor', () => {
  it('finds the tools on this machine with usable versions', () => {
    const r = spawnSync(STRATA, ['--json', 'doctor'], { encoding: 'utf8' });
    const report = JSON.parse(r.stdout) as { ok: boolean; tools: { name: string; status: string; version: string }[] };
    expect(report.tools.map((t) => t.name)).toEqual(['tar2sqfs', 'sqfs2tar', 'zstd', 'xorriso', 'dnsmasq']);
    for (const t of report.tools) expect(t, t.name).toMatchObject({ status: 'ok', version: expect.stringMatching(/^\d+\.\d+/) });
    expect(r.status).toBe(0);
  });

  it('names the Debian package of a missing tool, and a tool older than needed', async () => {
    const missing = await runDoctor([
      { ...TOOLS[0], name: 'tar2sqfs-not-installed-here' },
      { ...TOOLS[2], min: '99.0.0' },
    ]);
    expect(missing.ok).toBe(false);
    expect(missing.tools.map((t) => t.status)).toEqual(['missing', 'too old']);
    expect(missing.install).toBe('apt-get install --no-install-recommends squashfs-tools-ng zstd');
  });
});

describe('strata install-service', () => {
  it('writes units that pass systemd-analyze verify, pointing at this installation', () => {
    const root = join(tmp.dir, 'root');
    execFileSync(STRATA, ['install-service', '--root', root, '--pxe', 'eth7', '--no-start']);
    const unit = join(root, 'etc/systemd/system/strata.service');
    const text = readFileSync(unit, 'utf8');
    expect(text).toContain(`ExecStart=${STRATA} serve --config /etc/strata/strata.toml`);
    for (const line of [
      'User=strata',
      'StateDirectory=strata',
      'ProtectSystem=strict',
      'PrivateTmp=yes',
      'NoNewPrivileges=yes',
      'CapabilityBoundingSet=CAP_NET_BIND_SERVICE',
    ])
      expect(text).toContain(line);
    expect(readFileSync(join(root, 'etc/systemd/system/strata.service.d/pxe.conf'), 'utf8')).toContain('CAP_NET_RAW');
    // verify reads the drop-in beside the unit too; any warning (unknown key, bad value) fails the test.
    const v = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    expect(v.stderr).toBe('');
    expect(v.status).toBe(0);
    const conf = join(root, 'etc/strata/strata.toml');
    expect(readFileSync(conf, 'utf8')).toContain('[pxe]\ninterface = "eth7"');
    expect(spawnSync(STRATA, ['config', 'check', conf], { encoding: 'utf8' }).status).toBe(0);
  });
});
