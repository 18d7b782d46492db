/**
 * A small but real SSH push endpoint for the agent's unit tests (spool, retry,
 * watch): an ssh2 Server on 127.0.0.1 that authenticates one public key,
 * receives `push` stdin into files (fsynced), answers with a new push id, and
 * answers `status`. It speaks the docs/design.md protocol; it does not bake.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { generateHostKey } from '../../server/ssh-server.ts';

const { Server, utils } = ssh2;

export interface FakePush {
  id: string;
  argv: string[];
  profile: string;
  parent: string;
  message: string | null;
  file: string;
  bytes: number;
  sha256: string;
}

export interface FakePushServerOptions {
  /** Where received archives go. */
  dir: string;
  /** The allowed client key, as an OpenSSH public key line. */
  authorizedKey: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Count bytes without storing them (benchmarks). */
  discard?: boolean;
  /** Return a reason to refuse a push (exit 1, reason on stderr). */
  refuse?: (argv: string[]) => string | null;
  /** The status line for a push; default: committed <sha256 of the archive>. */
  status?: (push: FakePush, askedTimes: number) => string;
}

export interface FakePushServer {
  port: number;
  pushes: FakePush[];
  /** Every exec command line received, in order. */
  commands: string[];
  hostKeyLine: string;
  close(): Promise<void>;
}

/** POSIX-shell-like split: whitespace, single quotes, double quotes, backslash. */
export function shellSplit(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let has = false;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) throw new Error('unterminated quote');
      cur += s.slice(i + 1, end);
      i = end;
      has = true;
    } else if (ch === '"') {
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        cur += s[i++];
      }
      has = true;
    } else if (ch === '\\' && i + 1 < s.length) {
      cur += s[++i];
      has = true;
    } else if (/\s/.test(ch)) {
      if (has) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (has) out.push(cur);
  return out;
}

export async function startFakePushServer(o: FakePushServerOptions): Promise<FakePushServer> {
  mkdirSync(o.dir, { recursive: true });
  const host = generateHostKey();
  const allowed = utils.parseKey(o.authorizedKey);
  if (allowed instanceof Error) throw allowed;
  const allowedKey = Array.isArray(allowed) ? allowed[0]! : allowed;
  const pushes: FakePush[] = [];
  const commands: string[] = [];
  const asked = new Map<string, number>();

  const server = new Server({ hostKeys: [host.private] }, (client) => {
    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey' || ctx.username !== 'strata') return ctx.reject(['publickey']);
      const same = ctx.key.algo === allowedKey.type && ctx.key.data.equals(allowedKey.getPublicSSH());
      if (!same) return ctx.reject(['publickey']);
      if (ctx.signature && ctx.blob) {
        if (allowedKey.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) return ctx.reject(['publickey']);
      }
      ctx.accept();
    });
    client.on('error', () => {});
    client.on('ready', () => {
      client.on('session', (accept) => {
        const session = accept();
        session.on('exec', (acceptExec, _reject, info) => {
          const ch = acceptExec();
          commands.push(info.command);
          let argv: string[];
          try {
            argv = shellSplit(info.command);
          } catch (e) {
            ch.stderr.write(`${(e as Error).message}\n`);
            ch.exit(2);
            ch.end();
            return;
          }
          if (argv[0] === 'status') {
            const p = pushes.find((x) => x.id === argv[1]);
            if (!p) {
              ch.stderr.write(`no push ${argv[1]}\n`);
              ch.exit(1);
              ch.end();
              return;
            }
            const n = (asked.get(p.id) ?? 0) + 1;
            asked.set(p.id, n);
            ch.write(`${o.status ? o.status(p, n) : `committed ${p.sha256}`}\n`);
            ch.exit(0);
            ch.end();
            return;
          }
          if (argv[0] !== 'push' || argv.length < 4 || argv[2] !== '--parent') {
            ch.stderr.write(`usage: push <profile> --parent <commit> [-m <message>]\n`);
            ch.exit(2);
            ch.end();
            return;
          }
          const why = o.refuse?.(argv) ?? null;
          const id = `p${randomBytes(6).toString('hex')}`;
          const file = join(o.dir, `${id}.tar.zst`);
          const fd = o.discard ? null : openSync(file, 'w');
          const hash = createHash('sha256');
          let bytes = 0;
          ch.on('data', (b: Buffer) => {
            bytes += b.length;
            hash.update(b);
            if (fd !== null) writeSync(fd, b);
          });
          ch.on('end', () => {
            if (fd !== null) {
              fsyncSync(fd);
              closeSync(fd);
            }
            if (why) {
              ch.stderr.write(`${why}\n`);
              ch.exit(1);
              ch.end();
              return;
            }
            const mi = argv.indexOf('-m');
            pushes.push({
              id,
              argv,
              profile: argv[1]!,
              parent: argv[3]!,
              message: mi > 0 ? (argv[mi + 1] ?? '') : null,
              file,
              bytes,
              sha256: hash.digest('hex'),
            });
            ch.write(`receiving\n${id}\n`);
            ch.exit(0);
            ch.end();
          });
        });
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    pushes,
    commands,
    hostKeyLine: host.public,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  };
}
