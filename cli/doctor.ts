/**
 * `strata doctor`: are the programs strata drives installed, in versions that
 * do what it relies on? Each missing or too-old tool names its Debian package.
 * The version rules are pure (checkVersion); only runDoctor runs programs.
 */
import { spawn } from 'node:child_process';

export interface ToolSpec {
  name: string;
  args: string[];
  /** Pulls "1.2.3" out of the version output. */
  pattern: RegExp;
  min: string;
  pkg: string;
  why: string;
  /** Only some features need it: missing makes a warning, not a failure. */
  optional?: boolean;
}

export const TOOLS: ToolSpec[] = [
  {
    name: 'tar2sqfs',
    args: ['--version'],
    pattern: /tar2sqfs \(squashfs-tools-ng\) (\d+\.\d+(?:\.\d+)?)/,
    min: '1.1',
    pkg: 'squashfs-tools-ng',
    why: 'bakes pushes and imports into layers',
  },
  {
    name: 'sqfs2tar',
    args: ['--version'],
    pattern: /sqfs2tar \(squashfs-tools-ng\) (\d+\.\d+(?:\.\d+)?)/,
    min: '1.1',
    pkg: 'squashfs-tools-ng',
    why: 'reads layers back (flatten, export, diff)',
  },
  { name: 'zstd', args: ['--version'], pattern: /v(\d+\.\d+\.\d+)/, min: '1.4.0', pkg: 'zstd', why: 'decompresses pushed archives' },
  {
    name: 'xorriso',
    args: ['-version'],
    pattern: /^xorriso (\d+\.\d+\.\d+)/m,
    min: '1.5.0',
    pkg: 'xorriso',
    why: 'reads ISO images (strata import X.iso)',
  },
  {
    name: 'dnsmasq',
    args: ['--version'],
    pattern: /Dnsmasq version (\d+\.\d+)/,
    min: '2.80',
    pkg: 'dnsmasq',
    why: 'proxyDHCP + TFTP for strata serve --pxe',
    optional: true,
  },
];

export interface ToolReport {
  name: string;
  status: 'ok' | 'missing' | 'too old' | 'unknown version';
  version: string | null;
  min: string;
  pkg: string;
  why: string;
  optional: boolean;
}

export interface DoctorReport {
  ok: boolean;
  tools: ToolReport[];
  /** The apt-get line that fixes every problem, or null. */
  install: string | null;
}

/** -1, 0, 1 like a comparator, on dotted numbers ("1.10" > "1.9"). */
export function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d) return Math.sign(d);
  }
  return 0;
}

/** What the output of `TOOL --version` (null: the program is not there) says about it. */
export function checkVersion(spec: ToolSpec, output: string | null): ToolReport {
  const base = { name: spec.name, min: spec.min, pkg: spec.pkg, why: spec.why, optional: !!spec.optional };
  if (output === null) return { ...base, status: 'missing', version: null };
  const version = spec.pattern.exec(output)?.[1] ?? null;
  if (!version) return { ...base, status: 'unknown version', version: null };
  return { ...base, status: compareVersions(version, spec.min) < 0 ? 'too old' : 'ok', version };
}

export function summarize(tools: ToolReport[]): DoctorReport {
  const bad = tools.filter((t) => t.status === 'missing' || t.status === 'too old');
  const pkgs = [...new Set(bad.map((t) => t.pkg))];
  return {
    ok: bad.every((t) => t.optional),
    tools,
    install: pkgs.length ? `apt-get install --no-install-recommends ${pkgs.join(' ')}` : null,
  };
}

/** Runs PROGRAM ARGS; its stdout+stderr, or null when it cannot be started. */
function versionOutput(name: string, args: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    let text = '';
    const child = spawn(name, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d: Buffer) => (text += d));
    child.stderr.on('data', (d: Buffer) => (text += d));
    child.on('error', () => resolve(null));
    child.on('close', () => resolve(text));
  });
}

export async function runDoctor(tools: ToolSpec[] = TOOLS): Promise<DoctorReport> {
  const outputs = await Promise.all(tools.map((t) => versionOutput(t.name, t.args)));
  return summarize(tools.map((t, i) => checkVersion(t, outputs[i])));
}

export function formatDoctor(r: DoctorReport): string {
  const lines = r.tools.map((t) => {
    const state = t.status === 'ok' ? `ok ${t.version}` : t.status === 'too old' ? `too old: ${t.version} < ${t.min}` : t.status;
    return `${t.name.padEnd(9)} ${state.padEnd(22)} ${t.why}${t.optional && t.status !== 'ok' ? ' (optional)' : ''}`;
  });
  if (r.install) lines.push('', `to fix: ${r.install}`);
  lines.push(r.ok ? 'strata can run here.' : 'strata cannot run here until the tools above are installed.');
  return lines.join('\n');
}
