import { describe, expect, it } from 'vitest';
import { grubPath, renderGrub, renderGrubRetry, renderIpxe, renderIpxeRetry } from '../server/boot-scripts.ts';
import { bootArgs, normalizeIp } from '../server/boot-routes.ts';
import { newPushId, normalizeMac, PUSH_ID } from '../protocol/ids.ts';
import { statusForCode, toHttpError } from '../server/http-errors.ts';
import { etagMatches, ifRangeAllows, parseRange } from '../server/object-routes.ts';
import { parseSshCommand, splitShellWords } from '../protocol/ssh-push.ts';
import { looksLikeZstd } from '../server/ssh-server.ts';
import { parseHostPort } from '../server/main.ts';
import { StrataError } from '../store/errors.ts';

const K = 'a'.repeat(64);
const I = 'b'.repeat(64);
const C = 'c'.repeat(64);

describe('boot scripts', () => {
  const input = {
    serverUrl: 'http://10.0.2.2:8080',
    kernel: K,
    initrd: I,
    args: bootArgs({
      serverUrl: 'http://10.0.2.2:8080',
      commit: C,
      profile: 'lab',
      profileCmdline: 'console=ttyS0  quiet',
      assignmentCmdline: 'panic=-1',
    }),
    banner: 'booting lab',
    selfUrl: 'http://10.0.2.2:8080/v1/boot/ipxe?mac=52:54:00:12:34:56',
  };
  it('iPXE: kernel, initrd and the command line in order, and a retry on failure', () => {
    const s = renderIpxe(input);
    expect(s.startsWith('#!ipxe\n')).toBe(true);
    expect(s).toContain(
      `kernel http://10.0.2.2:8080/objects/sha256/${K} initrd=initrd.img strata.server=http://10.0.2.2:8080 strata.commit=${C} strata.profile=lab console=ttyS0 quiet panic=-1 || goto failed`,
    );
    // --name + initrd=: what UEFI iPXE needs to hand the initrd to the kernel's EFI stub.
    expect(s).toContain(`initrd --name initrd.img http://10.0.2.2:8080/objects/sha256/${I} || goto failed`);
    expect(s).toMatch(/boot \|\| goto failed\n:failed\n/);
    expect(s).toContain('sleep 30\nchain http://10.0.2.2:8080/v1/boot/ipxe?mac=52:54:00:12:34:56');
  });
  it('iPXE: a newline or ${} in an argument cannot inject a command', () => {
    const s = renderIpxe({ ...input, args: ['a=1\nshell', 'b=${net0/mac}'] });
    expect(s).not.toMatch(/^shell$/m);
    expect(s).toContain('a=1 shell');
    expect(s).not.toContain('${net0');
  });
  it('iPXE retry script says why, sleeps 30 s and chains the same URL', () => {
    const s = renderIpxeRetry('no assignment matches', 'http://h:1/v1/boot/ipxe?mac=aa:bb:cc:dd:ee:ff&ip=10.0.0.1');
    expect(s).toBe(
      '#!ipxe\necho strata: no assignment matches\necho strata: asking again in 30 s\nsleep 30\nchain http://h:1/v1/boot/ipxe?mac=aa:bb:cc:dd:ee:ff&ip=10.0.0.1\n',
    );
  });
  it('GRUB: (http,host:port) paths and quoting', () => {
    expect(grubPath(`http://10.0.2.2:8080/objects/sha256/${K}`)).toBe(`(http,10.0.2.2:8080)/objects/sha256/${K}`);
    expect(grubPath('http://example.org/x?a=1')).toBe('(http,example.org:80)/x?a=1');
    const s = renderGrub({ ...input, args: [...input.args, "x='y z'"] });
    expect(s).toContain(`linux (http,10.0.2.2:8080)/objects/sha256/${K} strata.server=http://10.0.2.2:8080 strata.commit=${C}`);
    expect(s).toContain(`initrd (http,10.0.2.2:8080)/objects/sha256/${I}`);
    expect(s).toContain(`'x='\\''y z'\\'''`);
    // A failed download falls back to waiting and rebooting (PXE asks again), never to a prompt.
    expect(s).toMatch(/^set fallback=1$/m);
    expect(s).toMatch(
      /menuentry 'strata: the kernel or initrd did not load' \{\n {2}echo '[^']*rebooting in 30 s[^']*'\n {2}sleep 30\n {2}reboot\n\}\n$/,
    );
    const r = renderGrubRetry("it's unknown", 'http://h:1/v1/boot/grub?mac=aa:bb:cc:dd:ee:ff&ip=1.2.3.4');
    // No nested configfile: the grub.cfg's loop asks again once this returns.
    expect(r).toMatch(/sleep 30\n$/);
    expect(r).not.toContain('configfile');
    expect(r).toContain('(http,h:1)/v1/boot/grub?mac=aa:bb:cc:dd:ee:ff&ip=1.2.3.4');
    expect(r).toContain(`echo 'strata: it'\\''s unknown'`);
  });
});

describe('client identity', () => {
  it('normalises MACs to lowercase colon form and refuses non-MACs', () => {
    expect(normalizeMac('52-54-00-AB-CD-EF')).toBe('52:54:00:ab:cd:ef');
    expect(normalizeMac('5254.00ab.cdef')).toBe('52:54:00:ab:cd:ef');
    expect(normalizeMac('525400ABCDEF')).toBe('52:54:00:ab:cd:ef');
    expect(normalizeMac('52:54:00:ab:cd')).toBeNull();
    expect(normalizeMac('../../etc')).toBeNull();
    expect(normalizeMac(undefined)).toBeNull();
  });
  it('normalises IPv4-mapped addresses and refuses junk', () => {
    expect(normalizeIp('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(normalizeIp('10.1.2.3')).toBe('10.1.2.3');
    expect(normalizeIp('10.1.2.300')).toBeNull();
    expect(normalizeIp('evil host')).toBeNull();
  });
});

describe('ranges and validators', () => {
  it('parses single byte ranges', () => {
    expect(parseRange(undefined, 100)).toBeNull();
    expect(parseRange('bytes=0-9', 100)).toEqual({ start: 0, end: 9 });
    expect(parseRange('bytes=90-', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-1000', 100)).toEqual({ start: 0, end: 99 });
    expect(parseRange('bytes=50-1000', 100)).toEqual({ start: 50, end: 99 });
    expect(parseRange('bytes=100-', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-0', 0)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-1,5-6', 100)).toBeNull();
    expect(parseRange('items=0-1', 100)).toBeNull();
    expect(parseRange('bytes=9-1', 100)).toBeNull();
  });
  it('compares ETags', () => {
    expect(etagMatches('"abc"', '"abc"')).toBe(true);
    expect(etagMatches('W/"abc", "x"', '"abc"')).toBe(true);
    expect(etagMatches('*', '"abc"')).toBe(true);
    expect(etagMatches('"abd"', '"abc"')).toBe(false);
    expect(ifRangeAllows(undefined, '"abc"')).toBe(true);
    expect(ifRangeAllows('"abc"', '"abc"')).toBe(true);
    expect(ifRangeAllows('W/"abc"', '"abc"')).toBe(false);
    expect(ifRangeAllows('Wed, 21 Oct 2015 07:28:00 GMT', '"abc"')).toBe(false);
  });
});

describe('errors to HTTP', () => {
  it('maps codes to statuses in one place', () => {
    const cases: Record<string, number> = {
      E_COMMIT_NOT_FOUND: 404,
      E_PROFILE_NOT_FOUND: 404,
      E_OBJECT_NOT_FOUND: 404,
      E_NOT_FOUND: 404,
      E_AMBIGUOUS_REF: 400,
      E_BAD_DIGEST: 400,
      E_BAD_ARGUMENT: 400,
      E_UNSAFE_PATH: 400,
      E_CONFLICT: 409,
      E_STALE_PARENT: 409,
      E_REF_EXISTS: 409,
      E_PROFILE_EXISTS: 409,
      E_TOO_LARGE: 413,
      E_UNAUTHORIZED: 401,
      E_FORBIDDEN: 403,
      E_NO_SPACE: 507,
      E_LOCKED: 423,
      E_CORRUPT: 500,
      E_INTERNAL: 500,
    };
    for (const [code, status] of Object.entries(cases)) expect([code, statusForCode(code)]).toEqual([code, status]);
  });
  it('keeps details and hides internals', () => {
    const e = toHttpError(new StrataError('E_CONFLICT', 'paths conflict', { paths: ['etc/x'] }));
    expect(e).toEqual({ status: 409, body: { error: { code: 'E_CONFLICT', message: 'paths conflict', paths: ['etc/x'] } } });
    const i = toHttpError(new Error('/secret/path exploded'));
    expect(i.status).toBe(500);
    expect(JSON.stringify(i.body)).not.toContain('/secret');
  });
  it('answers a full disk (fs ENOSPC or SQLITE_FULL) with 507 and advice, not an internal error', () => {
    for (const code of ['ENOSPC', 'SQLITE_FULL']) {
      const r = toHttpError(Object.assign(new Error(`${code}: /data/strata.db`), { code }));
      expect(r.status).toBe(507);
      expect(r.body.error.code).toBe('E_NO_SPACE');
      expect(r.body.error.message).toMatch(/no space left.*strata gc/);
      expect(r.body.error.message).not.toContain('/data');
    }
  });
});

describe('ssh command words', () => {
  it('splits like a POSIX shell', () => {
    expect(splitShellWords(`push lab --parent abc -m 'fix the "thing"'`)).toEqual([
      'push',
      'lab',
      '--parent',
      'abc',
      '-m',
      'fix the "thing"',
    ]);
    expect(splitShellWords(`a "b \\"c\\" \\$d" e\\ f '' x`)).toEqual(['a', 'b "c" $d', 'e f', '', 'x']);
    expect(splitShellWords(`  status   p1  `)).toEqual(['status', 'p1']);
    expect(() => splitShellWords(`push 'lab`)).toThrow(/unterminated/);
  });
  it('parses push, status and log; refuses the rest', () => {
    expect(parseSshCommand(['push', 'lab', '--parent', 'abc', '-m', 'hi'])).toEqual({
      cmd: 'push',
      profile: 'lab',
      parent: 'abc',
      message: 'hi',
      pushKey: null,
    });
    expect(parseSshCommand(['push', '--parent=abc', 'lab'])).toEqual({
      cmd: 'push',
      profile: 'lab',
      parent: 'abc',
      message: '',
      pushKey: null,
    });
    expect(() => parseSshCommand(['push', 'lab', '--parent', 'abc', '-m', 'my', 'change'])).toThrow(/unexpected argument change.*quote/);
    expect(() => parseSshCommand(['push', 'lab', '--parent', 'abc', '--force'])).toThrow(/Unknown option '--force'/);
    expect(parseSshCommand(['status', 'p1'])).toEqual({ cmd: 'status', id: 'p1' });
    expect(parseSshCommand(['log', 'lab'])).toEqual({ cmd: 'log', profile: 'lab' });
    expect(() => parseSshCommand(['push', 'lab'])).toThrow(/--parent/);
    expect(() => parseSshCommand(['rm', '-rf', '/'])).toThrow(/unknown command/);
    expect(() => parseSshCommand([])).toThrow(/unknown command/);
  });
});

describe('push ids', () => {
  it('sort by time and do not collide', () => {
    const a = newPushId(1_700_000_000_000);
    const b = newPushId(1_700_000_000_001);
    expect(a < b).toBe(true);
    expect(a).toMatch(PUSH_ID);
    const many = new Set(Array.from({ length: 10000 }, () => newPushId(5)));
    expect(many.size).toBe(10000);
  });
  it('zstd magic', () => {
    expect(looksLikeZstd(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0]))).toBe(true);
    expect(looksLikeZstd(Buffer.from([0x50, 0x2a, 0x4d, 0x18]))).toBe(true);
    expect(looksLikeZstd(Buffer.from('ustar'))).toBe(false);
  });
  it('host:port', () => {
    expect(parseHostPort('127.0.0.1:8080', 'x')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseHostPort(':0', 'x')).toEqual({ host: '0.0.0.0', port: 0 });
    expect(parseHostPort('[::1]:22', 'x')).toEqual({ host: '::1', port: 22 });
    expect(() => parseHostPort('8080', '--http')).toThrow(/HOST:PORT/);
  });
});
