/**
 * Owners that do not fit a ustar header survive the agent, whatever the file
 * size. uid 300000 is above 262143 (0o777777, the most the octal uid field
 * holds as tar-stream writes it): it must travel in a PAX record. Files over
 * 16 MiB are streamed by a different path of the snapshot than small ones,
 * and that path once lost the record, so the layer said another owner.
 * The agent's tar is committed into a real store (real checker, real
 * tar2sqfs) and the owner is read back from the layer listing and from the
 * squashfs image itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chownSync, createWriteStream, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUFFER_LIMIT, writeSnapshot } from '../client-agent/snapshot.ts';
import { Store } from '../store/store.ts';
import { makeTar } from './helpers/tars.ts';

const UID = 300_000;
const GID = 300_001;

let dir: string;
let store: Store;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-large-owner-'));
  store = await Store.open(join(dir, 'data'), { create: true });
  writeFileSync(join(dir, 'base.tar'), await makeTar({ 'etc/hostname': 'lab\n' }));
  await store.importBase('lab', join(dir, 'base.tar'), { level: 3 });
});

afterAll(() => {
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** An upper dir holding one file of `size` bytes owned by UID:GID, old enough for the snapshot to read at once. */
function upperWith(name: string, size: number): string {
  const upper = join(dir, `upper-${name}`);
  mkdirSync(join(upper, 'srv'), { recursive: true });
  const file = join(upper, 'srv', name);
  writeFileSync(file, Buffer.alloc(size, 0x61));
  chownSync(file, UID, GID);
  const old = new Date(Date.now() - 60_000);
  utimesSync(file, old, old);
  return upper;
}

async function snapshotAndCommit(upper: string, name: string) {
  const tarPath = join(dir, `${name}.tar`);
  await writeSnapshot({ upper, exclude: () => false, xattrs: false, unstableRetries: 2 }, createWriteStream(tarPath));
  const { commit } = await store.commitTar('lab', tarPath, { message: name });
  const layer = commit.manifest.layers.at(-1)!.digest;
  const listed = store.layerEntries(layer).find((e) => e.path === `srv/${name}`);
  // unsquashfs -lln: numeric owners as the image stores them ("-rw-r--r-- 300000/300001 ... squashfs-root/srv/x").
  const line = execFileSync('unsquashfs', ['-lln', store.objectPath(layer)], { encoding: 'utf8' })
    .split('\n')
    .find((l) => l.endsWith(`/srv/${name}`));
  return { listed, imageOwner: line?.split(/\s+/)[1] };
}

describe('a uid above 262143 keeps its owner through the agent', () => {
  it('in a small file (read whole)', async () => {
    const r = await snapshotAndCommit(upperWith('small', 4096), 'small');
    expect(r.listed).toMatchObject({ uid: UID, gid: GID, size: 4096 });
    expect(r.imageOwner).toBe(`${UID}/${GID}`);
  });

  it('in a file over 16 MiB (streamed)', async () => {
    const size = BUFFER_LIMIT + 4096 + 17;
    const r = await snapshotAndCommit(upperWith('large', size), 'large');
    expect(r.listed).toMatchObject({ uid: UID, gid: GID, size });
    expect(r.imageOwner).toBe(`${UID}/${GID}`);
  }, 120_000);
});
