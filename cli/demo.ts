/**
 * `npm start`: a strata server with a demo profile in ./strata-data. On the
 * first run it makes the data directory, a busybox base (plus the Debian
 * kernel and a strata initramfs when the machine has a kernel), assigns it as
 * the default profile and creates an admin token; every run then serves HTTP
 * on 127.0.0.1:8080 and SSH on 127.0.0.1:2222 and prints how to use them.
 */
import { existsSync, promises as fsp, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { Store } from '../store/store.ts';
import { makeBusyboxRoot } from './demo-base.ts';
import { demoHints } from './demo-hints.ts';

export function newestKernel(): { version: string; vmlinuz: string } | null {
  if (!existsSync('/boot')) return null;
  const versions = readdirSync('/boot')
    .filter((f) => f.startsWith('vmlinuz-'))
    .map((f) => f.slice('vmlinuz-'.length))
    .filter((v) => existsSync(`/lib/modules/${v}`))
    .sort();
  const v = versions[versions.length - 1];
  return v ? { version: v, vmlinuz: `/boot/vmlinuz-${v}` } : null;
}

export async function createDemo(dataDir: string): Promise<{ token: string; kernel: boolean }> {
  const store = await Store.open(dataDir, { create: true });
  const work = await fsp.mkdtemp(join(tmpdir(), 'strata-demo-'));
  try {
    const root = join(work, 'root');
    await makeBusyboxRoot(root);
    let kernel: string | undefined;
    let initrd: string | undefined;
    const k = newestKernel();
    if (k) {
      try {
        const { buildInitrd } = await import('./initrd-build.ts');
        initrd = join(work, 'initrd.img');
        await buildInitrd({ output: initrd, kernelVersion: k.version });
        kernel = k.vmlinuz;
      } catch (e) {
        process.stderr.write(`strata: no initramfs for the demo (${(e as Error).message}); the demo profile has no kernel\n`);
        initrd = undefined;
      }
    }
    // Level 3: the demo should start in seconds, not minutes.
    await store.importBase('demo', root, { kernel, initrd, message: 'busybox demo base', compressor: 'zstd', level: 3 });
    store.setCmdline('demo', 'console=ttyS0');
    store.assign('default', 'demo');
    const { token } = store.createToken('demo-admin');
    await fsp.writeFile(join(store.dataDir, 'demo-token'), `${token}\n`, { mode: 0o600 });
    return { token, kernel: !!kernel };
  } finally {
    store.close();
    await fsp.rm(work, { recursive: true, force: true });
  }
}

export async function runDemo(opts: { dataDir: string; http?: string; ssh?: string }): Promise<void> {
  const dataDir = resolve(opts.dataDir);
  if (!existsSync(join(dataDir, 'strata.db'))) {
    process.stdout.write(`strata: creating ${dataDir} with a demo profile...\n`);
    await createDemo(dataDir);
  }
  const token = existsSync(join(dataDir, 'demo-token'))
    ? (await fsp.readFile(join(dataDir, 'demo-token'), 'utf8')).trim()
    : '(see strata token create)';
  const http = opts.http ?? '127.0.0.1:8080';
  const ssh = opts.ssh ?? '127.0.0.1:2222';
  const { startServer } = await import('../server/main.ts');
  const running = await startServer({ dataDir, http, ssh });
  const hport = running.httpPort;
  const sport = running.sshPort;
  const hostPart = http.replace(/:\d+$/, '');
  process.stdout.write(demoHints({ dataDir, hostPart, httpPort: hport, sshPort: sport, token }));
}
