/**
 * `strata install-service`: puts the units shipped in systemd/ in place with
 * ExecStart pointing at this installation, creates the `strata` system user,
 * /etc/strata/strata.toml (when absent) and /var/lib/strata, then enables and
 * starts the service. With --root DIR it only writes the files under DIR
 * (packaging, tests): no user, no chown, no systemctl.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StrataError } from '../store/errors.ts';

/** The package root: one directory up from both cli/ and the built dist/. */
const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));
const SHIPPED_BIN = '/usr/local/bin/strata';

export interface InstallOptions {
  root?: string;
  start?: boolean;
  pxe?: string;
}

/** The shipped unit with ExecStart naming BIN (this installation's bin/strata). */
export function renderUnit(text: string, bin: string): string {
  if (!text.includes(`ExecStart=${SHIPPED_BIN} `))
    throw new StrataError('E_INTERNAL', 'systemd/strata.service has no ExecStart line to fill in');
  return text.replace(`ExecStart=${SHIPPED_BIN} `, `ExecStart=${bin} `);
}

/** The shipped example config with the PXE interface filled in when given. */
export function renderConfig(text: string, pxe: string | undefined): string {
  return pxe ? text.replace('# [pxe]\n# interface = "eth1"', `[pxe]\ninterface = "${pxe}"`) : text;
}

function run(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

function userExists(name: string): boolean {
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** PID 1 is systemd (not a container without it). */
function systemdRunning(): boolean {
  return existsSync('/run/systemd/system');
}

export async function installService(o: InstallOptions): Promise<{ root: string; files: string[]; steps: string[] }> {
  const root = o.root ?? '/';
  const real = o.root === undefined;
  if (real && process.getuid?.() !== 0)
    throw new StrataError('E_BAD_ARGUMENT', 'install-service needs root (or --root DIR to only write the files)');
  const steps: string[] = [];
  const files: string[] = [];
  const write = (path: string, text: string, mode: number) => {
    const p = join(root, path);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, text, { mode });
    files.push(p);
    steps.push(`wrote ${p}`);
  };
  const bin = join(PACKAGE_ROOT, 'bin', 'strata');
  const shipped = (name: string) => readFileSync(join(PACKAGE_ROOT, 'systemd', name), 'utf8');

  write('etc/systemd/system/strata.service', renderUnit(shipped('strata.service'), bin), 0o644);
  if (o.pxe) write('etc/systemd/system/strata.service.d/pxe.conf', shipped('strata-pxe.conf'), 0o644);

  if (real && !userExists('strata')) {
    run('useradd', [
      '--system',
      '--user-group',
      '--home-dir',
      '/var/lib/strata',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      'strata',
    ]);
    steps.push('created the strata system user');
  }
  const conf = join(root, 'etc/strata/strata.toml');
  if (existsSync(conf)) steps.push(`kept ${conf} (check it with: strata config check ${conf})`);
  else write('etc/strata/strata.toml', renderConfig(shipped('strata.toml'), o.pxe), 0o640);

  const state = join(root, 'var/lib/strata');
  mkdirSync(state, { recursive: true, mode: 0o750 });
  if (real) {
    const uid = Number(execFileSync('id', ['-u', 'strata'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'strata'], { encoding: 'utf8' }).trim());
    chownSync(state, uid, gid);
    chownSync(conf, 0, gid);
    steps.push(`${state} belongs to strata`);
  }

  if (real && o.start !== false) {
    if (!systemdRunning()) steps.push('systemd is not running here: start the service with "systemctl enable --now strata" once it is');
    else {
      run('systemctl', ['daemon-reload']);
      run('systemctl', ['enable', '--now', 'strata.service']);
      steps.push('enabled and started strata.service (journalctl -u strata for its log)');
    }
  }
  steps.push(
    'run admin commands as the strata user (sudo -u strata strata log PROFILE): what root writes into the data directory the service cannot change',
  );
  return { root, files, steps };
}
