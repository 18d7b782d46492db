/**
 * A small boot server for the initramfs tests: the boot routes of docs/design.md
 * ("HTTP") served from a directory with node:http on 127.0.0.1, plus an
 * access log so tests can prove what a client downloaded. It also builds the
 * squashfs layers those tests boot (a busybox root and small layers on top).
 *
 * It stands in for `strata serve` only on the routes a booting client uses:
 *   GET /v1/boot/ipxe?mac=..      iPXE script (kernel + initrd + command line)
 *   GET /v1/commits/<id>/manifest manifest text
 *   GET /objects/sha256/<hex>     blobs
 *   GET /kernel, GET /initrd      the files given at start
 */
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, copyFile, mkdir, stat, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { freePort } from './ports.ts';

export interface AccessLogEntry {
  method: string;
  url: string;
  status: number;
  bytes: number;
}

export interface Blob {
  digest: string;
  size: number;
}

export interface StaticBootServer {
  /** http://127.0.0.1:PORT, as the host sees it. */
  url: string;
  port: number;
  /** http://10.0.2.2:PORT, as a QEMU user-network guest sees it. */
  guestUrl: string;
  log: AccessLogEntry[];
  /** Copies a file into the object dir; returns its digest and size. */
  addObject(file: string): Promise<Blob>;
  /** Stores raw bytes under a digest of the caller's choosing (for corruption tests). */
  putObjectRaw(hex: string, data: Buffer): Promise<void>;
  /** Stores the canonical manifest for a chain; returns the commit id (sha256 of the text). */
  addManifest(layers: Blob[], opts?: { parent?: string | null; kernel?: Blob; initrd?: Blob }): Promise<string>;
  /** Stores any text under any id (for bad-manifest tests). */
  putManifestRaw(id: string, text: string): Promise<void>;
  /** What /v1/boot/ipxe answers: the commit to boot and extra kernel arguments. */
  setBoot(commit: string, extraArgs?: string): void;
  /** Bytes sent for requests whose URL starts with prefix. */
  bytesServed(prefix?: string): number;
  close(): Promise<void>;
}

export function manifestText(layers: Blob[], opts: { parent?: string | null; kernel?: Blob; initrd?: Blob } = {}): string {
  const lines = ['strata-manifest 1', `commit-parent ${opts.parent ?? '-'}`];
  if (opts.kernel) lines.push(`kernel sha256:${opts.kernel.digest} ${opts.kernel.size}`);
  if (opts.initrd) lines.push(`initrd sha256:${opts.initrd.digest} ${opts.initrd.size}`);
  for (const l of layers) lines.push(`layer sha256:${l.digest} ${l.size}`);
  return `${lines.join('\n')}\n`;
}

export async function sha256File(file: string): Promise<Blob> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file)) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: h.digest('hex'), size };
}

export async function startStaticBootServer(opts: {
  dir: string;
  kernel: string;
  initrd: string;
  port?: number;
}): Promise<StaticBootServer> {
  const objects = join(opts.dir, 'objects');
  const manifests = join(opts.dir, 'manifests');
  await mkdir(objects, { recursive: true });
  await mkdir(manifests, { recursive: true });
  const log: AccessLogEntry[] = [];
  let boot = { commit: '', extra: '' };
  let guestUrl = '';

  const sendFile = async (res: http.ServerResponse, entry: AccessLogEntry, file: string, type: string) => {
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch {
      entry.status = 404;
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    entry.status = 200;
    res.writeHead(200, { 'content-type': type, 'content-length': String(size), 'cache-control': 'public, max-age=31536000, immutable' });
    const s = createReadStream(file);
    s.on('data', (c) => {
      entry.bytes += (c as Buffer).length;
    });
    s.pipe(res);
  };

  const server = http.createServer((req, res) => {
    const entry: AccessLogEntry = { method: req.method ?? 'GET', url: req.url ?? '/', status: 0, bytes: 0 };
    log.push(entry);
    const path = (req.url ?? '/').split('?')[0]!;
    let m: RegExpExecArray | null;
    if (path === '/v1/boot/ipxe') {
      const body =
        `#!ipxe\nkernel ${guestUrl}/kernel console=ttyS0 panic=-1 strata.server=${guestUrl} strata.commit=${boot.commit} ${boot.extra}\n` +
        `initrd ${guestUrl}/initrd\nboot\n`;
      entry.status = 200;
      entry.bytes = Buffer.byteLength(body);
      res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
    } else if (path === '/kernel') {
      void sendFile(res, entry, opts.kernel, 'application/octet-stream');
    } else if (path === '/initrd') {
      void sendFile(res, entry, opts.initrd, 'application/octet-stream');
    } else if ((m = /^\/v1\/commits\/([0-9a-f]{64})\/manifest$/.exec(path))) {
      void sendFile(res, entry, join(manifests, m[1]!), 'text/plain');
    } else if ((m = /^\/objects\/sha256\/([0-9a-f]{64})$/.exec(path))) {
      void sendFile(res, entry, join(objects, m[1]!), 'application/octet-stream');
    } else {
      entry.status = 404;
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  guestUrl = `http://10.0.2.2:${port}`;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    guestUrl,
    log,
    async addObject(file) {
      const blob = await sha256File(file);
      await copyFile(file, join(objects, blob.digest));
      return blob;
    },
    async putObjectRaw(hex, data) {
      await writeFile(join(objects, hex), data);
    },
    async addManifest(layers, o = {}) {
      const text = manifestText(layers, o);
      const id = createHash('sha256').update(text).digest('hex');
      await writeFile(join(manifests, id), text);
      return id;
    },
    async putManifestRaw(id, text) {
      await writeFile(join(manifests, id), text);
    },
    setBoot(commit, extra = '') {
      boot = { commit, extra };
    },
    bytesServed(prefix = '/') {
      return log.filter((e) => e.url.startsWith(prefix)).reduce((n, e) => n + e.bytes, 0);
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

// --- layers -------------------------------------------------------------------

/** Packs a directory into a squashfs layer with GNU tar | tar2sqfs (the store's path, whiteouts included). */
export async function makeLayer(dir: string, out: string): Promise<void> {
  await execa('sh', [
    '-c',
    'tar -C "$1" --numeric-owner --xattrs --xattrs-include="*" -cf - . | tar2sqfs -q -f -c zstd "$2"',
    'sh',
    dir,
    out,
  ]);
}

/** The guest's /sbin/init: prints PROOF lines on the serial console, then powers off. */
export const PROOF_INIT = `#!/bin/sh
export PATH=/bin:/sbin
[ -r /proc/mounts ] || mount -t proc proc /proc
# A boot that judges its own health (strata.health) moves the backup disk's last good commit once judged: wait for that.
if [ -f /run/strata/health/armed ]; then
  i=0
  while [ ! -f /run/strata/health/state ] && [ "$i" -lt 120 ]; do sleep 1; i=$((i + 1)); done
fi
echo "PROOF root-fstype=$(awk '$2=="/"{t=$3} END{print t}' /proc/mounts)"
echo "PROOF top=$(cat /etc/top-file 2>/dev/null || echo missing)"
echo "PROOF middle=$(cat /etc/middle-file 2>/dev/null || echo missing)"
echo "PROOF base=$(cat /etc/base-file 2>/dev/null || echo missing)"
if [ -e /etc/base-deleted ]; then echo "PROOF whiteout=present"; else echo "PROOF whiteout=gone"; fi
if echo probe > /.rw/probe 2>/dev/null && echo hello > /hello 2>/dev/null && [ -f /.rw/upper/hello ]; then
  echo "PROOF rw=writable"
else
  echo "PROOF rw=readonly"
fi
echo "PROOF commit=$(cat /run/strata/commit 2>/dev/null)"
echo "PROOF layers=$(ls /run/strata/layers 2>/dev/null | wc -l)"
echo "PROOF end"
sync
poweroff -f
`;

/** A busybox root: /bin/busybox + applet links, /sbin/init = PROOF_INIT, files the tests look for. */
export async function makeBusyboxRootTree(dir: string): Promise<void> {
  for (const d of ['bin', 'sbin', 'etc', 'proc', 'sys', 'dev', 'run', 'tmp', '.rw', 'usr/bin']) {
    await mkdir(join(dir, d), { recursive: true });
  }
  await copyFile('/usr/bin/busybox', join(dir, 'bin/busybox'));
  await chmod(join(dir, 'bin/busybox'), 0o755);
  const list = (await execa('/usr/bin/busybox', ['--list'])).stdout.split('\n').filter((a) => a && a !== 'busybox' && a !== 'init');
  for (const applet of list) await symlink('busybox', join(dir, 'bin', applet));
  await writeFile(join(dir, 'sbin/init'), PROOF_INIT, { mode: 0o755 });
  await writeFile(join(dir, 'etc/base-file'), 'base\n');
  await writeFile(join(dir, 'etc/base-deleted'), 'this file is deleted by a whiteout in a later layer\n');
}

/** A layer tree with files; `whiteouts` become overlayfs whiteouts (char 0:0). */
export async function makeLayerTree(dir: string, files: Record<string, string>, whiteouts: string[] = []): Promise<void> {
  for (const [p, content] of Object.entries(files)) {
    await mkdir(join(dir, p, '..'), { recursive: true });
    await writeFile(join(dir, p), content);
  }
  for (const p of whiteouts) {
    await mkdir(join(dir, p, '..'), { recursive: true });
    await execa('mknod', [join(dir, p), 'c', '0', '0']);
  }
}

// --- a whole test chain ---------------------------------------------------------

export interface TestChain {
  /** base (busybox root), middle (adds /etc/middle-file), top (adds /etc/top-file, whites out /etc/base-deleted). */
  trees: { base: string; middle: string; top: string };
  layers: { base: string; middle: string; top: string };
}

/** Builds the three trees and their squashfs layers under dir. */
export async function makeTestChain(dir: string): Promise<TestChain> {
  const trees = { base: join(dir, 'tree-base'), middle: join(dir, 'tree-middle'), top: join(dir, 'tree-top') };
  await makeBusyboxRootTree(trees.base);
  await makeLayerTree(trees.middle, { 'etc/middle-file': 'middle\n' });
  await makeLayerTree(trees.top, { 'etc/top-file': 'top\n' }, ['etc/base-deleted']);
  const layers = { base: join(dir, 'base.sqfs'), middle: join(dir, 'middle.sqfs'), top: join(dir, 'top.sqfs') };
  for (const k of ['base', 'middle', 'top'] as const) await makeLayer(trees[k], layers[k]);
  return { trees, layers };
}

/** A TCP port on 127.0.0.1 that nothing listens on (bound, then released). */
export const closedPort = (): Promise<number> => freePort();
