/** Runs the real `strata` command (bin/strata) as a child process. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const STRATA = resolve(ROOT, 'bin/strata');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function runStrata(
  args: string[],
  opts: { data: string; input?: Buffer | string; env?: Record<string, string> },
): Promise<RunResult> {
  return new Promise((res, rej) => {
    const p = spawn(STRATA, ['--data', opts.data, ...args], { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => {
      stdout += d;
    });
    p.stderr.on('data', (d) => {
      stderr += d;
    });
    p.on('error', rej);
    p.on('close', (code, signal) => res({ code, signal, stdout, stderr }));
    p.stdin.on('error', () => {
      /* the command may exit before reading all input */
    });
    if (opts.input !== undefined) p.stdin.end(opts.input);
    else p.stdin.end();
  });
}

export async function strataJson<T>(args: string[], opts: { data: string; input?: Buffer | string }): Promise<T> {
  const r = await runStrata([...args, '--json'], opts);
  if (r.code !== 0) throw new Error(`strata ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
