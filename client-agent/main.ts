/**
 * strata-agent: commit / send / status / diff / watch (commander).
 * `bin/strata-agent` runs this file through tsx, or its build (dist/strata-agent.js).
 */
import { Command } from 'commander';
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exitCodeFor, isStrataError } from '../protocol/errors.ts';
import { loadConfig, type AgentConfig, type ConfigFlags } from './config.ts';
import { commitToSpool } from './commit.ts';
import { computeDiff } from './diff.ts';
import { makeTarget, sendPending, senderPid } from './sender.ts';
import { listSpool, requeueFailed } from './spool.ts';
import { queryStatus } from './ssh-push.ts';
import { loadState, updateState } from './state.ts';
import { watchAndCommit } from './watch.ts';

const GLOBAL_FLAGS: Array<[keyof ConfigFlags, string]> = [
  ['config', '--config'],
  ['server', '--server'],
  ['sshPort', '--ssh-port'],
  ['key', '--key'],
  ['upper', '--upper'],
  ['stateDir', '--state-dir'],
  ['spoolDir', '--spool-dir'],
  ['cmdline', '--cmdline'],
];

const log = (msg: string) => process.stderr.write(`strata-agent: ${msg}\n`);

function globalFlags(cmd: Command): ConfigFlags {
  return cmd.optsWithGlobals<ConfigFlags>();
}

/** Starts a detached `strata-agent send` that outlives this command (logs to <state>/send.log). */
function spawnSender(flags: ConfigFlags, cfg: AgentConfig): number | undefined {
  mkdirSync(cfg.stateDir, { recursive: true });
  const logFd = openSync(join(cfg.stateDir, 'send.log'), 'a', 0o600);
  const args = [...process.execArgv, fileURLToPath(import.meta.url)];
  for (const [key, flag] of GLOBAL_FLAGS) {
    const v = flags[key];
    if (v !== undefined) args.push(flag, String(v));
  }
  args.push('send');
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  child.unref();
  return child.pid;
}

function print(json: boolean, data: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : text + (text.endsWith('\n') || text === '' ? '' : '\n'));
}

export function buildProgram(): Command {
  const program = new Command('strata-agent')
    .description("commit a netbooted client's overlay upper dir and push it to the strata server over SSH")
    .option('--config <file>', 'agent config (default /etc/strata/agent.json or $STRATA_AGENT_CONFIG)')
    .option('--server <host>', 'server host, or its http://HOST:PORT (default: strata.server on the kernel command line)')
    .option('--ssh-port <port>', 'server SSH port (default 2222)')
    .option('--key <file>', 'agent private key (default /etc/strata/agent_key)')
    .option('--upper <dir>', 'overlay upper dir (default /.rw/upper)')
    .option('--state-dir <dir>', 'agent state dir')
    .option('--spool-dir <dir>', 'spool dir (default on the backup disk, else /.rw/strata-spool)')
    .option('--cmdline <text>', 'use this instead of /proc/cmdline')
    .option('--json', 'machine-readable output');

  program
    .command('commit')
    .description('snapshot the upper dir into the spool; it is sent in the background')
    .requiredOption('-m, --message <msg>', 'commit message')
    .option('--profile <name>', 'profile to push to (default strata.profile)')
    .option('--parent <commit>', 'the booted commit (default /run/strata/commit or strata.commit)')
    .option('--level <n>', 'zstd level (default 3)')
    .option('--no-send', 'only spool; do not start a background sender')
    .action(async (opts: { message: string; profile?: string; parent?: string; level?: string; send: boolean }, cmd: Command) => {
      const flags = { ...globalFlags(cmd), profile: opts.profile, parent: opts.parent, level: opts.level };
      const cfg = loadConfig(flags);
      const r = await commitToSpool(cfg, { message: opts.message, log });
      let sender: number | undefined;
      if (opts.send) sender = spawnSender(globalFlags(cmd), cfg);
      const g = globalFlags(cmd) as { json?: boolean };
      print(
        !!g.json,
        { spoolId: r.meta.id, bytes: r.meta.bytes, entries: r.meta.entries, senderPid: sender ?? null, warnings: r.snapshot.warnings },
        r.meta.id,
      );
    });

  program
    .command('send')
    .description('send spooled pushes (retries with backoff until the spool is empty)')
    .option('--once', 'try each push once instead of retrying')
    .option('--retry-failed', 'queue pushes the server refused again first')
    .action(async (opts: { once?: boolean; retryFailed?: boolean }, cmd: Command) => {
      const cfg = loadConfig(globalFlags(cmd));
      if (opts.retryFailed) for (const id of requeueFailed(cfg.spoolDir)) log(`queued ${id} again`);
      const ac = new AbortController();
      process.once('SIGTERM', () => ac.abort());
      const r = await sendPending(cfg, { attempts: opts.once ? 1 : Infinity, log, signal: ac.signal });
      if (r === null) log(`another sender is running (pid ${senderPid(cfg) ?? '?'}); it will send these`);
      const g = globalFlags(cmd) as { json?: boolean };
      print(!!g.json, r ?? { running: senderPid(cfg) }, (r?.sent ?? []).map((p) => `${p.spoolId} ${p.pushId}`).join('\n'));
      if (r && r.pending > 0) process.exitCode = 1;
    });

  program
    .command('status')
    .description('booted commit, pending and sent pushes with their server status')
    .option('--offline', 'do not ask the server')
    .action(async (opts: { offline?: boolean }, cmd: Command) => {
      const cfg = loadConfig(globalFlags(cmd));
      const pending = listSpool(cfg.spoolDir);
      let state = loadState(cfg.stateDir);
      const warnings: string[] = [];
      if (!opts.offline && state.pushes.some((p) => p.status !== 'committed' && p.status !== 'rejected')) {
        try {
          const target = makeTarget(cfg);
          const answers = new Map<string, Awaited<ReturnType<typeof queryStatus>>>();
          for (const p of state.pushes)
            if (p.status !== 'committed' && p.status !== 'rejected') answers.set(p.pushId, await queryStatus(target, p.pushId));
          state = updateState(cfg.stateDir, (s) => {
            for (const rec of s.pushes) {
              const a = answers.get(rec.pushId);
              if (!a || a.state === 'unknown') continue;
              rec.status = a.state;
              if (a.state === 'committed') {
                rec.commit = a.commit;
                if (a.branch) rec.branch = a.branch;
              }
              if (a.state === 'rejected') rec.why = a.why;
            }
          });
        } catch (e) {
          warnings.push(`server not asked: ${(e as Error).message}`);
        }
      }
      const g = globalFlags(cmd) as { json?: boolean };
      const lines = [
        `booted commit: ${cfg.bootCommit ?? '(unknown)'}`,
        `profile: ${cfg.profile ?? '(unknown)'}`,
        `server: ${cfg.sshHost ? `${cfg.sshUser}@${cfg.sshHost}:${cfg.sshPort}` : '(unknown)'}`,
        `sender: ${senderPid(cfg) ? `running (pid ${senderPid(cfg)})` : 'not running'}`,
        `pending: ${pending.length}`,
        ...pending.map((p) => `  ${p.id}  ${p.bytes} bytes  ${JSON.stringify(p.message)}`),
        `sent: ${state.pushes.length}`,
        ...state.pushes.map(
          (p) =>
            `  ${p.spoolId}  push ${p.pushId}  ${p.status ?? '?'}${p.commit ? ` ${p.commit}` : ''}${p.branch ? ` branch ${p.branch}` : ''}${p.why ? ` (${p.why})` : ''}`,
        ),
        ...(state.failed.length ? [`refused: ${state.failed.length}`, ...state.failed.map((f) => `  ${f.spoolId}  ${f.reason}`)] : []),
        ...warnings.map((w) => `warning: ${w}`),
      ];
      print(
        !!g.json,
        {
          bootCommit: cfg.bootCommit ?? null,
          profile: cfg.profile ?? null,
          pending,
          pushes: state.pushes,
          failed: state.failed,
          senderPid: senderPid(cfg),
          warnings,
        },
        lines.join('\n'),
      );
    });

  program
    .command('diff')
    .description('what a commit would contain')
    .option('--parent <commit>', 'the booted commit (default /run/strata/commit or strata.commit)')
    .action(async (opts: { parent?: string }, cmd: Command) => {
      const cfg = loadConfig({ ...globalFlags(cmd), parent: opts.parent });
      const d = await computeDiff(cfg);
      const g = globalFlags(cmd) as { json?: boolean };
      const lines = [
        ...d.added.map((p) => `A ${p}`),
        ...d.changed.map((p) => `M ${p}`),
        ...d.deleted.map((p) => `D ${p}`),
        ...d.opaque.map((p) => `R ${p}/ (replaces the lower directory)`),
        `${d.added.length} added, ${d.changed.length} changed, ${d.deleted.length} deleted, ${d.opaque.length} replaced dirs, ${d.bytes} bytes${d.lowerKnown ? '' : ' (lower layers not found: changed files show as added)'}`,
      ];
      print(!!g.json, d, lines.join('\n'));
    });

  program
    .command('watch')
    .description('commit automatically when the upper dir has been quiet for a while')
    .option('--quiet <seconds>', 'quiet time before a commit (default 30)')
    .option('--profile <name>', 'profile to push to')
    .option('--parent <commit>', 'the booted commit')
    .option('--no-send', 'only spool')
    .action(async (opts: { quiet?: string; profile?: string; parent?: string; send: boolean }, cmd: Command) => {
      const cfg = loadConfig({ ...globalFlags(cmd), quiet: opts.quiet, profile: opts.profile, parent: opts.parent });
      const ac = new AbortController();
      process.once('SIGTERM', () => ac.abort());
      process.once('SIGINT', () => ac.abort());
      await watchAndCommit(cfg, { log, send: opts.send, signal: ac.signal, onCommit: (id) => process.stdout.write(`${id}\n`) });
    });

  return program;
}

export async function main(argv = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    if (isStrataError(e)) {
      log(`${e.message} [${e.code}]`);
      // The same table as `strata`: one exit code means one thing in both commands.
      process.exitCode = exitCodeFor(e);
    } else {
      log((e as Error).stack ?? String(e));
      process.exitCode = 1;
    }
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}
