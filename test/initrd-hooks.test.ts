/**
 * The initramfs hook's parsing, run by the shells it meets at boot: busybox
 * ash (standalone initramfs), dash (initramfs-tools) and bash (dracut).
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const LIB = fileURLToPath(new URL('../initrd-hooks/lib/parse-cmdline.sh', import.meta.url));
const ROOT_SH = fileURLToPath(new URL('../initrd-hooks/strata-root.sh', import.meta.url));
const ID = 'a'.repeat(64);
const L1 = '1'.repeat(64);
const L2 = '2'.repeat(64);

const shells: [string, string[]][] = [
  ['busybox ash', ['/usr/bin/busybox', 'sh']],
  ['dash', ['/bin/sh']],
  ['bash', ['/bin/bash']],
].filter(([, cmd]) => spawnSync(cmd[0]!, [...cmd.slice(1), '-c', 'true']).status === 0) as [string, string[]][];

function run(shell: string[], script: string): { out: string; status: number } {
  const r = spawnSync(shell[0]!, [...shell.slice(1), '-c', `. "${LIB}"\n${script}`], { encoding: 'utf8' });
  return { out: r.stdout.trim(), status: r.status ?? -1 };
}

const show =
  'echo "server=$STRATA_SERVER commit=$STRATA_COMMIT profile=$STRATA_PROFILE backup=$STRATA_BACKUP format=$STRATA_BACKUP_FORMAT upper=$STRATA_UPPER debug=$STRATA_DEBUG retries=$STRATA_RETRIES init=$STRATA_INIT"';

describe.each(shells)('parse-cmdline.sh under %s', (_name, shell) => {
  it('reads every strata.* word and ignores the rest of the kernel command line', () => {
    const r = run(
      shell,
      `strata_parse_cmdline "BOOT_IMAGE=x console=ttyS0 strata.server=http://10.0.2.2:8080/ strata.commit=${ID} strata.profile=lab strata.backup=LABEL=cache strata.backup.format=1 strata.debug init=/bin/sh quiet"; ${show}`,
    );
    expect(r.out).toBe(
      `server=http://10.0.2.2:8080 commit=${ID} profile=lab backup=LABEL=cache format=1 upper=tmpfs debug=1 retries=5 init=/bin/sh`,
    );
  });

  it('defaults: no backup, no debug, tmpfs upper, 5 attempts', () => {
    const r = run(shell, `strata_parse_cmdline "strata.server=http://h:1 strata.commit=${ID}"; ${show}; strata_check_cmdline && echo ok`);
    expect(r.out).toBe(`server=http://h:1 commit=${ID} profile= backup= format=0 upper=tmpfs debug=0 retries=5 init=\nok`);
  });

  it('does not glob-expand words of the command line', () => {
    const r = run(shell, `cd /; strata_parse_cmdline "strata.profile=* strata.server=http://h:1"; echo "$STRATA_PROFILE"`);
    expect(r.out).toBe('*');
  });

  it.each([
    [`strata.commit=${ID}`, /no strata\.server=/],
    [`strata.server=ftp://x strata.commit=${ID}`, /not an http:\/\/ URL/],
    ['strata.server=http://h:1', /no strata\.commit=/],
    ['strata.server=http://h:1 strata.commit=ABC', /not a 64-digit lowercase hex commit id/],
    [`strata.server=http://h:1 strata.commit=${ID} strata.upper=disk`, /strata\.upper=disk is not supported/],
  ])('judges %s as unbootable with a sentence that says what to fix', (cmdline, msg) => {
    const r = run(shell, `strata_parse_cmdline "${cmdline}"; strata_check_cmdline`);
    expect(r.status).toBe(1);
    expect(r.out).toMatch(msg);
  });

  it('turns a manifest into "hex size" lines, base first, skipping kernel and initrd', () => {
    const dir = mkdtempSync(join(tmpdir(), 'strata-manifest-'));
    try {
      const f = join(dir, 'm');
      writeFileSync(
        f,
        `strata-manifest 1\ncommit-parent -\nkernel sha256:${'b'.repeat(64)} 10\ninitrd sha256:${'c'.repeat(64)} 11\nlayer sha256:${L1} 4096\nlayer sha256:${L2} 8192\n`,
      );
      const r = run(shell, `strata_parse_manifest "${f}"`);
      expect(r.status).toBe(0);
      expect(r.out).toBe(`${L1} 4096\n${L2} 8192`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['', /empty/],
    ['strata-manifest 2\n', /line 1/],
    [`strata-manifest 1\ncommit-parent -\n`, /names no layer/],
    [`strata-manifest 1\nlayer sha256:${L1}\n`, /expected 'layer sha256:<hex> <size>'/],
    [`strata-manifest 1\nlayer md5:${L1} 1\n`, /must start with sha256:/],
    [`strata-manifest 1\nlayer sha256:${L1.slice(1)} 1\n`, /bad sha256 digest/],
    [`strata-manifest 1\nlayer sha256:${L1} 1k\n`, /bad size/],
    [`strata-manifest 1\nrm -rf / x\n`, /unknown word 'rm'/],
    [`strata-manifest 1\ncommit-parent xyz\nlayer sha256:${L1} 1\n`, /bad commit-parent/],
  ])('rejects a bad manifest (%j)', (text, msg) => {
    const dir = mkdtempSync(join(tmpdir(), 'strata-manifest-'));
    try {
      const f = join(dir, 'm');
      writeFileSync(f, text);
      const r = run(shell, `strata_parse_manifest "${f}"`);
      expect(r.status).toBe(1);
      expect(r.out).toMatch(msg);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lists lowerdirs top first, short enough for 128 layers in one page', () => {
    expect(run(shell, 'strata_lowerdirs /l 3').out).toBe('/l/2:/l/1:/l/0');
    expect(run(shell, 'strata_lowerdirs /l 1').out).toBe('/l/0');
    const long = run(shell, 'strata_lowerdirs /l 128').out;
    expect(long.split(':')).toHaveLength(128);
    expect(long.length + ',upperdir=/.rw/upper,workdir=/.rw/work'.length).toBeLessThan(4096);
  });

  it('backs off exponentially with jitter, capped at 30 s', () => {
    const r = run(shell, 'for i in 1 2 3 4 5 6 9; do strata_backoff $i 0; done; strata_backoff 2 1');
    expect(r.out.split('\n')).toEqual(['1', '2', '4', '8', '16', '30', '30', '3']);
  });
});

describe('strata-root.sh', () => {
  it('is valid POSIX sh for every shell it runs under', () => {
    for (const [, shell] of shells) {
      const r = spawnSync(shell[0]!, [...shell.slice(1), '-n', ROOT_SH], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
    }
  });

  it('can be sourced without side effects and defines the entry points the packagings call', () => {
    const libDir = fileURLToPath(new URL('../initrd-hooks/lib/', import.meta.url));
    const out = execFileSync(
      '/usr/bin/busybox',
      ['sh', '-c', `STRATA_LIB_DIR="${libDir}" . "${ROOT_SH}"; type strata_boot strata_handover strata_fail >/dev/null && echo defined`],
      {
        encoding: 'utf8',
      },
    );
    expect(out.trim()).toBe('defined');
  });

  it('prunes the backup disk to the booted chain: older layers and cut-short downloads go, the rest stays', () => {
    const libDir = fileURLToPath(new URL('../initrd-hooks/lib/', import.meta.url));
    const dir = mkdtempSync(join(tmpdir(), 'strata-prune-'));
    try {
      const objects = join(dir, 'strata', 'objects');
      execFileSync('mkdir', ['-p', objects]);
      const old = '3'.repeat(64);
      for (const f of [L1, L2, old, `.fetch-${'4'.repeat(64)}`]) writeFileSync(join(objects, f), 'x');
      writeFileSync(join(dir, 'strata', 'last-good.id'), ID);
      writeFileSync(join(dir, 'layers.list'), `${L1} 1\n${L2} 1\n`);
      for (const [, shell] of shells) {
        const out = execFileSync(
          shell[0]!,
          [
            ...shell.slice(1),
            '-c',
            `STRATA_LIB_DIR="${libDir}" . "${ROOT_SH}"; STRATA_BACKUP_DIR="${dir}/strata"; STRATA_OBJECTS="${objects}"; STRATA_COMMIT=${ID}; strata_prune_backup "${dir}/layers.list"; ls -A "${objects}"`,
          ],
          { encoding: 'utf8' },
        );
        expect(
          out
            .trim()
            .split('\n')
            .filter((l) => !l.startsWith('strata:')),
        ).toEqual([L1, L2]);
        writeFileSync(join(objects, old), 'x'); // the next shell prunes it again
      }
      // Without a backup disk (layers in RAM) nothing is touched.
      execFileSync('/usr/bin/busybox', [
        'sh',
        '-c',
        `STRATA_LIB_DIR="${libDir}" . "${ROOT_SH}"; STRATA_BACKUP_DIR=; STRATA_OBJECTS="${objects}"; strata_prune_backup "${dir}/layers.list"`,
      ]);
      expect(existsSync(join(objects, old))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
