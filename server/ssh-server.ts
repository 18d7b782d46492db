/**
 * The SSH endpoint: public-key auth against the store's keys, exec commands
 * `push`, `status` and `log`. A push is streamed to incoming/<id>.tar.zst.tmp,
 * fsynced, renamed and recorded before its id is printed: once the client has
 * the id, the archive survives a crash. Baking happens later (baker.ts).
 *
 * `push ... --push-key KEY` (optional, client-chosen) makes a push
 * idempotent: when the answer to a stored push is lost with the connection,
 * the client's retry with the same key is answered with the stored push's id
 * instead of storing and baking the change a second time.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream';
import ssh2 from 'ssh2';
import type { AuthContext, Connection, ServerChannel } from 'ssh2';
import type { Store } from '../store/store.ts';
import type { Push, SshKey } from '../store/types.ts';
import { StrataError, isStrataError, wrapIoError } from '../store/errors.ts';
import { DEFAULT_MAX_BUFFERED, guardChannel, type GuardedChannel } from './channel-guard.ts';
import type { EventHub } from './events.ts';
import { newPushId } from '../protocol/ids.ts';
import { incomingArchive, incomingTemp } from '../protocol/push-incoming.ts';
import { formatLogLine, formatPushStatus, parseSshCommand, splitShellWords, USAGE, type SshCommand } from '../protocol/ssh-push.ts';
import { fsyncDir } from '../protocol/durable.ts';
import { Enrollment, type PendingKey } from '../store/enrollment.ts';
import { pendingRefusal, pendingStatusLine } from './ssh-enroll.ts';
import { serverLimits, type ServerLimits } from './limits.ts';
import { SshConnectionLimits } from './ssh-limits.ts';
import { UploadLedger, type Upload } from './push-budget.ts';
import { drain, PushMeter } from './push-meter.ts';

export { looksLikeZstd } from './push-meter.ts';

const { Server, utils } = ssh2;

export const HOST_KEY_FILE = 'ssh_host_ed25519';
export const DEFAULT_MAX_PUSH_BYTES = 4 * 1024 ** 3;

/**
 * The endpoint's host key, generated once: clients pin it in known_hosts, so
 * it must never change. Written to a temp file, fsynced, then linked into
 * place without overwriting (two servers starting at once keep one key).
 */
/**
 * A new ed25519 key pair in OpenSSH format. ssh2's generator occasionally
 * (about 1 in 300 here) writes a key that its own parser then rejects
 * ("Malformed OpenSSH private key"): only a key that parses is returned.
 */
export function generateHostKey(comment = 'strata host key'): { private: string; public: string } {
  for (let i = 0; i < 20; i++) {
    const pair = utils.generateKeyPairSync('ed25519', { comment });
    if (!(utils.parseKey(pair.private) instanceof Error)) return pair;
  }
  throw new StrataError('E_INTERNAL', 'could not generate a usable SSH host key');
}

export async function loadOrCreateHostKey(dataDir: string): Promise<Buffer> {
  const file = path.join(dataDir, HOST_KEY_FILE);
  try {
    return await fs.promises.readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const pair = generateHostKey();
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await fs.promises.open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(pair.private);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fs.promises.link(tmp, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    await fs.promises.unlink(tmp).catch(() => {});
  }
  await fs.promises.writeFile(`${file}.pub`, `${pair.public}\n`, { mode: 0o644 }).catch(() => {});
  await fsyncDir(dataDir);
  return fs.promises.readFile(file);
}

export interface SshServerDeps {
  store: Store;
  events?: EventHub;
  hostKey: Buffer;
  /** Refuse pushes whose compressed archive is bigger than this. */
  maxPushBytes?: number;
  /** Cap of unread bytes per channel (ssh2 #1505 mitigation). */
  maxChannelBuffered?: number;
  /** Called once a push is recorded (the baker queues it at once instead of waiting for the watcher). */
  onPush?: (id: string) => void;
  log?: (msg: string) => void;
  /** Connection limits (read at each use: a reload may change them); defaults when absent. */
  limits?: ServerLimits;
}

function mayUse(key: SshKey, profile: string): boolean {
  return key.admin || key.profiles.includes(profile);
}

export function createSshServer(deps: SshServerDeps): InstanceType<typeof Server> {
  const { store } = deps;
  const log = deps.log ?? (() => {});
  // Read per push: `systemctl reload` may change the store's limit while serving.
  const maxPush = (): number => deps.maxPushBytes ?? store.config.maxPushBytes ?? DEFAULT_MAX_PUSH_BYTES;

  const connections = new Set<Connection>();
  const enrollment = new Enrollment(store);
  const limits = new SshConnectionLimits(deps.limits ?? serverLimits(), log);
  const ledger = new UploadLedger(store);
  const server = new Server({ hostKeys: [deps.hostKey], ident: 'strata' }, (client: Connection, info) => {
    let key: SshKey | null = null;
    // An unknown key that proved it holds its private half: it may only push (held until an admin approves it).
    let unknown: { algo: string; data: Buffer } | null = null;
    const env: Record<string, string> = {};
    connections.add(client);
    client.on('close', () => connections.delete(client));

    client.on('authentication', (ctx: AuthContext) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
      let found: SshKey | null = null;
      try {
        found = store.findKey(ctx.key.algo, ctx.key.data);
      } catch {
        found = null;
      }
      if (!found) {
        if (!ctx.signature || !ctx.blob) return ctx.accept();
        const parsed = utils.parseKey(ctx.key.data);
        if (parsed instanceof Error || !parsed.verify(ctx.blob, ctx.signature, ctx.hashAlgo)) return ctx.reject(['publickey']);
        unknown = { algo: ctx.key.algo, data: Buffer.from(ctx.key.data) };
        return ctx.accept();
      }
      if (ctx.signature && ctx.blob) {
        // The client proves it holds the private key; without a signature it only asks whether the key would do.
        const parsed = utils.parseKey(ctx.key.data);
        if (parsed instanceof Error || !parsed.verify(ctx.blob, ctx.signature, ctx.hashAlgo)) return ctx.reject(['publickey']);
        key = found;
        return ctx.accept();
      }
      if (ctx.signature) return ctx.reject(['publickey']);
      return ctx.accept();
    });

    client.on('ready', () => {
      const channels = limits.authenticated(client);
      client.on('session', (acceptSession, rejectSession) => {
        if (!channels.mayOpen()) {
          log(`ssh: refused a channel from ${info.ip}: the connection has the most channels open it may`);
          return rejectSession();
        }
        const session = acceptSession();
        channels.opened(session);
        session.on('pty', (accept) => accept?.());
        session.on('env', (accept, _reject, e) => {
          // The kit agent says who it is (STRATA_MAC, STRATA_HOSTNAME) for the pending-key list.
          if (/^STRATA_[A-Z]+$/.test(e.key) && e.val.length <= 256) env[e.key] = e.val;
          accept?.();
        });
        session.on('shell', (accept) => {
          const ch = accept();
          ch.stderr.write(`strata: no interactive shell here\n${USAGE}\n`);
          ch.exit(2);
          ch.end();
        });
        session.on('subsystem', (_accept, reject) => reject());
        session.on('exec', (accept, _reject, execInfo) => {
          const ch = accept();
          const guard = guardChannel(ch, {
            maxBuffered: deps.maxChannelBuffered ?? DEFAULT_MAX_BUFFERED,
            onViolation: (why) => {
              log(`ssh: closing a connection: ${why}`);
              try {
                ch.stderr.write(`strata: ${why}; closing\n`);
              } catch {
                /* already gone */
              }
              ch.destroy();
              client.end();
            },
          });
          const pending = key
            ? null
            : enrollment.notePending({
                algo: unknown!.algo,
                keyData: unknown!.data,
                mac: env.STRATA_MAC,
                hostname: env.STRATA_HOSTNAME,
                ip: info.ip,
              });
          void runExec(ch, guard, execInfo.command, key, pending).catch((e) => log(`ssh: exec failed: ${String(e)}`));
        });
      });
    });
    client.on('error', (e) => log(`ssh: connection error: ${e.message}`));
  });

  const finish = (ch: ServerChannel, code: number, out?: string, err?: string): void => {
    if (ch.destroyed) return;
    if (out) ch.write(out);
    if (err) ch.stderr.write(err);
    ch.exit(code);
    ch.end();
  };

  async function runExec(
    ch: ServerChannel,
    guard: GuardedChannel,
    command: string,
    key: SshKey | null,
    pending: PendingKey | null,
  ): Promise<void> {
    let cmd: SshCommand;
    try {
      cmd = parseSshCommand(splitShellWords(command));
    } catch (e) {
      ch.resume(); // nothing will read stdin: do not let it pile up
      return finish(ch, 2, undefined, `strata: ${(e as Error).message}\n`);
    }
    try {
      if (cmd.cmd === 'push') return await runPush(ch, guard, cmd, key, pending);
      ch.resume();
      if (!key) {
        const held = cmd.cmd === 'status' ? enrollment.findHeld(cmd.id) : null;
        if (held && held.keyId === pending!.id) return finish(ch, 0, `${pendingStatusLine(pending!, held)}\n`);
        throw pendingRefusal(pending!);
      }
      if (cmd.cmd === 'status') {
        const p = store.getPush(cmd.id);
        if (!mayUse(key, p.profile)) throw new StrataError('E_FORBIDDEN', `key ${key.name} may not see pushes to profile ${p.profile}`);
        return finish(ch, 0, `${formatPushStatus(p)}\n`);
      }
      if (!mayUse(key, cmd.profile)) throw new StrataError('E_FORBIDDEN', `key ${key.name} may not read profile ${cmd.profile}`);
      const lines = store.log(cmd.profile).map((c) => `${formatLogLine(c)}\n`);
      return finish(ch, 0, lines.join(''));
    } catch (err) {
      ch.resume(); // a refused push's stdin is never read: drop it rather than let it fill the window
      // A full disk (the upload's file, its fsync, SQLite) is the admin's to fix, and the client's to hear about.
      const e = wrapIoError(err, `storing data for ${cmd.cmd}`);
      const msg = isStrataError(e) ? e.message : 'internal error; see the server log';
      if (!isStrataError(e)) log(`ssh: ${String((e as Error).stack ?? e)}`);
      return finish(ch, 1, undefined, `strata: ${msg}\n`);
    }
  }

  async function runPush(
    ch: ServerChannel,
    guard: GuardedChannel,
    cmd: Extract<SshCommand, { cmd: 'push' }>,
    key: SshKey | null,
    pending: PendingKey | null,
  ): Promise<void> {
    const { pushKey } = cmd;
    if (key && !mayUse(key, cmd.profile))
      throw new StrataError(
        'E_FORBIDDEN',
        `key ${key.name} may not push to profile ${cmd.profile}; an admin can allow it with strata keys add NAME FILE --profile ${cmd.profile}`,
      );
    store.getProfile(cmd.profile);
    if (pushKey !== null && key) {
      // A retry of a push already stored: its answer was lost, not its archive.
      // Read the upload to EOF (a client still writing should not see its
      // channel vanish) and answer the stored id exactly like a fresh push.
      const existing = store.findPushByKey(key.name, cmd.profile, pushKey);
      if (existing) {
        await drain(ch, maxPush());
        log(`ssh: push key ${pushKey} of ${key.name} already stored as ${existing.id}; answered it again`);
        return finish(ch, 0, `${existing.id}\n`);
      }
    }
    const parent = store.pushParent(cmd.profile, cmd.parent);
    // Held until the upload is stored or refused: caps parallel uploads per key, then quotas and the reserve.
    const slotKey = key ? key.name : `pending:${pending!.fingerprint}`;
    const release = limits.pushSlot(slotKey);
    let upload: Upload;
    try {
      upload = await ledger.open(slotKey);
    } catch (e) {
      release();
      throw e;
    }
    try {
      return await storePush(ch, guard, cmd, key, pending, parent, upload);
    } finally {
      upload.close();
      release();
    }
  }

  async function storePush(
    ch: ServerChannel,
    guard: GuardedChannel,
    cmd: Extract<SshCommand, { cmd: 'push' }>,
    key: SshKey | null,
    pending: PendingKey | null,
    parent: string,
    upload: Upload,
  ): Promise<void> {
    const { pushKey } = cmd;
    const id = newPushId();
    const dir = store.incomingDir;
    const tmp = incomingTemp(dir, id);
    const final = key ? incomingArchive(dir, id) : enrollment.heldArchivePath(id);
    const fh = await fs.promises.open(tmp, 'wx', 0o600);
    const meter = new PushMeter(maxPush(), upload);
    // A numeric fd, not the FileHandle: a stream holding a FileHandle makes fh.close() wait for the stream forever.
    const out = fs.createWriteStream('', { fd: fh.fd, autoClose: false, highWaterMark: 4 * 1024 * 1024 });
    try {
      // Not pipeline(ch, ...): on a refusal it would destroy the channel before we can say why.
      ch.pipe(meter);
      await new Promise<void>((resolve, reject) => pipeline(meter, out, (err) => (err ? reject(err) : resolve())));
      if (!guard.cleanEof) throw new StrataError('E_BAD_TAR', 'the upload ended without EOF (connection lost); push again');
      // Durability: data, then the name, then the record; only then the id.
      await fh.sync();
      await fh.close();
      await fs.promises.rename(tmp, final);
      await fsyncDir(dir);
    } catch (e) {
      await fh.close().catch(() => {});
      await fs.promises.unlink(tmp).catch(() => {});
      ch.unpipe(meter);
      ch.resume();
      throw e;
    }
    if (!key) {
      // From a pending key: kept, not baked, until an admin approves the key.
      const held = enrollment.hold({
        id,
        keyId: pending!.id,
        profile: cmd.profile,
        parent,
        message: cmd.message,
        pushKey,
        bytes: meter.bytes,
      });
      if (held.id !== id) await fs.promises.unlink(final).catch(() => {});
      const released = enrollment.autoApprove(pending!.id, cmd.profile);
      if (released) {
        log(`ssh: key ${pending!.fingerprint} from ${pending!.ip} approved by the enroll CIDR of ${cmd.profile}`);
        for (const r of released) deps.onPush?.(r);
      } else log(`ssh: push ${held.id} from pending key ${pending!.id} (${pending!.fingerprint}) held until approved`);
      return finish(ch, 0, `${held.id}\n`);
    }
    let stored: Push;
    try {
      stored = store.createPush({ id, profile: cmd.profile, parent, message: cmd.message, author: key.name, bytes: meter.bytes, pushKey });
    } catch (e) {
      await fs.promises.unlink(final).catch(() => {});
      throw e;
    }
    if (stored.id !== id) {
      // Another upload with the same key was recorded while this one streamed: keep that one only.
      await fs.promises.unlink(final).catch(() => {});
      log(`ssh: push key ${pushKey} of ${key.name} was stored meanwhile as ${stored.id}; dropped the second upload`);
      return finish(ch, 0, `${stored.id}\n`);
    }
    deps.events?.emit('push', { id, profile: cmd.profile, state: 'queued', author: key.name, bytes: meter.bytes });
    deps.onPush?.(id);
    finish(ch, 0, `${id}\n`);
  }

  limits.attach(server);
  // net.Server.close waits for open connections; shutting down should not wait for idle clients.
  const origClose = server.close.bind(server);
  server.close = ((cb?: (err?: Error) => void) => {
    origClose(cb);
    for (const c of connections) c.end();
    return server;
  }) as typeof server.close;
  return server;
}
