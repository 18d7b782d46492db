/**
 * The client kit's agent (client-agent/kit/, assembled by store/client-kit.ts)
 * on this host, against a real overlay and a real `strata serve` on
 * loopback: it runs only from the kit (its busybox, and GNU tar, zstd,
 * OpenSSH through the kit's own loader), makes its own key, and its
 * commits from one boot are incremental: the second layer carries only the
 * second change set, nothing is committed when nothing changed, and
 * reverting the first commit keeps the second change.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assembleClientKit } from '../store/client-kit.ts';
import { findBusybox } from '../cli/initrd-build.ts';
import {
  makeChanges1,
  makeChanges2,
  mountOverlay,
  NEVER_COMMITTED,
  skipNeverCommitted,
  viewOf,
  writeBaseTree,
} from './helpers/agent-overlay.ts';
import { Mounts } from './helpers/mounts.ts';
import { snapshotTree } from './helpers/tree-snapshot.ts';
import { runStrata, strataJson } from './helpers/cli.ts';
import { ipInCidr } from '../store/enrollment.ts';

type ServerModule = typeof import('../server/main.ts');
const serverMod: ServerModule = await import('../server/main.ts');

let m: Mounts;
let srv: Awaited<ReturnType<ServerModule['startServer']>>;
let kit: string;
let run: string;
let ov: ReturnType<typeof mountOverlay>;
let baseId: string;
let baseLayer: string;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the kit's agent the way a client does, with this test's paths instead
 * of /run/strata. Killed after timeoutMs (under vitest's 120 s, so a hang
 * fails with the agent's own words): its stderr then ends with the
 * background sender's log.
 */
function agent(args: string[], timeoutMs = 100_000): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(kit, 'bin/busybox'), ['sh', join(kit, 'bin/strata-agent'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        // An image with nothing on PATH: the kit must bring everything.
        PATH: '/nonexistent',
        STRATA_AGENT_RUN: run,
        STRATA_AGENT_UPPER: ov.upper,
        STRATA_AGENT_CMDLINE: join(run, 'cmdline'),
        STRATA_AGENT_SSH_HOST: '127.0.0.1',
        STRATA_AGENT_BOOT_ID: 'test-boot-1',
        STRATA_AGENT_RETRY_MAX: '2',
        HOME: run,
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => (stdout += b));
    child.stderr.on('data', (b) => (stderr += b));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === null) stderr += `\n[killed after ${timeoutMs} ms; send.log:]\n${senderLog()}`;
      resolve({ code, stdout, stderr });
    });
  });
}

const senderLog = () => {
  try {
    return readFileSync(join(run, 'agent/send.log'), 'utf8').slice(-3000);
  } catch {
    return '(none)';
  }
};

async function until<T>(probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 300));
  }
}

function layersOf(dir: string): string[] {
  const manifest = readFileSync(join(dir, 'manifest'), 'utf8');
  return [...manifest.matchAll(/^layer sha256:([0-9a-f]{64}) /gm)].map((x) => join(dir, x[1]!)).reverse();
}

async function viewOfCommit(commit: string): Promise<string> {
  const dir = m.dir();
  await srv.store.exportCommit(commit, dir);
  return viewOf(m, layersOf(dir));
}

/** Paths of the layer a commit added on top of its parent, directories left out (a change brings its parents' metadata along). */
function topLayerPaths(commit: string): string[] {
  const layers = srv.store.getCommit(commit).manifest.layers;
  return srv.store
    .layerEntries(layers.at(-1)!.digest)
    .filter((e) => e.type !== 'dir')
    .map((e) => `${e.type === 'char' && e.devmajor === 0 && e.devminor === 0 ? 'whiteout ' : ''}${e.path}`)
    .sort();
}

beforeAll(async () => {
  m = new Mounts('strata-kit-agent-');
  srv = await serverMod.startServer({
    dataDir: m.dir('data'),
    http: '127.0.0.1:0',
    ssh: '127.0.0.1:0',
    handleSignals: false,
    log: () => {},
  });
  const tree = m.dir('base-tree');
  writeBaseTree(tree);
  writeFileSync(join(m.base, 'vmlinuz'), 'kernel');
  writeFileSync(join(m.base, 'initrd'), 'initrd');
  baseId = (await srv.store.importBase('lab', tree, { kernel: join(m.base, 'vmlinuz'), initrd: join(m.base, 'initrd'), level: 3 })).id;
  const exported = m.dir('export-base');
  await srv.store.exportCommit(baseId, exported);
  baseLayer = layersOf(exported)[0]!;
  ov = mountOverlay(m, baseLayer);
  kit = m.dir('kit');
  await assembleClientKit(kit, { busybox: await findBusybox() });
  run = m.dir('run');
  writeFileSync(join(run, 'commit'), `${baseId}\n`);
  writeFileSync(join(run, 'cmdline'), `console=ttyS0 strata.server=http://127.0.0.1:1 strata.profile=lab strata.ssh=${srv.sshPort}\n`);
}, 180_000);

afterAll(async () => {
  await srv?.close();
  m?.cleanup();
});

describe('the kit agent commits from a booted overlay with nothing but the kit', () => {
  let first: string;

  it('makes its own key, is held as pending until `strata keys approve`, then its commit --wait lands', async () => {
    makeChanges1(ov.merged);
    const before = srv.store.getProfile('lab').head;
    const waiting = agent(['commit', '-m', "first 'quoted' commit", '--wait']);
    const pending = await until(async () => {
      const list = await strataJson<Array<{ id: string; fingerprint: string; heldPushes: number; ip: string }>>(['keys', 'pending'], {
        data: srv.store.dataDir,
      });
      return list.find((k) => k.heldPushes === 1);
    });
    expect(pending.ip).toBe('127.0.0.1');
    const k = await agent(['key']);
    expect(k.stdout).toMatch(/^ssh-ed25519 AAAA\S+ strata-agent@/);
    // Held, never baked, while pending.
    await new Promise((r) => setTimeout(r, 1500));
    expect(srv.store.getProfile('lab').head).toBe(before);
    const st = await agent(['status']);
    expect(st.stdout).toContain('enrolled: no (waiting for approval');
    const a = await runStrata(['keys', 'approve', pending.id, '--profile', 'lab'], { data: srv.store.dataDir });
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toMatch(/1 held push\(es\) queued/);
    const c = await waiting;
    expect(c.code, c.stderr).toBe(0);
    first = c.stdout.trim();
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    expect(srv.store.getProfile('lab').head).toBe(first);
    expect(srv.store.getCommit(first).message).toBe("first 'quoted' commit");
    const view = await viewOfCommit(first);
    expect(snapshotTree(view)).toEqual(snapshotTree(ov.merged, { skip: skipNeverCommitted }));
    for (const p of NEVER_COMMITTED) expect(existsSync(join(view, p)), p).toBe(false);
  });

  it('nothing changed: nothing to commit (exit 3)', async () => {
    const c = await agent(['commit', '-m', 'empty', '--wait', '--timeout', '60']);
    expect(c.code, c.stderr).toBe(3);
    expect(srv.store.getProfile('lab').head).toBe(first);
  });

  it('a second commit of the same boot carries only the second change, with whiteouts for what the first added', async () => {
    makeChanges2(ov.merged);
    const d = await agent(['diff']);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toMatch(/^D +etc\/new\.conf$/m);
    const c = await agent(['commit', '-m', 'second', '--wait']);
    expect(c.code, c.stderr).toBe(0);
    const second = c.stdout.trim();
    expect(srv.store.getCommit(second).parent).toBe(first);
    expect(topLayerPaths(second)).toEqual([
      'etc/conf.d/c',
      'etc/second',
      'whiteout data/h2',
      'whiteout etc/new.conf',
      'whiteout srv/empty',
      'whiteout var/big.bin',
    ]);
    const view = await viewOfCommit(second);
    expect(snapshotTree(view)).toEqual(snapshotTree(ov.merged, { skip: skipNeverCommitted }));
  });

  it('reverting the first commit on the server keeps the second change', async () => {
    const r = await srv.store.revert('lab', first);
    const view = await viewOfCommit(r.commit.id);
    expect(readFileSync(join(view, 'etc/second'), 'utf8')).toBe('second\n');
    expect(readFileSync(join(view, 'etc/hostname'), 'utf8')).toBe('base\n');
  });

  it('status shows the booted commit, the profile head, enrolment and no pending pushes', async () => {
    const s = await agent(['status']);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout).toContain(`booted commit: ${baseId}`);
    expect(s.stdout).toContain(`profile head: ${srv.store.getProfile('lab').head}`);
    expect(s.stdout).toContain('enrolled: yes');
    expect(s.stdout).toContain('pending pushes: 0');
  });

  it('a rejected key never lands: its held push is deleted', async () => {
    // Another machine: its own state dir, so its own key.
    const other = m.dir('run-other');
    writeFileSync(join(other, 'commit'), `${baseId}\n`);
    writeFileSync(join(other, 'cmdline'), readFileSync(join(run, 'cmdline')));
    writeFileSync(join(ov.merged, 'etc/from-stranger'), 'x\n');
    const savedRun = run;
    run = other;
    try {
      const c = await agent(['commit', '-m', 'stranger', '--no-send']);
      expect(c.code, c.stderr).toBe(0);
      // Stored and held: one attempt says so and stops.
      const s = await agent(['send', '--once']);
      expect(s.code, s.stderr).toBe(1);
      expect(s.stderr).toMatch(/pending key k[0-9a-f]{10} .* awaits approval/);
    } catch (e) {
      run = savedRun;
      throw e;
    }
    run = savedRun;
    const list = await strataJson<Array<{ id: string; heldPushes: number }>>(['keys', 'pending'], { data: srv.store.dataDir });
    const k = list.find((x) => x.heldPushes === 1)!;
    expect(k).toBeDefined();
    const before = srv.store.getProfile('lab').head;
    const r = await runStrata(['keys', 'reject', k.id], { data: srv.store.dataDir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/deleted 1 held push/);
    expect(readdirSync(srv.store.incomingDir).filter((f) => f.startsWith('held-'))).toEqual([]);
    expect(await strataJson<unknown[]>(['keys', 'pending'], { data: srv.store.dataDir })).toEqual([]);
    expect(srv.store.getProfile('lab').head).toBe(before);
  });

  it('a profile with --enroll-cidr approves keys from inside it at once; the agent lands without an admin', async () => {
    const bad = await runStrata(['profile', 'lab', '--enroll-cidr', '10.0.0.0/33'], { data: srv.store.dataDir });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/not an IPv4 CIDR/);
    const set = await runStrata(['profile', 'lab', '--enroll-cidr', '127.0.0.0/8'], { data: srv.store.dataDir });
    expect(set.code, set.stderr).toBe(0);
    const lab = m.dir('run-lab');
    writeFileSync(join(lab, 'commit'), `${srv.store.getProfile('lab').head}\n`);
    writeFileSync(join(lab, 'cmdline'), readFileSync(join(run, 'cmdline')));
    writeFileSync(join(ov.merged, 'etc/from-lab'), 'lab\n');
    const savedRun = run;
    run = lab;
    const c = await agent(['commit', '-m', 'from the lab', '--wait']).finally(() => {
      run = savedRun;
    });
    expect(c.code, c.stderr).toBe(0);
    expect(srv.store.getProfile('lab').head).toBe(c.stdout.trim());
    expect(srv.store.listKeys().some((k) => k.name.startsWith('client-k'))).toBe(true);
  });
});

describe('watch', () => {
  it('commits by itself after the upper directory has been quiet, and the push lands', async () => {
    const doneDir = join(run, 'agent/done');
    const before = new Set(readdirSync(doneDir));
    writeFileSync(join(ov.merged, 'etc/watched'), 'w\n');
    const child = spawn(join(kit, 'bin/busybox'), ['sh', join(kit, 'bin/strata-agent'), 'watch', '--quiet', '2'], {
      stdio: 'ignore',
      env: {
        PATH: '/nonexistent',
        STRATA_AGENT_RUN: run,
        STRATA_AGENT_UPPER: ov.upper,
        STRATA_AGENT_CMDLINE: join(run, 'cmdline'),
        STRATA_AGENT_SSH_HOST: '127.0.0.1',
        STRATA_AGENT_BOOT_ID: 'test-boot-1',
        HOME: run,
      },
    });
    try {
      const file = await until(async () => readdirSync(doneDir).find((f) => !before.has(f)), 90_000);
      const commit = readFileSync(join(doneDir, file), 'utf8').trim();
      expect(srv.store.getCommit(commit).message).toMatch(/^auto: changes at /);
      // The other "machines" above wrote into this same overlay: changes this one has not committed yet.
      expect(topLayerPaths(commit)).toEqual(['etc/from-lab', 'etc/from-stranger', 'etc/watched']);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('an unreachable server', () => {
  it('commit --wait --timeout gives up with exit 1 and keeps the push spooled for the sender', async () => {
    const away = m.dir('run-away');
    writeFileSync(join(away, 'commit'), `${baseId}\n`);
    writeFileSync(join(away, 'cmdline'), 'strata.server=http://127.0.0.1:1 strata.profile=lab strata.ssh=1\n');
    const savedRun = run;
    run = away;
    const c = await agent(['commit', '-m', 'nobody listens', '--wait', '--timeout', '3']).finally(() => {
      run = savedRun;
    });
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(/not committed after 3s; it stays spooled/);
    expect(readdirSync(join(away, 'agent/spool')).filter((f) => f.endsWith('.tar.zst'))).toHaveLength(1);
  });
});

describe('enroll CIDR matching', () => {
  it('matches IPv4 and IPv4-mapped addresses inside the prefix only', () => {
    expect(ipInCidr('10.0.0.7', '10.0.0.0/24')).toBe(true);
    expect(ipInCidr('::ffff:10.0.0.7', '10.0.0.0/24')).toBe(true);
    expect(ipInCidr('10.0.1.7', '10.0.0.0/24')).toBe(false);
    expect(ipInCidr('fe80::1', '10.0.0.0/24')).toBe(false);
    expect(ipInCidr('192.168.5.5', '0.0.0.0/0')).toBe(true);
    expect(() => ipInCidr('10.0.0.1', '10.0.0.0')).toThrow(/not an IPv4 CIDR/);
  });
});
