/** SSH clients for the server tests: OpenSSH's `ssh` and an ssh2 client, both over loopback. */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import ssh2 from 'ssh2';

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** From sending the command to the exit status (ssh2) or the whole process (OpenSSH). */
  ms: number;
}

export interface KeyPair {
  privateFile: string;
  privateKey: Buffer;
  publicLine: string;
}

export function makeKey(dir: string, name: string): KeyPair {
  const privateFile = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', privateFile]);
  return { privateFile, privateKey: readFileSync(privateFile), publicLine: readFileSync(`${privateFile}.pub`, 'utf8').trim() };
}

export function opensshArgs(port: number, keyFile: string): string[] {
  return [
    '-i',
    keyFile,
    '-p',
    String(port),
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'LogLevel=ERROR',
    '-o',
    'ConnectTimeout=20',
    'strata@127.0.0.1',
  ];
}

export function opensshExec(port: number, keyFile: string, command: string, input?: Buffer): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn('ssh', [...opensshArgs(port, keyFile), command], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('error', reject);
    child.stdin.on('error', () => {});
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - t0 }));
    child.stdin.end(input ?? Buffer.alloc(0));
  });
}

export interface Ssh2Options {
  port: number;
  privateKey?: Buffer;
  password?: string;
  tryKeyboard?: boolean;
}

/** Connects with ssh2; rejects with the auth error if the server refuses. */
export function ssh2Connect(o: Ssh2Options): Promise<InstanceType<typeof ssh2.Client>> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.on('ready', () => resolve(c));
    c.on('error', reject);
    c.on('keyboard-interactive', (_n, _i, _l, _p, finish) => finish(['secret']));
    c.connect({
      host: '127.0.0.1',
      port: o.port,
      username: 'strata',
      privateKey: o.privateKey,
      password: o.password,
      tryKeyboard: o.tryKeyboard,
      readyTimeout: 30_000,
    });
  });
}

export function ssh2Exec(conn: InstanceType<typeof ssh2.Client>, command: string, input?: Buffer): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    conn.exec(command, (err, stream) => {
      if (err) return reject(err);
      let stdout = '';
      let stderr = '';
      let code: number | null = null;
      stream.on('data', (c: Buffer) => (stdout += c));
      stream.stderr.on('data', (c: Buffer) => (stderr += c));
      stream.on('exit', (c: number | null) => (code = c));
      stream.on('close', () => resolve({ code, stdout, stderr, ms: Date.now() - t0 }));
      stream.end(input ?? Buffer.alloc(0));
    });
  });
}

export async function ssh2Run(o: Ssh2Options, command: string, input?: Buffer): Promise<ExecResult> {
  const conn = await ssh2Connect(o);
  try {
    return await ssh2Exec(conn, command, input);
  } finally {
    conn.end();
  }
}

/** zstd-compressed tar of `files` (name -> content), as a client agent would push. */
export function zstdTar(dir: string, files: Record<string, Buffer | string>): Buffer {
  const root = join(dir, `tree-${Math.random().toString(36).slice(2)}`);
  mkdirSync(root, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, name)), { recursive: true });
    writeFileSync(join(root, name), content);
  }
  return execFileSync('sh', ['-c', `tar --xattrs --xattrs-include='*' --owner=0 --group=0 -C '${root}' -cf - . | zstd -q -1 -c`], {
    maxBuffer: 1 << 30,
  });
}

export function lastLine(s: string): string {
  const lines = s.trimEnd().split('\n');
  return lines[lines.length - 1];
}
