/**
 * The push protocol over SSH (ssh2 Client); its words live in protocol/ssh-push.ts:
 *   exec `push <profile> --parent <commit> --push-key <key> -m '<message>'`, stdin = zstd tar;
 *   the server prints the push id alone on its last stdout line once the
 *   archive is fsynced, then exits 0; refusals exit non-zero with stderr text.
 *   exec `status <push id>` -> queued | baking | committed <id> [branch <name>] | rejected <why>.
 * The push key (one per spooled push, see spool.ts) makes a resend after a
 * lost answer come back with the id of the push already stored.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { Client, type ClientChannel } from 'ssh2';
import { StrataError } from '../protocol/errors.ts';
import { type PushStatus, parseStatus, pushCommand, shellQuote } from '../protocol/ssh-push.ts';

export interface SshTarget {
  host: string;
  port: number;
  username: string;
  privateKey: Buffer;
  /** Returns false to refuse a host key (pinning / trust on first use). */
  verifyHostKey?: (key: Buffer) => boolean;
  readyTimeoutMs?: number;
}

/** A failure worth retrying (network, server down) vs a refusal (the server said no). */
export class TransientError extends Error {}

export class RefusedError extends StrataError {
  constructor(
    message: string,
    readonly exitCode: number | null,
  ) {
    super('E_FORBIDDEN', message, { exitCode });
  }
}

export function loadPrivateKey(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new StrataError(
      'E_UNAUTHORIZED',
      `cannot read the agent key ${path} (${(e as Error).message}); create it with ssh-keygen -t ed25519 -N '' -f ${path} and enroll the .pub with strata keys add`,
      {},
      { cause: e },
    );
  }
}

function connect(t: SshTarget): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    let settled = false;
    let hostKeyRefused = false;
    c.on('ready', () => {
      settled = true;
      resolve(c);
    });
    c.on('error', (e: Error & { level?: string }) => {
      if (settled) return;
      settled = true;
      c.end();
      if (hostKeyRefused) {
        reject(
          new StrataError(
            'E_UNAUTHORIZED',
            `the host key of ${t.host}:${t.port} is not the one the agent knows: if the server's key really changed, remove its entry from hostKeys in the agent's state.json (or fix "hostKey" in the config)`,
          ),
        );
      } else if (e.level === 'client-authentication') {
        reject(new TransientError(`the server refused the agent key (${e.message}); enroll it with strata keys add`));
      } else reject(new TransientError(`cannot reach ${t.host}:${t.port}: ${e.message}`));
    });
    c.connect({
      host: t.host,
      port: t.port,
      username: t.username,
      privateKey: t.privateKey,
      readyTimeout: t.readyTimeoutMs ?? 20_000,
      keepaliveInterval: 15_000,
      keepaliveCountMax: 4,
      hostVerifier: (key: Buffer) => {
        const ok = t.verifyHostKey ? t.verifyHostKey(key) : true;
        if (!ok) hostKeyRefused = true;
        return ok;
      },
    });
  });
}

interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function exec(c: Client, command: string, feed?: (ch: ClientChannel) => void): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    c.exec(command, (err, ch) => {
      if (err) return reject(new TransientError(`exec failed: ${err.message}`));
      let stdout = '';
      let stderr = '';
      let code: number | null = null;
      ch.on('data', (b: Buffer) => {
        if (stdout.length < 1 << 20) stdout += b.toString();
      });
      ch.stderr.on('data', (b: Buffer) => {
        if (stderr.length < 1 << 16) stderr += b.toString();
      });
      ch.on('exit', (c2: number | null) => {
        code = c2;
      });
      ch.on('close', () => resolve({ code, stdout, stderr }));
      ch.on('error', (e: Error) => reject(new TransientError(e.message)));
      c.on('close', () => resolve({ code, stdout, stderr }));
      if (feed) feed(ch);
      else ch.end();
    });
  });
}

async function withConnection<T>(t: SshTarget, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = await connect(t);
  try {
    return await fn(c);
  } finally {
    c.end();
  }
}

/** Sends one archive; resolves with the server's push id. */
export function pushArchive(
  t: SshTarget,
  archive: string,
  args: { profile: string; parent: string; message?: string; pushKey?: string },
): Promise<string> {
  return withConnection(t, async (c) => {
    let readError: Error | null = null;
    const r = await exec(c, pushCommand(args.profile, args.parent, args.message, args.pushKey), (ch) => {
      const src = createReadStream(archive, { highWaterMark: 1 << 20 });
      src.on('error', (e) => {
        readError = e;
        ch.close();
      });
      src.pipe(ch);
    });
    if (readError) throw readError;
    if (r.code === null) throw new TransientError(`the connection to ${t.host}:${t.port} ended before the server answered`);
    if (r.code !== 0) {
      throw new RefusedError(
        `the server refused the push (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim() || 'no reason given'}`,
        r.code,
      );
    }
    const lines = r.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    const id = lines[lines.length - 1];
    if (!id) throw new TransientError('the server exited 0 without printing a push id');
    return id;
  });
}

/** Asks the server how a push is doing. */
export function queryStatus(t: SshTarget, pushId: string): Promise<PushStatus> {
  return withConnection(t, async (c) => {
    const r = await exec(c, `status ${shellQuote(pushId)}`);
    if (r.code === null) throw new TransientError('the connection ended before the server answered');
    if (r.code !== 0) return { state: 'unknown', text: r.stderr.trim() || `exit ${r.code}` };
    const lines = r.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    return parseStatus(lines[lines.length - 1] ?? '');
  });
}
