/**
 * Boot bench: a 3-layer chain (busybox base, a 16 MB payload layer, a small
 * top layer) booted in QEMU (TCG) with the standalone initrd and a backup
 * disk, twice: cold (empty cache) and warm (every layer on the disk).
 * Prints the bytes the initramfs fetched and the time from kernel start to
 * switch_root (the hook prints `strata: switch_root at <uptime>`, read from
 * /proc/uptime, i.e. seconds since the kernel started).
 *
 *   node --import tsx bench/boot.ts
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildInitrd } from '../cli/initrd-build.ts';
import { findKernel, proofs, runQemu, strataLines } from '../test/helpers/qemu.ts';
import { makeBusyboxRootTree, makeLayer, makeLayerTree, startStaticBootServer } from '../test/helpers/static-boot-server.ts';

export interface BootRun {
  /** Bytes of manifest + layers the initramfs downloaded. */
  bytesFetched: number;
  requests: number;
  /** Seconds since kernel start when strata-root.sh began / handed over. */
  hookStart: number;
  switchRoot: number;
  wallSeconds: number;
}

export interface BootBenchResult {
  chainBytes: number;
  cold: BootRun;
  warm: BootRun;
}

function uptimeOf(lines: string[], re: RegExp): number {
  for (const l of lines) {
    const m = re.exec(l);
    if (m) return Number(m[1]);
  }
  return NaN;
}

export async function main(): Promise<BootBenchResult> {
  const kernel = findKernel();
  const dir = mkdtempSync(join(tmpdir(), 'strata-bench-boot-'));
  try {
    const initrd = (await buildInitrd({ output: join(dir, 'initrd.img'), kernelVersion: kernel.version })).output;
    await makeBusyboxRootTree(join(dir, 't0'));
    mkdirSync(join(dir, 't1/opt'), { recursive: true });
    // Incompressible, so the layer's size is what goes over the wire.
    writeFileSync(join(dir, 't1/opt/payload.bin'), randomBytes(16 * 1024 * 1024));
    await makeLayerTree(join(dir, 't2'), { 'etc/top-file': 'top\n' }, ['etc/base-deleted']);
    for (const i of [0, 1, 2]) await makeLayer(join(dir, `t${i}`), join(dir, `l${i}.sqfs`));

    const srv = await startStaticBootServer({ dir: join(dir, 'srv'), kernel: kernel.path, initrd });
    try {
      const blobs = [];
      for (const i of [0, 1, 2]) blobs.push(await srv.addObject(join(dir, `l${i}.sqfs`)));
      const id = await srv.addManifest(blobs);
      const disk = join(dir, 'backup.img');
      execFileSync('truncate', ['-s', '128M', disk]);
      execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'strata-bench', disk]);

      const once = async (): Promise<BootRun> => {
        const before = srv.log.length;
        const r = await runQemu({
          kernel: kernel.path,
          initrd,
          disks: [disk],
          append: `console=ttyS0 panic=-1 quiet strata.server=${srv.guestUrl} strata.commit=${id} strata.backup=LABEL=strata-bench strata.reboot.delay=0`,
          timeoutMs: 120_000,
        });
        if (proofs(r.output).commit !== id) throw new Error(`the bench boot failed:\n${r.output.slice(-3000)}`);
        const lines = strataLines(r.output);
        const log = srv.log.slice(before);
        return {
          bytesFetched: log.reduce((n, e) => n + e.bytes, 0),
          requests: log.length,
          hookStart: uptimeOf(lines, /^strata: starting at ([\d.]+)s/),
          switchRoot: uptimeOf(lines, /^strata: switch_root at ([\d.]+)$/),
          wallSeconds: r.ms / 1000,
        };
      };
      const cold = await once();
      const warm = await once();
      const res: BootBenchResult = { chainBytes: blobs.reduce((n, b) => n + b.size, 0), cold, warm };

      const row = (name: string, b: BootRun) =>
        `  ${name}: ${(b.bytesFetched / 1e6).toFixed(2)} MB in ${b.requests} requests; kernel start -> hook ${b.hookStart.toFixed(2)} s -> switch_root ${b.switchRoot.toFixed(2)} s (hook ${(b.switchRoot - b.hookStart).toFixed(2)} s); QEMU wall ${b.wallSeconds.toFixed(1)} s`;
      console.log(
        `boot bench: 3-layer chain, ${(res.chainBytes / 1e6).toFixed(2)} MB of squashfs, QEMU TCG, virtio-net user networking, backup disk`,
      );
      console.log(row('cold (empty cache)', cold));
      console.log(row('warm (cached)     ', warm));
      return res;
    } finally {
      await srv.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
