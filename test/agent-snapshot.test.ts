/**
 * Snapshot fidelity without the server's push policy in the way: device
 * nodes included. The agent pushes to the small ssh2 endpoint; the test bakes
 * what arrived with tar2sqfs -s (strict) and mounts it over the base.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Mounts } from './helpers/mounts.ts';
import { snapshotTree } from './helpers/tree-snapshot.ts';
import {
  bakeArchive,
  makeChanges1,
  makeSquashfs,
  mountOverlay,
  NEVER_COMMITTED,
  runAgent,
  skipNeverCommitted,
  viewOf,
  writeBaseTree,
  type TestOverlay,
} from './helpers/agent-overlay.ts';
import { startFakePushServer, type FakePushServer } from './helpers/fake-push-server.ts';

let m: Mounts;
let ov: TestOverlay;
let srv: FakePushServer;
let baseSqfs: string;

beforeAll(async () => {
  m = new Mounts('strata-agent-snap-');
  const tree = m.dir('tree');
  writeBaseTree(tree);
  baseSqfs = join(m.base, 'base.sqfs');
  makeSquashfs(tree, baseSqfs);
  ov = mountOverlay(m, baseSqfs);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(m.base, 'agent_key')]);
  srv = await startFakePushServer({ dir: m.dir('recv'), authorizedKey: readFileSync(join(m.base, 'agent_key.pub'), 'utf8') });
}, 180_000);

afterAll(async () => {
  await srv?.close();
  m?.cleanup();
});

describe('snapshot fidelity', () => {
  it('the pushed tar, baked over the base, shows exactly the overlay (device nodes too)', async () => {
    makeChanges1(ov.merged, { devices: true });
    const args = [
      '--server',
      '127.0.0.1',
      '--ssh-port',
      String(srv.port),
      '--key',
      join(m.base, 'agent_key'),
      '--upper',
      ov.upper,
      '--state-dir',
      m.dir('state'),
      '--cmdline',
      '',
    ];
    const c = await runAgent([...args, 'commit', '-m', 'with devices', '--profile', 'lab', '--parent', 'd'.repeat(64), '--no-send']);
    expect(c.code, c.stderr).toBe(0);
    const s = await runAgent([...args, 'send', '--once']);
    expect(s.code, s.stderr).toBe(0);
    expect(srv.pushes).toHaveLength(1);
    const layer = join(m.base, 'layer.sqfs');
    bakeArchive(srv.pushes[0]!.file, layer);
    const view = viewOf(m, [layer, baseSqfs]);
    expect(snapshotTree(view)).toEqual(snapshotTree(ov.merged, { skip: skipNeverCommitted }));
    expect(snapshotTree(view)['dev2/null']).toMatchObject({ type: 'char', rdev: (1 << 8) | 3 });
    for (const p of NEVER_COMMITTED) expect(existsSync(join(view, p)), p).toBe(false);
  });
});
