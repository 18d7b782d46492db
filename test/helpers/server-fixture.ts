/** A real store with a small profile, for the server tests. */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Store } from '../../store/store.ts';
import { makeTar, type Spec } from './tars.ts';

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function writeTar(dir: string, name: string, files: Record<string, Spec>): Promise<string> {
  const p = join(dir, name);
  writeFileSync(p, await makeTar(files));
  return p;
}

/** Imports profile `name` with a fake kernel and initrd (random bytes: only their digests matter here). */
export async function importProfile(
  store: Store,
  work: string,
  name: string,
  files: Record<string, Spec> = { 'etc/hostname': `${name}\n`, 'etc/shared': 'v0\n' },
): Promise<{ base: string; kernel: string; initrd: string }> {
  const kernel = join(work, `${name}-vmlinuz`);
  const initrd = join(work, `${name}-initrd`);
  writeFileSync(kernel, randomBytes(300_000));
  writeFileSync(initrd, randomBytes(100_001));
  const base = await store.importBase(name, await writeTar(work, `${name}-base.tar`, files), { kernel, initrd, level: 3 } as Parameters<
    Store['importBase']
  >[2]);
  return { base: base.id, kernel, initrd };
}

export async function commitFiles(
  store: Store,
  work: string,
  profile: string,
  files: Record<string, Spec>,
  message = 'change',
  parent?: string,
): Promise<string> {
  const tar = await writeTar(work, `${profile}-${randomBytes(4).toString('hex')}.tar`, files);
  return (await store.commitTar(profile, tar, { message, parent })).commit.id;
}

/** Waits until the baker has committed or rejected push `id` (bakes run in the background). */
export async function waitForPushSettled(store: Store, id: string, timeoutMs = 90_000): Promise<ReturnType<Store['getPush']>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = store.getPush(id);
    // Settled is the final state and the archive gone: the state is recorded first and the
    // archive deleted right after (store/pushes.ts), so a poll can fall between the two.
    if ((p.state === 'committed' || p.state === 'rejected') && !existsSync(store.pushArchivePath(id))) return p;
    if (Date.now() > deadline) throw new Error(`push ${id} still ${p.state} after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
