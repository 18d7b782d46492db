/**
 * `strata initrd build`: a standalone busybox initramfs from the installed
 * kernel's modules, checked by unpacking the real image.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildInitrd, compareKernelVersions, parseModulesDep, resolveModules } from '../cli/initrd-build.ts';
import { StrataError } from '../store/errors.ts';
import { findKernel } from './helpers/qemu.ts';

describe('module resolution (pure)', () => {
  const dep = parseModulesDep(
    [
      'kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko',
      'kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko',
      'kernel/net/core/failover.ko:',
      'kernel/drivers/virtio/virtio.ko:',
      'kernel/fs/squashfs/squashfs.ko:',
      'kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.xz:',
    ].join('\n'),
  );

  it('takes each wanted module with all its dependencies, once', () => {
    const r = resolveModules(dep, new Set(), ['virtio_net', 'squashfs'], []);
    expect(r.names.sort()).toEqual(['failover', 'net_failover', 'squashfs', 'virtio', 'virtio_net']);
    expect(r.missing).toEqual([]);
  });

  it('skips built-in modules and absent optional ones, and reports absent required ones', () => {
    const r = resolveModules(dep, new Set(['overlay']), ['overlay', 'loop'], ['e1000', 'e1000e']);
    expect(r.missing).toEqual(['loop']);
    expect(r.names).toEqual(['e1000e']);
  });

  it('orders kernel versions numerically', () => {
    expect(['6.1.0-9-amd64', '6.1.0-56-cloud-amd64', '6.10.0-1-amd64'].sort(compareKernelVersions)).toEqual([
      '6.1.0-9-amd64',
      '6.1.0-56-cloud-amd64',
      '6.10.0-1-amd64',
    ]);
  });
});

describe('buildInitrd on the installed kernel', () => {
  let dir: string;
  let listing: string[];
  let result: Awaited<ReturnType<typeof buildInitrd>>;
  const kernel = findKernel();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'strata-initrd-test-'));
    result = await buildInitrd({ output: join(dir, 'out/initrd.img') });
    listing = execFileSync('sh', ['-c', 'zcat "$1" | cpio -it --quiet', 'sh', result.output], { encoding: 'utf8' }).split('\n');
    execFileSync('sh', ['-c', 'mkdir -p "$2" && cd "$2" && zcat "$1" | cpio -id --quiet', 'sh', result.output, join(dir, 'x')]);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('defaults to the newest installed -amd64 kernel that has a vmlinuz', () => {
    expect(result.kernelVersion).toBe(kernel.version);
  });

  it('is a gzip newc cpio with /init, static busybox, the hook scripts and a console node', () => {
    expect(readFileSync(result.output).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    for (const f of [
      'init',
      'bin/busybox',
      'bin/sh',
      'dev/console',
      'lib/strata/strata-root.sh',
      'lib/strata/parse-cmdline.sh',
      'lib/strata/udhcpc.script',
    ]) {
      expect(listing).toContain(f);
    }
    expect(readFileSync(join(dir, 'x/init'), 'utf8')).toContain('strata_boot /newroot');
    expect(execFileSync('file', ['-b', join(dir, 'x/bin/busybox')], { encoding: 'utf8' })).toMatch(/statically linked/);
  });

  it('carries virtio_net with its dependencies, loop, squashfs, overlay, and a depmod made for them', () => {
    for (const m of [
      'virtio_net',
      'virtio_pci',
      'virtio',
      'virtio_ring',
      'net_failover',
      'failover',
      'loop',
      'squashfs',
      'overlay',
      'virtio_blk',
    ]) {
      expect(result.modules).toContain(m);
    }
    const dep = readFileSync(join(dir, 'x/lib/modules', result.kernelVersion, 'modules.dep'), 'utf8');
    expect(dep).toMatch(/virtio_net\.ko: .*net_failover\.ko/);
    expect(dep.trim().split('\n')).toHaveLength(result.modules.length);
    // busybox modprobe reads this list at boot: it must name modules that exist.
    const load = readFileSync(join(dir, 'x/lib/strata/modules'), 'utf8').trim().split('\n');
    expect(load).toEqual(expect.arrayContaining(['virtio_net', 'loop', 'squashfs', 'overlay']));
    for (const m of load) expect(result.modules).toContain(m);
  });

  it('stays small (no full module tree; the client kit is about 6 MB of it)', () => {
    expect(readFileSync(result.output).length).toBeLessThan(14 * 1024 * 1024);
  });

  it('carries the client kit: the agent, its tools and their own loader and libraries', () => {
    for (const f of [
      'lib/strata/client-kit.sh',
      'lib/strata/kit/bin/strata-agent',
      'lib/strata/kit/bin/busybox',
      'lib/strata/kit/lib/strata-agent/tools.sh',
      'lib/strata/kit/libexec/tar',
      'lib/strata/kit/libexec/zstd',
      'lib/strata/kit/libexec/ssh',
      'lib/strata/kit/lib/ld-linux-x86-64.so.2',
      'lib/strata/kit/lib/libc.so.6',
      'lib/strata/kit/etc/excludes',
    ]) {
      expect(listing).toContain(f);
    }
    // Run the kit's tar the way the agent does, with no library path of the host.
    const kit = join(dir, 'x/lib/strata/kit');
    const out = execFileSync(
      join(kit, 'lib/ld-linux-x86-64.so.2'),
      ['--library-path', join(kit, 'lib'), join(kit, 'libexec/tar'), '--version'],
      { encoding: 'utf8', env: {} },
    );
    expect(out).toMatch(/GNU tar/);
  });

  it('refuses a kernel that is not installed with a sentence that says what to do', async () => {
    const e = await buildInitrd({ output: join(dir, 'nope.img'), kernelVersion: '0.0.0-nope-amd64' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(StrataError);
    expect((e as StrataError).code).toBe('E_NOT_FOUND');
    expect((e as StrataError).message).toMatch(/--kernel-version/);
  });
});
