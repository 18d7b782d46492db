/**
 * Acceptance: a real overlay over a base exported from a real store; the
 * agent commits it and pushes to a real `strata serve` (startServer) on
 * loopback; the test waits for the commit, exports it, mounts the chain and
 * finds the tree equal to what the overlay showed. A second commit deletes
 * files the first one added (the agent must synthesize those whiteouts).
 * The no-Node `tar | zstd | ssh` push is tested the same way.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Mounts } from './helpers/mounts.ts';
import { hardlinkGroups, snapshotTree } from './helpers/tree-snapshot.ts';
import {
  makeChanges1,
  makeChanges2,
  mountOverlay,
  NEVER_COMMITTED,
  runAgent,
  skipNeverCommitted,
  viewOf,
  writeBaseTree,
  type TestOverlay,
} from './helpers/agent-overlay.ts';
import { makeKey, type KeyPair } from './helpers/server-ssh.ts';
import { waitForPushSettled } from './helpers/server-fixture.ts';
// A static import: a server that cannot be imported fails this file instead of skipping it.
import { startServer } from '../server/main.ts';

const execFileAsync = promisify(execFile);

let m: Mounts;
let srv: Awaited<ReturnType<typeof startServer>>;
let key: KeyPair;
let baseId: string;
let ov: TestOverlay;

beforeAll(async () => {
  m = new Mounts('strata-agent-e2e-');
  srv = await startServer({
    dataDir: m.dir('data'),
    http: '127.0.0.1:0',
    ssh: '127.0.0.1:0',
    handleSignals: false,
    log: () => {},
  });
  const tree = m.dir('base-tree');
  writeBaseTree(tree);
  const kernel = join(m.base, 'vmlinuz');
  const initrd = join(m.base, 'initrd');
  writeFileSync(kernel, 'kernel');
  writeFileSync(initrd, 'initrd');
  baseId = (await srv.store.importBase('lab', tree, { kernel, initrd, level: 3 })).id;
  key = makeKey(m.base, 'agent_key');
  srv.store.addKey('lab-client', key.publicLine, { admin: false, profiles: ['lab'] });
  const exported = m.dir('export-base');
  await srv.store.exportCommit(baseId, exported);
  ov = mountOverlay(m, layersOf(exported)[0]!);
}, 180_000);

afterAll(async () => {
  await srv?.close();
  m?.cleanup();
});

/** Layer files of an exported commit, top first. */
function layersOf(dir: string): string[] {
  const manifest = readFileSync(join(dir, 'manifest'), 'utf8');
  return [...manifest.matchAll(/^layer sha256:([0-9a-f]{64}) /gm)].map((x) => join(dir, x[1]!)).reverse();
}

function agentArgs(stateDir: string): string[] {
  return [
    '--server',
    '127.0.0.1',
    '--ssh-port',
    String(srv.sshPort),
    '--key',
    key.privateFile,
    '--upper',
    ov.upper,
    '--state-dir',
    stateDir,
    '--cmdline',
    '',
  ];
}

/**
 * Hardlinks as the upper dir holds them (the merged view reports overlay
 * inode numbers, not the upper inodes, for copied-up files).
 */
const EXPECTED_LINKS = [
  ['data/h1', 'data/h2'],
  ['var/lib/data/f', 'var/lib/data/f-link'],
];

function expectChainEquals(commit: string, merged: string, links = EXPECTED_LINKS) {
  const dir = m.dir();
  return srv.store.exportCommit(commit, dir).then(() => {
    const view = viewOf(m, layersOf(dir));
    expect(snapshotTree(view)).toEqual(snapshotTree(merged, { skip: skipNeverCommitted }));
    const groups = hardlinkGroups(view);
    for (const g of links) expect(groups).toContainEqual(g);
    for (const p of NEVER_COMMITTED) expect(existsSync(join(view, p)), p).toBe(false);
    return view;
  });
}

describe('strata-agent against a real strata server', () => {
  let stateDir: string;

  it('commit + send: the committed chain equals the overlay (creates, deletes, rmdir+mkdir, chmod, links, xattrs, fifos)', async () => {
    stateDir = m.dir('agent-state');
    makeChanges1(ov.merged);
    const c = await runAgent([
      ...agentArgs(stateDir),
      'commit',
      '-m',
      "first 'quoted' commit",
      '--profile',
      'lab',
      '--parent',
      baseId,
      '--no-send',
    ]);
    expect(c.stderr).not.toMatch(/Error/);
    expect(c.code).toBe(0);
    const spoolId = c.stdout.trim();
    expect(existsSync(join(stateDir, 'spool', `${spoolId}.tar.zst`))).toBe(true);

    const s = await runAgent([...agentArgs(stateDir), 'send', '--once', '--json']);
    expect(s.code, s.stderr).toBe(0);
    const sent = JSON.parse(s.stdout) as { sent: Array<{ pushId: string }> };
    expect(sent.sent).toHaveLength(1);
    const push = await waitForPushSettled(srv.store, sent.sent[0]!.pushId);
    expect(push.state, JSON.stringify(push)).toBe('committed');
    expect(push.branch).toBeNull();
    expect(srv.store.getCommit(push.commit!).message).toBe("first 'quoted' commit");
    expect(srv.store.getProfile('lab').head).toBe(push.commit);
    await expectChainEquals(push.commit!, ov.merged);

    const st = await runAgent([...agentArgs(stateDir), 'status', '--json']);
    const status = JSON.parse(st.stdout) as { pending: unknown[]; pushes: Array<{ status: string; commit: string }> };
    expect(status.pending).toHaveLength(0);
    expect(status.pushes[0]).toMatchObject({ status: 'committed', commit: push.commit });
  });

  it('a second commit stacks on the first and deletes what the first added', async () => {
    makeChanges2(ov.merged);
    const d = await runAgent([...agentArgs(stateDir), 'diff', '--json', '--parent', baseId]);
    const diff = JSON.parse(d.stdout) as { deleted: string[]; added: string[] };
    expect(diff.deleted).toEqual(expect.arrayContaining(['etc/new.conf', 'data/h2', 'srv/empty', 'etc/remove-me', 'opt/old']));
    expect(diff.added).toContain('etc/second');

    const first = srv.store.getProfile('lab').head;
    const c = await runAgent([...agentArgs(stateDir), 'commit', '-m', 'second', '--profile', 'lab', '--parent', baseId, '--no-send']);
    expect(c.code, c.stderr).toBe(0);
    const s = await runAgent([...agentArgs(stateDir), 'send', '--once', '--json']);
    const sent = JSON.parse(s.stdout) as { sent: Array<{ pushId: string; parent: string }> };
    expect(sent.sent).toHaveLength(1);
    const push = await waitForPushSettled(srv.store, sent.sent[0]!.pushId);
    expect(push.state).toBe('committed');
    expect(sent.sent[0]!.parent).toBe(first);
    expect(srv.store.getCommit(push.commit!).parent).toBe(first);
    const view = await expectChainEquals(push.commit!, ov.merged, [['var/lib/data/f', 'var/lib/data/f-link']]);
    expect(existsSync(join(view, 'etc/new.conf'))).toBe(false);
  });

  it('the no-Node one-liner `tar | zstd | ssh ... push` is a valid client', async () => {
    const commitFile = join(m.base, 'run-strata-commit');
    writeFileSync(commitFile, `${baseId}\n`);
    mkdirSync(join(ov.merged, 'etc/oneliner'), { recursive: true });
    writeFileSync(join(ov.merged, 'etc/oneliner/x'), 'x\n');
    const sshOpts = `-i '${key.privateFile}' -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR`;
    // The documented line (docs/agent.md), with the test's paths and ssh options.
    const line = `tar --xattrs --xattrs-include='*' -C '${ov.upper}' -cf - . | zstd | ssh ${sshOpts} -p ${srv.sshPort} strata@127.0.0.1 push lab --parent $(cat '${commitFile}') -m "'one liner'"`;
    // Asynchronously: the server runs in this process and must keep answering.
    const { stdout: out } = await execFileAsync('sh', ['-c', line], { encoding: 'utf8', timeout: 90_000 });
    const id = out.trim().split('\n').pop()!;
    const push = await waitForPushSettled(srv.store, id);
    // Pushed with the booted commit as parent while the head moved on: the
    // server stacks it or branches it; either way the layer over the base
    // must show exactly the overlay.
    expect(push.state).toBe('committed');
    const layerDir = m.dir();
    await srv.store.exportCommit(push.commit!, layerDir);
    const manifest = readFileSync(join(layerDir, 'manifest'), 'utf8');
    const top = [...manifest.matchAll(/^layer sha256:([0-9a-f]{64}) /gm)].map((x) => x[1]!).pop()!;
    const baseLayer = layersOf(join(m.base, 'export-base'))[0]!;
    const view = viewOf(m, [join(layerDir, top), baseLayer]);
    // GNU tar does not exclude anything: compare everything.
    expect(snapshotTree(view)).toEqual(snapshotTree(ov.merged));
    expect(srv.store.getCommit(push.commit!).message).toBe('one liner');
  });
});
