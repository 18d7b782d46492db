/**
 * A base's life from a recipe (issue 15), for real: `strata build` runs
 * mmdebstrap against the configured Debian mirror with the shared apt cache
 * under the data directory, and the result boots in QEMU (TCG) from the real
 * fastify app on loopback, with an access log of every request.
 *
 *   1. The recipe (bookworm minbase + less + procps, a cloud kernel, a proof
 *      script as a recipe file) builds a new profile `lab` from a cold cache.
 *   2. `strata branch dev lab` and two developer layers on dev; a PXE boot of
 *      dev with a blank backup disk runs the recipe's kernel and sees both
 *      packages and both layers, and leaves the chain on the disk.
 *   3. `strata build lab --every 24h` saves a schedule; once due, the same
 *      recipe runs again: no .deb downloaded (apt's own counters and the
 *      cache's file count), no commit.
 *   4. The recipe plus `tree`: lab's new base is the old base's chain plus
 *      one delta layer; `strata rebase dev --onto lab` reuses both developer
 *      layers (same digests) in one ref move.
 *   5. The next boot of dev with the now warm disk downloads only the delta
 *      layer (the access log) and sees tree and both layers.
 *   6. A rebase whose layer touches a path the delta changed is refused with
 *      the path listed, and changes nothing.
 *
 * Bad recipes are in recipe-build-failures.test.ts, so the two files share
 * the two test workers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '../protocol/errors.ts';
import { buildServer } from '../server/build-server.ts';
import { type Build, Store } from '../store/store.ts';
import { runStrata } from './helpers/cli.ts';
import { OLD_KERNEL } from './helpers/debian-tree.ts';
import { readDiskImage } from './helpers/mounts.ts';
import { proofs, type QemuResult, runQemu, strataLines, writeIpxeChain } from './helpers/qemu.ts';
import { makeTar } from './helpers/tars.ts';

const recipe = (packages: string[]) => `# bookworm minbase and a few packages, with the kernel that boots it
suite = "bookworm"
variant = "minbase"
packages = ${JSON.stringify(packages)}
kernel = "linux-image-${OLD_KERNEL}"

[[files]]
path = "/usr/local/sbin/strata-proof"
mode = "0755"
content = '''
#!/bin/sh
[ -r /proc/modules ] || mount -t proc proc /proc
{
	echo "PROOF uname=$(uname -r)"
	echo "PROOF less=$(test -x /usr/bin/less && echo yes)"
	echo "PROOF procps=$(dpkg-query -W -f='\${Status}' procps)"
	echo "PROOF tree=$(dpkg-query -W -f='\${Status}' tree 2>/dev/null || echo missing)"
	echo "PROOF dev-a=$(cat /etc/dev-a 2>/dev/null || echo missing)"
	echo "PROOF dev-b=$(cat /opt/dev-b/proof 2>/dev/null || echo missing)"
	echo "PROOF root=$(grep ' / ' /proc/mounts | cut -d' ' -f3 | tail -n 1)"
	echo "PROOF commit=$(cat /run/strata/commit 2>/dev/null)"
} > /dev/console 2>&1
sync
echo o > /proc/sysrq-trigger
sleep 30
'''
`;
const RECIPE = recipe(['less', 'procps']);
const RECIPE_PLUS_TREE = recipe(['less', 'procps', 'tree']);

const CMDLINE =
  'console=ttyS0 panic=-1 strata.reboot.delay=0 strata.retries=3 strata.backup=/dev/vda strata.backup.format=1 init=/usr/local/sbin/strata-proof';

let dir: string;
let data: string;
let disk: string;
let first: Build;

const json = <T>(s: string): T => JSON.parse(s) as T;

async function strata(args: string[]) {
  const r = await runStrata(args, { data });
  expect(r.code, `strata ${args.join(' ')}:\n${r.stderr}`).toBe(0);
  return r.stdout;
}

async function build(profile: string, text: string): Promise<Build> {
  const f = join(dir, `${profile}-${Math.random().toString(16).slice(2)}.toml`);
  writeFileSync(f, text);
  return json<Build>(await strata(['--json', 'build', profile, '--recipe', f]));
}

const layersOf = async (rev: string) =>
  json<{ manifest: { layers: { digest: string; size: number }[] } }>(await strata(['--json', 'show', rev])).manifest.layers;

const objectDigests = (urls: string[]) =>
  urls.flatMap((u) => {
    const m = /^(?:\/v1)?\/objects\/sha256\/([0-9a-f]{64})(?:\?|$)/.exec(u);
    return m ? [m[1]!] : [];
  });

/** PXE-boots whatever the default assignment names, with the backup disk; returns the console and every URL requested. */
async function pxeBoot(): Promise<{ r: QemuResult; requested: string[]; boot: string[] }> {
  const store = await Store.open(data);
  const app = buildServer({ store });
  const requested: string[] = [];
  app.addHook('onRequest', async (req) => {
    requested.push(req.url);
  });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const tftp = join(dir, 'tftp');
    mkdirSync(tftp, { recursive: true });
    await writeIpxeChain(tftp, (app.server.address() as AddressInfo).port);
    const r = await runQemu({ tftpDir: tftp, disks: [disk], memoryMb: 1024, timeoutMs: 480_000 });
    const head = store.getCommit(store.resolve('dev')).manifest;
    return { r, requested, boot: [head.kernel?.digest ?? '', head.initrd?.digest ?? ''] };
  } finally {
    await app.close();
    store.close();
  }
}

const why = (r: QemuResult) => `console:\n${r.output.slice(-4000)}\nstrata lines:\n${strataLines(r.output).join('\n')}`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-recipe-'));
  data = join(dir, 'data');
  disk = join(dir, 'backup.img');
  execFileSync('truncate', ['-s', '1G', disk]);
  first = await build('lab', RECIPE);
}, 60 * 60_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a recipe builds a profile, and a rebuild ships as a delta', () => {
  it('the first build downloads the packages into the shared cache and commits a new profile with the recipe', async () => {
    expect(first.state).toBe('committed');
    expect(first.stats.debsDownloaded).toBeGreaterThan(50);
    expect(first.stats.bytesToGet).toBeGreaterThan(10_000_000);
    expect(first.stats.cachedDebs).toBeGreaterThan(50);
    const show = await strata(['show', 'lab']);
    expect(show).toContain(`recipe (build ${first.id}):`);
    expect(show).toContain('packages = ["less","procps"]');
    expect(await strata(['log', 'lab'])).toContain(first.commit!.slice(0, 12));
    // strata makes its own initramfs from the tree's modules: the build skips Debian's.
    const store = await Store.open(data);
    try {
      const files = store.layerEntries(store.getCommit(first.commit!).manifest.layers[0]!.digest).map((e) => `/${e.path}`);
      expect(files).toContain(`/boot/vmlinuz-${OLD_KERNEL}`);
      expect(files).toContain('/usr/sbin/update-initramfs');
      expect(files.filter((p) => p.startsWith('/boot/initrd.img'))).toEqual([]);
    } finally {
      store.close();
    }
  });

  it("a developer profile on the built base PXE-boots on the recipe's kernel with its packages and both layers", async () => {
    await strata(['branch', 'dev', 'lab']);
    const a = join(dir, 'a.tar');
    writeFileSync(a, await makeTar({ 'etc/dev-a': 'layer a\n' }));
    await strata(['commit', 'dev', '--tar', a, '-m', 'developer layer a']);
    const b = join(dir, 'b.tar');
    writeFileSync(b, await makeTar({ 'opt/dev-b/proof': 'layer b\n' }));
    await strata(['commit', 'dev', '--tar', b, '-m', 'developer layer b']);
    await strata(['cmdline', 'dev', ...CMDLINE.split(' ')]);
    await strata(['assign', 'default', 'dev']);

    const { r } = await pxeBoot();
    expect(r.timedOut, why(r)).toBe(false);
    const p = proofs(r.output);
    expect(p.uname, why(r)).toBe(OLD_KERNEL);
    expect(p.less, why(r)).toBe('yes');
    expect(p.procps).toBe('install ok installed');
    expect(p.tree).toBe('missing');
    expect(p['dev-a']).toBe('layer a');
    expect(p['dev-b']).toBe('layer b');
    expect(p.root).toBe('overlay');
    expect(strataLines(r.output)).toContain('strata: layers ready: 3 downloaded, 0 from the backup disk');
  }, 600_000);

  it(
    "the profile's schedule, once due, rebuilds the same recipe: no .deb downloaded, no new commit",
    async () => {
      const cached = readdirSync(join(data, 'apt-cache/archives')).filter((n) => n.endsWith('.deb')).length;
      // No --recipe: the schedule takes the profile's last recipe.
      expect(await strata(['build', 'lab', '--every', '24h'])).toMatch(/^lab: rebuilds every 24h; next at /);
      const store = await Store.open(data);
      let again: Build;
      try {
        // What the server's build loop does each tick, with the clock a day on.
        expect(store.enqueueDueBuilds()).toEqual([]);
        const dayLater = Date.now() + 24 * 3600_000 + 60_000;
        const due = store.enqueueDueBuilds(dayLater);
        expect(due.map((b) => [b.profile, b.scheduled, b.recipe])).toEqual([['lab', true, RECIPE]]);
        expect(store.enqueueDueBuilds(dayLater)).toEqual([]);
        await store.buildRunner().kick();
        again = store.getBuild(due[0]!.id);
      } finally {
        store.close();
      }
      expect(again.state).toBe('unchanged');
      expect(again.commit).toBe(first.commit);
      // apt's own counters: nothing to get, no Get: line for a package; the cache holds the same files.
      expect(again.stats.debsDownloaded).toBe(0);
      expect(again.stats.bytesToGet).toBe(0);
      expect(again.stats.cachedDebs).toBe(cached);
      expect((await strata(['rev-parse', 'lab'])).trim()).toBe(first.commit);
      expect(json<unknown[]>(await strata(['--json', 'reflog', 'lab']))).toHaveLength(1);
      expect(await strata(['builds', again.id, '--log'])).toMatch(/Need to get 0 B\/[\d.]+ [kM]B of archives/);
      expect(await strata(['build', 'lab', '--unschedule'])).toBe('lab: schedule removed\n');
    },
    45 * 60_000,
  );

  it(
    'one more package: a delta layer over the old base, and the rebase of dev reuses both developer layers',
    async () => {
      const devBefore = await layersOf('dev');
      const plus = await build('lab', RECIPE_PLUS_TREE);
      expect(plus.state).toBe('committed');
      expect(plus.stats.debsDownloaded).toBeGreaterThanOrEqual(1);
      const oldBase = await layersOf(first.commit!);
      const newBase = await layersOf('lab');
      expect(newBase).toHaveLength(2);
      expect(newBase[0]).toEqual(oldBase[0]);
      expect(newBase[1]!.size).toBeLessThan(oldBase[0]!.size / 10);

      const out = await strata(['rebase', 'dev', '--onto', 'lab']);
      expect(out).toContain('(2 layer(s) reused)');
      const devAfter = await layersOf('dev');
      expect(devAfter.map((l) => l.digest)).toEqual([...newBase, ...devBefore.slice(1)].map((l) => l.digest));
      // One ref move: the reflog's newest entry is the rebase, and undo is a rollback away.
      const reflog = json<{ old: string; new: string }[]>(await strata(['--json', 'reflog', 'dev']));
      expect(reflog).toHaveLength(4);
      expect(reflog[0]!.old).toBe(json<{ id: string }>(await strata(['--json', 'show', 'dev@{1}'])).id);
    },
    45 * 60_000,
  );

  it('the warm backup disk: the next boot of dev downloads only the delta layer and has tree and both layers', async () => {
    const devLayers = (await layersOf('dev')).map((l) => l.digest);
    const delta = devLayers[1]!;
    const { r, requested, boot } = await pxeBoot();
    expect(r.timedOut, why(r)).toBe(false);
    const p = proofs(r.output);
    expect(p.tree, why(r)).toBe('install ok installed');
    expect(p['dev-a']).toBe('layer a');
    expect(p['dev-b']).toBe('layer b');
    expect(p.less).toBe('yes');
    expect(p.commit).toBe((await strata(['rev-parse', 'dev'])).trim());
    expect(strataLines(r.output), why(r)).toContain('strata: layers ready: 1 downloaded, 3 from the backup disk');
    // The server's access log: of the layers, only the delta was fetched.
    const fetched = objectDigests(requested).filter((d) => !boot.includes(d));
    expect(fetched).toEqual([delta]);
    const cachedOnDisk = readDiskImage(disk, (root) => readdirSync(join(root, 'strata/objects')).sort());
    expect(cachedOnDisk).toEqual(expect.arrayContaining(devLayers));
    console.log(
      `recipe-build: the update fetched ${(await layersOf('dev'))[1]!.size} bytes of layers (delta), the full base is ${(await layersOf(first.commit!))[0]!.size}`,
    );
  }, 600_000);

  it('a rebase whose layer touches a path the new base changed lists it and changes nothing', async () => {
    await strata(['branch', 'clash', first.commit!]);
    const t = join(dir, 'clash.tar');
    writeFileSync(t, await makeTar({ 'usr/bin/tree': '#!/bin/sh\necho my own tree\n' }));
    await strata(['commit', 'clash', '--tar', t, '-m', 'a tree of its own']);
    const head = (await strata(['rev-parse', 'clash'])).trim();
    const reflog = await strata(['reflog', 'clash']);
    const r = await runStrata(['rebase', 'clash', '--onto', 'lab'], { data });
    // The conflict's exit code, and each clash listed: the path, what the old and new base have there, the layer.
    expect(r.code, r.stderr).toBe(EXIT.conflict);
    expect(r.stderr).toMatch(/usr\/bin\/tree \(old base: absent; new base: file \d+ bytes sha256:[0-9a-f]{12}; layer [0-9a-f]{12}\)/);
    expect(r.stderr).toMatch(/Nothing was changed/);
    expect((await strata(['rev-parse', 'clash'])).trim()).toBe(head);
    expect(await strata(['reflog', 'clash'])).toBe(reflog);
  });
});
