/**
 * docs/cli.md tells the truth about the `strata` command: its command
 * reference is what scripts/gen-cli-doc.ts makes from cli/main.ts today, and
 * its exit-code table is what cli/exit-codes.ts does.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exitCodeFor } from '../cli/exit-codes.ts';
import { EXIT } from '../protocol/errors.ts';
import { type ErrorCode, StrataError } from '../store/errors.ts';
import { ROOT } from './helpers/cli.ts';

const TSX = join(ROOT, 'node_modules/tsx/dist/esm/index.mjs');
const GEN = join(ROOT, 'scripts/gen-cli-doc.ts');
const DOC = join(ROOT, 'docs/cli.md');
const tmp = mkdtempSync(join(tmpdir(), 'strata-cli-doc-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function node(args: string[], env: Record<string, string | undefined> = {}) {
  return spawnSync(process.execPath, ['--import', TSX, ...args], { cwd: tmp, encoding: 'utf8', env: { ...process.env, ...env } });
}

describe('docs/cli.md command reference', () => {
  it('is what the generator makes from cli/main.ts now, whatever this machine sets STRATA_DATA or USER to', () => {
    const r = node([GEN, '--check'], { STRATA_DATA: '/srv/elsewhere', USER: 'someone-else' });
    expect(r.stderr).toBe('');
    expect(r.status, 'run npm run docs:cli and commit docs/cli.md').toBe(0);
  });

  it('lists the options a user reaches for', () => {
    const doc = readFileSync(DOC, 'utf8');
    for (const flag of ['--http-workers <n>', '--max-push-size <bytes>', '--author <name>', '--public-url <url>', '--dry-run'])
      expect(doc).toContain(`\`${flag}\``);
  });

  it('a doc that lags behind the CLI fails the check, and the generator brings it up to date without touching the hand-written text', () => {
    const stale = join(tmp, 'cli.md');
    const doc = readFileSync(DOC, 'utf8');
    writeFileSync(stale, doc.replace(/^\| `--max-push-size <bytes>`.*\n/m, ''));
    expect(readFileSync(stale, 'utf8')).not.toBe(doc);

    const check = node([GEN, '--check', '--file', stale]);
    expect(check.status).toBe(1);
    expect(check.stderr).toMatch(/out of date.*npm run docs:cli/);

    const fix = node([GEN, '--file', stale]);
    expect(fix.status).toBe(0);
    expect(readFileSync(stale, 'utf8')).toBe(doc);
  });

  it('a doc without the markers gets a clear error and is left as it was', () => {
    const bare = join(tmp, 'bare.md');
    writeFileSync(bare, '# no markers\n');
    const r = node([GEN, '--file', bare]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/lacks the markers/);
    expect(readFileSync(bare, 'utf8')).toBe('# no markers\n');
  });

  it('importing cli/main.ts builds the program without running it', () => {
    const data = join(tmp, 'never-made');
    const probe = join(tmp, 'probe.mts');
    writeFileSync(
      probe,
      `const { buildProgram } = await import(${JSON.stringify(join(ROOT, 'cli/main.ts'))});\n` +
        'console.log(buildProgram().commands.map((c) => c.name()).join(" "));\n',
    );
    // Were the CLI to parse this process's argv, `init --data DIR` would create DIR.
    const r = node([probe, 'init', '--data', data]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/\binit\b.*\bserve\b/);
    expect(existsSync(data)).toBe(false);
  });
});

describe('docs/cli.md exit codes', () => {
  const doc = readFileSync(DOC, 'utf8');
  const table = doc.slice(doc.indexOf('## Exit codes'));
  const rows = [...table.matchAll(/^\| (\d+) +\|[^|]*\|([^\n]*)\|$/gm)].map((m) => ({
    exit: Number(m[1]),
    codes: [...m[2]!.matchAll(/`(E_[A-Z_]+)`/g)].map((c) => c[1] as ErrorCode),
  }));

  it('has a row for each exit code the CLI uses', () => {
    // Success plus every exit code of the error table (protocol/errors.ts).
    expect(rows.map((r) => r.exit)).toEqual([0, ...Object.values(EXIT)].sort((a, b) => a - b));
  });

  it('says for every error code the exit code the CLI gives', () => {
    const listed = rows.flatMap((r) => r.codes.map((code) => ({ code, documented: r.exit })));
    expect(listed.length).toBeGreaterThan(20);
    const actual = listed.map(({ code }) => ({ code, documented: exitCodeFor(new StrataError(code, 'x')) }));
    expect(actual).toEqual(listed);
  });
});
