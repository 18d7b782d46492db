/**
 * A file rewritten while the snapshot reads it is never committed torn:
 * either the archive holds one complete version, or the commit is refused
 * with a message that says which file kept changing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runAgent } from './helpers/agent-overlay.ts';
import { ERRORS } from '../protocol/errors.ts';

let dir: string;
const writers: ChildProcess[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'strata-agent-torn-'));
});
afterAll(() => {
  for (const w of writers) if (w.exitCode === null) w.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const BLOCK = 4096;
/**
 * Writer: rewrites `file` forever with version v in every 4 KiB block.
 * mode 'truncate' = open(O_TRUNC)+write (size changes), 'inplace' = pwrite over the old bytes (size never changes).
 */
function startWriter(file: string, size: number, mode: 'truncate' | 'inplace'): ChildProcess {
  const code = `
    const fs = require('fs');
    const [file, size, mode] = [process.argv[1], Number(process.argv[2]), process.argv[3]];
    const block = (v) => Buffer.from(String(v).padStart(16, '0').repeat(${BLOCK} / 16));
    fs.writeFileSync(file, Buffer.concat(Array.from({ length: size / ${BLOCK} }, () => block(0))));
    process.stdout.write('ready\\n');
    for (let v = 1; ; v++) {
      const b = block(v);
      if (mode === 'truncate') { fs.writeFileSync(file, Buffer.concat(Array.from({ length: size / ${BLOCK} }, () => b))); continue; }
      const fd = fs.openSync(file, 'r+');
      for (let off = 0; off < size; off += ${BLOCK}) fs.writeSync(fd, b, 0, ${BLOCK}, off);
      fs.closeSync(fd);
    }`;
  const w = spawn(process.execPath, ['-e', code, file, String(size), mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  writers.push(w);
  return w;
}

/** Versions found in a file's blocks, and whether its length is right. */
function versionsOf(data: Buffer, size: number): { versions: Set<string>; complete: boolean } {
  const versions = new Set<string>();
  for (let off = 0; off < data.length; off += BLOCK) versions.add(data.subarray(off, off + 16).toString());
  return { versions, complete: data.length === size };
}

async function commitsWhileWriting(mode: 'truncate' | 'inplace', size: number, rounds: number) {
  const upper = join(dir, `u-${mode}-${size}`);
  mkdirSync(join(upper, 'var'), { recursive: true });
  writeFileSync(join(upper, 'var/other'), 'stable\n');
  const state = join(dir, `s-${mode}-${size}`);
  const w = startWriter(join(upper, 'var/hot'), size, mode);
  await new Promise<void>((r) => w.stdout!.once('data', () => r()));
  const outcomes: string[] = [];
  for (let i = 0; i < rounds; i++) {
    const r = await runAgent([
      '--upper',
      upper,
      '--state-dir',
      state,
      '--server',
      '127.0.0.1',
      '--cmdline',
      '',
      'commit',
      '-m',
      `round ${i}`,
      '--profile',
      'lab',
      '--parent',
      'b'.repeat(64),
      '--no-send',
    ]);
    if (r.code === 0) {
      const id = r.stdout.trim();
      const data = execFileSync('sh', ['-c', `zstd -dc '${join(state, 'spool', `${id}.tar.zst`)}' | tar -xOf - ./var/hot`], {
        maxBuffer: 1 << 28,
      });
      const v = versionsOf(data, size);
      expect(v.complete, `round ${i}: ${data.length} bytes`).toBe(true);
      expect([...v.versions], `round ${i}: torn file in the archive`).toHaveLength(1);
      outcomes.push('one version');
    } else {
      expect(r.code, r.stderr).toBe(ERRORS.E_BAD_SOURCE.exit);
      expect(r.stderr).toMatch(/var\/hot kept changing while it was being read.*refused/);
      outcomes.push('refused');
    }
  }
  w.kill('SIGKILL');
  await new Promise((r) => w.once('close', r));
  // Once the writer stops, the file commits.
  const r = await runAgent([
    '--upper',
    upper,
    '--state-dir',
    state,
    '--server',
    '127.0.0.1',
    '--cmdline',
    '',
    'commit',
    '-m',
    'quiet',
    '--profile',
    'lab',
    '--parent',
    'b'.repeat(64),
    '--no-send',
  ]);
  expect(r.code, r.stderr).toBe(0);
  expect(readdirSync(join(state, 'spool')).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
  return outcomes;
}

describe('a file rewritten during the snapshot', () => {
  it('truncate-and-rewrite (4 MiB, read into memory): one complete version or a refusal', async () => {
    const o = await commitsWhileWriting('truncate', 4 * 1024 * 1024, 4);
    expect(o).toHaveLength(4);
  });
  it('same-size rewrite in place (4 MiB): one complete version or a refusal', async () => {
    const o = await commitsWhileWriting('inplace', 4 * 1024 * 1024, 4);
    expect(o).toHaveLength(4);
  });
  it('a large file (24 MiB, streamed) rewritten: one complete version or a refusal', async () => {
    const o = await commitsWhileWriting('truncate', 24 * 1024 * 1024, 3);
    expect(o).toHaveLength(3);
  });
});
