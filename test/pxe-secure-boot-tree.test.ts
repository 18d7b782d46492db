/**
 * The files `serve --pxe-secure-boot` keeps in its TFTP root, without a VM:
 * the dispatcher answers in the order every boot uses, each answer names
 * the right commit, kernel and initrd, and a sync after the store moved
 * leaves exactly the files the new answers need. (Booting them:
 * test/pxe-secure-boot.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SECURE_BOOT_TFTP, secureBootTree, syncSecureBootTftp } from '../server/pxe/secure-boot-tftp.ts';
import { Store } from '../store/store.ts';
import { commitFiles, importProfile, tempDir } from './helpers/server-fixture.ts';

const URL = 'http://10.77.0.1:8080';
let tmp: ReturnType<typeof tempDir>;
let store: Store;
let base: string;
let head: string;

beforeAll(async () => {
  tmp = tempDir('strata-sb-tree-');
  store = await Store.open(join(tmp.dir, 'data'), { create: true });
  base = (await importProfile(store, tmp.dir, 'lab')).base;
  head = await commitFiles(store, tmp.dir, 'lab', { 'etc/motd': 'hi\n' });
  await importProfile(store, tmp.dir, 'other');
}, 120_000);

afterAll(() => {
  store?.close();
  tmp?.cleanup();
});

/** The config file the dispatcher loads for a condition line, and its text. */
function answerFor(files: Map<string, string>, condition: string): string {
  const lines = files.get(SECURE_BOOT_TFTP.grubCfg)!.split('\n');
  const i = lines.findIndex((l) => l.includes(condition));
  expect(i, files.get(SECURE_BOOT_TFTP.grubCfg)).toBeGreaterThanOrEqual(0);
  const name = /configfile \/(\S+)/.exec(lines[i + 1]!)![1]!;
  return files.get(name)!;
}

describe('the Secure Boot TFTP root', () => {
  it('with nothing assigned, a machine is told so (its MAC and IP as GRUB sees them) and reboots', () => {
    const { files, objects } = secureBootTree(store, URL);
    const cfg = files.get(SECURE_BOOT_TFTP.grubCfg)!;
    expect(cfg).toContain('echo "strata: no assignment matches this machine (MAC $net_default_mac, IP $net_default_ip)');
    expect(cfg).toMatch(/^reboot$/m);
    expect(objects.size).toBe(0);
  });

  it('dispatches MAC, exact IP, the most specific CIDR, then default, each to its commit', () => {
    store.assign('default', 'lab');
    store.assign('10.77.0.0/16', `lab@${base}`);
    store.assign('10.77.4.0/22', 'lab');
    store.assign('10.77.0.9', `lab@${base}`);
    store.assign('52:54:00:aa:bb:cc', `lab@${base}`);
    const { files, objects } = secureBootTree(store, URL);
    const cfg = files.get(SECURE_BOOT_TFTP.grubCfg)!;
    const conditions = cfg.split('\n').filter((l) => /^(if|elif|else)\b/.test(l));
    expect(conditions).toEqual([
      'if [ "$net_default_mac" = 52:54:00:aa:bb:cc ]; then',
      'elif [ "$net_default_ip" = 10.77.0.9 ]; then',
      'elif regexp \'^10\\.77\\.(4|5|6|7)\\.[0-9]+$\' "$net_default_ip"; then',
      'elif regexp \'^10\\.77\\.[0-9]+\\.[0-9]+$\' "$net_default_ip"; then',
      'else',
    ]);
    expect(answerFor(files, '52:54:00:aa:bb:cc')).toContain(`strata.commit=${base} `);
    expect(answerFor(files, '(4|5|6|7)')).toContain(`strata.commit=${head} `);
    expect(answerFor(files, 'else')).toContain(`strata.commit=${head} `);
    // Same commit, same command line: one file for several rules.
    expect(answerFor(files, '52:54:00:aa:bb:cc')).toBe(answerFor(files, '10.77.0.9'));
    const m = store.getCommit(head).manifest;
    expect(answerFor(files, 'else')).toContain(`  linux /strata/objects/${m.kernel!.digest} strata.server=${URL} `);
    expect([...objects.keys()].sort()).toEqual([m.kernel!.digest, m.initrd!.digest].sort());
  });

  it('a sync writes what the answers need; after the store moves, the next sync leaves only what the new answers need', async () => {
    const root = join(tmp.dir, 'tftp');
    expect(await syncSecureBootTftp(root, secureBootTree(store, URL))).toBe(true);
    expect(await syncSecureBootTftp(root, secureBootTree(store, URL))).toBe(false);
    const m = store.getCommit(head).manifest;
    const obj = (d: string) => join(root, SECURE_BOOT_TFTP.objects, d);
    expect(readFileSync(obj(m.kernel!.digest)).equals(readFileSync(store.objectPath(m.kernel!.digest)))).toBe(true);
    const before = readdirSync(join(root, SECURE_BOOT_TFTP.configs));

    // Every rule now points at the other profile: its kernel and initrd replace lab's.
    for (const a of store.listAssignments()) store.assign(a.match, 'other');
    expect(await syncSecureBootTftp(root, secureBootTree(store, URL))).toBe(true);
    const other = store.getCommit(store.getProfile('other').head!).manifest;
    expect(readdirSync(join(root, SECURE_BOOT_TFTP.objects)).sort()).toEqual([other.kernel!.digest, other.initrd!.digest].sort());
    expect(existsSync(obj(m.kernel!.digest))).toBe(false);
    const after = readdirSync(join(root, SECURE_BOOT_TFTP.configs));
    expect(after).toHaveLength(1);
    expect(before).not.toContain(after[0]);
    expect(readFileSync(join(root, SECURE_BOOT_TFTP.grubCfg), 'utf8')).toContain(`configfile /${SECURE_BOOT_TFTP.configs}/${after[0]}`);
  });
});
