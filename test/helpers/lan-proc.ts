/**
 * A `strata` command run inside a test network namespace (test/helpers/test-net.ts),
 * its stderr kept line by line so a test can wait for what the server logs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { STRATA } from './cli.ts';

export interface Proc {
  child: ChildProcess;
  lines: string[];
  stdout: string;
  waitFor(re: RegExp, ms?: number, from?: number): Promise<RegExpExecArray>;
  exited: Promise<number | null>;
}

export function strataInNetns(netns: string, args: string[]): Proc {
  const child = spawn('ip', ['netns', 'exec', netns, STRATA, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = {
    child,
    lines: [],
    stdout: '',
    exited: new Promise((r) => child.once('exit', (c) => r(c))),
    waitFor(re, ms = 60_000, from = 0) {
      return new Promise((resolve, reject) => {
        const started = Date.now();
        const tick = () => {
          for (const l of p.lines.slice(from)) {
            const m = re.exec(l);
            if (m) return resolve(m);
          }
          if (child.exitCode !== null || Date.now() - started > ms)
            return reject(new Error(`no line matching ${re}; got:\n${p.lines.slice(-40).join('\n')}`));
          setTimeout(tick, 100);
        };
        tick();
      });
    },
  };
  let partial = '';
  child.stderr!.on('data', (d: Buffer) => {
    partial += d.toString();
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    p.lines.push(...parts);
  });
  child.stdout!.on('data', (d: Buffer) => {
    p.stdout += d.toString();
  });
  return p;
}

export async function stopProc(p: Proc | undefined): Promise<void> {
  if (!p || p.child.exitCode !== null) return;
  p.child.kill('SIGTERM');
  await p.exited;
}
