/** The agent's pure decisions: command line, excludes, quoting, status lines, backoff, pax records, getfattr and mountinfo parsing. */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostOfServer, parseCmdline } from '../client-agent/cmdline.ts';
import { loadConfig } from '../client-agent/config.ts';
import { DEFAULT_EXCLUDES, excludePatterns, makeExcluder } from '../protocol/excludes.ts';
import { parseStatus, pushCommand, shellQuote } from '../protocol/ssh-push.ts';
import { backoffDelay } from '../client-agent/queue.ts';
import { paxRecord } from '../protocol/tar-encode.ts';
import { parseGetfattr, selectXattrs } from '../client-agent/xattrs.ts';
import { lowerDirsFromMountinfo } from '../client-agent/diff.ts';
import { devParts } from '../client-agent/snapshot.ts';
import { autoMessage } from '../client-agent/watch.ts';
import { shellSplit } from './helpers/fake-push-server.ts';

describe('kernel command line and config', () => {
  it('reads strata.* and derives the SSH host from strata.server', () => {
    const c = parseCmdline(
      'BOOT_IMAGE=/vmlinuz console=ttyS0 strata.server=http://10.0.2.2:8080 strata.commit=abc123 strata.profile=lab quiet',
    );
    expect(c).toEqual({ server: 'http://10.0.2.2:8080', commit: 'abc123', profile: 'lab' });
    expect(hostOfServer(c.server!)).toBe('10.0.2.2');
    expect(hostOfServer('http://[::1]:8080')).toBe('::1');
  });

  it('merges defaults < config file < flags; the SSH port defaults to 2222', () => {
    const dir = mkdtempSync(join(tmpdir(), 'strata-agent-cfg-'));
    try {
      const file = join(dir, 'agent.json');
      writeFileSync(file, JSON.stringify({ zstdLevel: 7, profile: 'fromfile', extraExcludes: ['srv/cache'] }));
      const cfg = loadConfig(
        { cmdline: 'strata.server=http://srv.example:8080 strata.commit=c0ffee strata.profile=lab' },
        { env: { STRATA_AGENT_CONFIG: file } },
      );
      expect(cfg).toMatchObject({
        sshHost: 'srv.example',
        sshPort: 2222,
        sshUser: 'strata',
        zstdLevel: 7,
        profile: 'fromfile',
        bootCommit: 'c0ffee',
        upper: '/.rw/upper',
        spoolDir: '/.rw/strata-spool',
      });
      const cfg2 = loadConfig(
        { config: file, server: '127.0.0.1', sshPort: '2022', profile: 'p', parent: 'beef', stateDir: '/x/state' },
        { env: {} },
      );
      expect(cfg2).toMatchObject({
        sshHost: '127.0.0.1',
        sshPort: 2022,
        profile: 'p',
        bootCommit: 'beef',
        stateDir: '/x/state',
        spoolDir: '/x/state/spool',
      });
      expect(() => loadConfig({ config: join(dir, 'missing.json') })).toThrow(/does not exist/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('spools on the backup disk the initramfs left mounted, so pushes survive a reboot', () => {
    const disk = mkdtempSync(join(tmpdir(), 'strata-agent-backup-'));
    try {
      const cfg = loadConfig(
        { cmdline: 'strata.server=http://s:8080 strata.commit=c0ffee strata.profile=lab' },
        { env: {}, backupMount: disk },
      );
      expect(cfg.spoolDir).toBe(join(disk, 'strata-spool'));
      expect(cfg.stateDir).toBe('/.rw/strata-agent');
      const none = loadConfig({ cmdline: 'strata.server=http://s:8080' }, { env: {}, backupMount: join(disk, 'absent') });
      expect(none.spoolDir).toBe('/.rw/strata-spool');
    } finally {
      rmSync(disk, { recursive: true, force: true });
    }
  });
});

describe('excludes', () => {
  const ex = makeExcluder(
    excludePatterns({ agentPaths: ['/etc/strata/agent_key', '/.rw/strata-spool', '/srv/u/var/lib/agent'], upper: '/srv/u' }),
  );
  it('never commits caches, runtime dirs, machine identity, host keys or the agent itself', () => {
    for (const p of [
      'tmp',
      'tmp/x',
      'var/tmp/y',
      'var/cache/apt/archives/a.deb',
      'var/log/journal/x/system.journal',
      'run/lock',
      'etc/machine-id',
      'etc/ssh/ssh_host_ed25519_key',
      'etc/ssh/ssh_host_rsa_key.pub',
      'etc/strata/agent_key',
      'var/lib/agent/state.json',
    ]) {
      expect(ex(p), p).toBe(true);
    }
    for (const p of [
      '',
      'etc',
      'etc/hostname',
      'var/cache/apt/pkgcache.bin',
      'var/log/syslog',
      'tmpfoo',
      'etc/ssh/sshd_config',
      'etc/strata/agent_key.pub',
      'runner',
    ]) {
      expect(ex(p), p).toBe(false);
    }
  });
  it('a config can replace the list and keep host keys', () => {
    const ex2 = makeExcluder(excludePatterns({ excludes: ['opt/scratch'], includeHostKeys: true, agentPaths: [], upper: '/u' }));
    expect(ex2('tmp/x')).toBe(false);
    expect(ex2('opt/scratch/a')).toBe(true);
    expect(ex2('etc/ssh/ssh_host_ed25519_key')).toBe(false);
    expect(DEFAULT_EXCLUDES).toContain('var/log/journal');
  });
});

describe('push protocol words', () => {
  it("quotes the message so the server's shell-like split gives it back unchanged", () => {
    for (const msg of ["it's done", 'a "b" $HOME `x` \\ ; rm -rf /', 'multi\nline', '', 'plain']) {
      const argv = shellSplit(pushCommand('lab', 'abc', msg));
      expect(argv.slice(0, 4)).toEqual(['push', 'lab', '--parent', 'abc']);
      if (msg) expect(argv[5]).toBe(msg);
    }
    expect(shellQuote('abc-1.2')).toBe('abc-1.2');
  });
  it('parses status lines', () => {
    expect(parseStatus('queued\n')).toEqual({ state: 'queued' });
    expect(parseStatus('baking')).toEqual({ state: 'baking' });
    expect(parseStatus(`committed ${'a'.repeat(64)}`)).toEqual({ state: 'committed', commit: 'a'.repeat(64) });
    expect(parseStatus(`committed ${'b'.repeat(64)} branch lab/push-1`)).toEqual({
      state: 'committed',
      commit: 'b'.repeat(64),
      branch: 'lab/push-1',
    });
    expect(parseStatus('rejected path ../x escapes the tree')).toEqual({ state: 'rejected', why: 'path ../x escapes the tree' });
  });
});

describe('backoff', () => {
  it('grows exponentially, is capped and jittered', () => {
    const o = { baseMs: 1000, maxMs: 60_000 };
    expect(backoffDelay(0, o, () => 0.999)).toBe(999);
    expect(backoffDelay(3, o, () => 0.5)).toBe(4000);
    expect(backoffDelay(20, o, () => 0.999)).toBeLessThan(60_000);
    expect(backoffDelay(20, o, () => 0)).toBe(0);
  });
});

describe('tar details', () => {
  it('pax records count their own length, binary values kept', () => {
    const r = paxRecord('SCHILY.xattr.user.bin', Buffer.from([0, 0xff, 0x0a]));
    const len = Number(r.subarray(0, r.indexOf(0x20)).toString());
    expect(len).toBe(r.length);
    expect(r.subarray(r.length - 4)).toEqual(Buffer.from([0, 0xff, 0x0a, 0x0a]));
    for (let n = 80; n < 110; n++) {
      const rr = paxRecord('path', Buffer.from('x'.repeat(n)));
      expect(Number(rr.subarray(0, rr.indexOf(0x20)).toString())).toBe(rr.length);
    }
  });
  it('decodes dev_t like glibc', () => {
    expect(devParts(0n)).toEqual({ major: 0, minor: 0 });
    expect(devParts(BigInt((1 << 8) | 3))).toEqual({ major: 1, minor: 3 });
    expect(devParts(0x1_0000_0000n * 0x1000n + 0x10ffn)).toEqual({ major: 0x1010, minor: 0xff });
  });
  it('reads getfattr output, including escaped names and binary values', () => {
    const dir = mkdtempSync(join(tmpdir(), 'strata-agent-xattr-'));
    try {
      writeFileSync(join(dir, 'a\nb'), '');
      execFileSync('setfattr', ['-n', 'user.v', '-v', '0x00ff', join(dir, 'a\nb')]);
      const out = execFileSync('getfattr', ['-R', '-d', '-m', '-', '-e', 'base64', '--absolute-names', dir], { encoding: 'utf8' });
      const map = parseGetfattr(out);
      expect(map.get(join(dir, 'a\nb'))).toEqual([['user.v', Buffer.from([0, 0xff])]]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('keeps overlay meaning, drops mount bookkeeping and ACLs, refuses metacopy', () => {
    const d = selectXattrs([
      ['trusted.overlay.opaque', Buffer.from('y')],
      ['trusted.overlay.origin', Buffer.from('x')],
      ['system.posix_acl_access', Buffer.from('x')],
      ['security.capability', Buffer.from([1])],
      ['user.a', Buffer.from('b')],
    ]);
    expect(d.keep.map((x) => x[0])).toEqual(['trusted.overlay.opaque', 'security.capability', 'user.a']);
    expect(d.dropped).toEqual(['system.posix_acl_access']);
    expect(selectXattrs([['trusted.overlay.metacopy', Buffer.alloc(0)]]).metacopy).toBe(true);
  });
});

describe('diff and watch helpers', () => {
  it('finds the lower dirs of the overlay whose upper dir is ours', () => {
    const mi = [
      '22 1 0:20 / / rw - ext4 /dev/vda rw',
      '90 22 0:50 / /mnt/m rw,relatime - overlay overlay rw,lowerdir=/l/a\\:b:/l/two,upperdir=/u/up,workdir=/u/work,index=off',
    ].join('\n');
    expect(lowerDirsFromMountinfo(mi, '/u/up')).toEqual(['/l/a:b', '/l/two']);
    expect(lowerDirsFromMountinfo(mi, '/other')).toBeNull();
  });
  it('generates readable commit messages', () => {
    expect(autoMessage(['etc/a', 'etc/b', 'etc/c', 'etc/d'], new Date(0))).toBe(
      'auto: 4 changes (etc/a, etc/b, etc/c and 1 more) at 1970-01-01T00:00:00.000Z',
    );
  });
});
