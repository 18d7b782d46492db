/**
 * The `strata` admin command (docs/design.md, "The strata command"). Thin: parse,
 * call one Store function, print. Errors become a sentence on stderr and an
 * exit code from cli/exit-codes.ts; --json prints machine-readable results.
 *
 * Start-up time matters (`strata log` should answer like git does), so this
 * file imports only commander and small leaf modules; every action loads what
 * it needs with `await import()` (the store, the server, ssh2 ...).
 */
import { Command, Option } from 'commander';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { StrataError, wrapIoError } from '../store/errors.ts';
import type { Store } from '../store/store.ts';
import type { Compressor } from '../store/types.ts';
import { exitCodeFor } from './exit-codes.ts';
import { formatLog, formatCommit, formatDiff, shortId, formatTime } from './format.ts';
import type { ServeFlags } from './serve-command.ts';
import { addServiceCommands, resolveDataDir } from './service-commands.ts';
import { registerPxeCommands } from './pxe-commands.ts';

interface GlobalOpts {
  data: string;
  config?: string;
  json?: boolean;
}

/** The version in package.json (one directory up from both cli/ and the built dist/). */
function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/**
 * The global options with the data directory resolved: --data, else
 * $STRATA_DATA, else data_dir in the config file, else ./strata-data.
 */
async function globals(cmd: Command): Promise<GlobalOpts> {
  const g = cmd.optsWithGlobals() as { data?: string; config?: string; json?: boolean };
  return { ...g, data: await resolveDataDir(g) };
}

function out(g: GlobalOpts, json: unknown, human: () => string): void {
  if (g.json) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  else {
    const text = human();
    if (text) process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }
}

function warn(warnings: string[]): void {
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
}

/** Wraps an action: opens the store, runs, closes, maps errors to exit codes. */
function act<A extends unknown[]>(fn: (store: Store, g: GlobalOpts, ...args: A) => Promise<void> | void, opts: { create?: boolean } = {}) {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const g = await globals(cmd);
    const { Store } = await import('../store/store.ts');
    const store = await Store.open(g.data, { create: opts.create });
    try {
      await fn(store, g, ...(args.slice(0, -1) as A));
    } finally {
      store.close();
    }
  };
}

/** Every command and option of `strata`, without running anything (the docs are generated from it). */
export function buildProgram(): Command {
  const program = new Command();
  program
    .name('strata')
    .description('git for the root filesystems of network-booted Linux machines')
    .version(packageVersion(), '-V, --version')
    .option('--data <dir>', 'data directory (default: $STRATA_DATA, else data_dir in the config file, else ./strata-data)')
    .option('--config <file>', 'config file (default: $STRATA_CONFIG, else /etc/strata/strata.toml when it exists)')
    .option('--json', 'machine-readable output on stdout')
    .showHelpAfterError();

  program
    .command('init')
    .description('create an empty data directory')
    .action(
      act(
        async (s, g) => {
          out(g, { dataDir: s.dataDir }, () => `initialised ${s.dataDir}`);
        },
        { create: true },
      ),
    );

  program
    .command('import')
    .description('create profile NAME whose first commit is the base made from SOURCE (.iso | .sqfs | .tar[.zst|.gz|.xz] | dir | -)')
    .argument('<name>')
    .argument('<source>')
    .option('--kernel <file>', 'kernel image to boot this profile with')
    .option('--initrd <file>', 'initramfs to boot this profile with (see "strata initrd build")')
    .option('-m, --message <msg>', 'commit message')
    .addOption(
      new Option('--compressor <c>', 'squashfs compressor for this profile').choices(['zstd', 'lz4', 'gzip', 'xz']).default('zstd'),
    )
    .option('--level <n>', 'compression level (default: tar2sqfs default, zstd 15; 3 bakes ~30x faster for ~15% larger layers)')
    .action(
      act(
        async (
          s,
          g,
          name: string,
          source: string,
          o: { kernel?: string; initrd?: string; message?: string; compressor: Compressor; level?: string },
        ) => {
          const c = await s.importBase(name, source, {
            kernel: o.kernel,
            initrd: o.initrd,
            message: o.message,
            compressor: o.compressor,
            level: o.level === undefined ? null : Number(o.level),
          });
          out(g, c, () => `imported ${name}: commit ${c.id}\n${formatCommit(c)}`);
        },
        { create: true },
      ),
    );

  program
    .command('commit')
    .description('bake an upper-directory tar into a layer and commit it on PROFILE')
    .argument('<profile>')
    .requiredOption('--tar <file>', 'the tar (plain, .zst, .gz or .xz); - for stdin')
    .option('-m, --message <msg>', 'commit message', 'commit')
    .option('--parent <commit>', 'the commit the tar was made against (default: the head)')
    .option('--author <name>', 'author recorded in the commit', process.env.USER ?? 'admin')
    .action(
      act(async (s, g, profile: string, o: { tar: string; message: string; parent?: string; author: string }) => {
        const r = await s.commitTar(profile, o.tar, { message: o.message, parent: o.parent, author: o.author });
        warn(r.warnings);
        out(g, r.commit, () => `committed ${r.commit.id} on ${profile} (${r.commit.manifest.layers.length} layers)`);
      }),
    );

  program
    .command('log')
    .description("a profile's history, newest first (merges shown)")
    .argument('<rev>')
    .option('-n, --limit <n>', 'at most N commits')
    .action(
      act((s, g, rev: string, o: { limit?: string }) => {
        const commits = s.log(rev, { limit: o.limit ? Number(o.limit) : undefined });
        out(g, commits, () => formatLog(commits, s.listRefs()));
      }),
    );

  program
    .command('rev-parse')
    .description('the full id of a commit named any way (id prefix, tag, profile, branch, NAME~N, NAME@{N})')
    .argument('<rev>')
    .action(act((s, g, rev: string) => out(g, { id: s.resolve(rev) }, () => s.resolve(rev))));

  program
    .command('show')
    .description('one commit: manifest, message, layers')
    .argument('<commit>')
    .action(
      act(async (s, g, rev: string) => {
        const c = s.getCommit(s.resolve(rev));
        const { bootLine } = await import('./kernel-commands.ts');
        out(
          g,
          { ...c, manifestText: s.manifestText(c.id), boot: s.bootRecord(c.id) },
          () => `${formatCommit(c)}\n${bootLine(s, c.id)}\n${s.manifestText(c.id)}`,
        );
      }),
    );

  program
    .command('diff')
    .description('paths added / changed / deleted by a commit, or between two commits')
    .argument('<a>')
    .argument('[b]')
    .action(
      act((s, g, a: string, b?: string) => {
        const d = s.diff(a, b);
        out(g, d, () => formatDiff(d));
      }),
    );

  program
    .command('rollback')
    .description('move PROFILE back (default PROFILE~1); recorded in the reflog, undoable')
    .argument('<profile>')
    .argument('[commit]')
    .action(
      act((s, g, profile: string, rev?: string) => {
        const r = s.rollback(profile, rev);
        out(g, r, () => `${profile}: ${shortId(r.from)} -> ${shortId(r.to)} (undo with: strata rollback ${profile} ${shortId(r.from)})`);
      }),
    );

  program
    .command('revert')
    .description("new commit whose chain drops COMMIT's layer")
    .argument('<profile>')
    .argument('<commit>')
    .action(
      act(async (s, g, profile: string, rev: string) => {
        const r = await s.revert(profile, rev);
        warn(r.warnings);
        out(g, r.commit, () => `reverted: ${profile} is now ${r.commit.id}`);
      }),
    );

  program
    .command('cherry-pick')
    .description("stack COMMIT's layer (as is, no re-bake) onto PROFILE")
    .argument('<profile>')
    .argument('<commit>')
    .option('--force', 'stack even when PROFILE changed the same paths')
    .action(
      act(async (s, g, profile: string, rev: string, o: { force?: boolean }) => {
        const r = await s.cherryPick(profile, rev, { force: o.force });
        warn(r.warnings);
        out(g, r.commit, () => `cherry-picked: ${profile} is now ${r.commit.id}`);
      }),
    );

  program
    .command('flatten')
    .description('one layer for the whole chain, or the part above --from')
    .argument('<profile>')
    .option('--from <commit>')
    .action(
      act(async (s, g, profile: string, o: { from?: string }) => {
        // A progress line on a terminal only: scripts and --json get the result alone.
        const tty = process.stderr.isTTY === true && !g.json;
        const onProgress = tty
          ? (p: { done: number; total: number }) => {
              process.stderr.write(
                `\rflatten: ${Math.floor((100 * p.done) / p.total)}% (${(p.done / 1e6).toFixed(0)} of ${(p.total / 1e6).toFixed(0)} MB merged)`,
              );
            }
          : undefined;
        const r = await s.flatten(profile, { from: o.from, onProgress });
        if (tty) process.stderr.write('\n');
        warn(r.warnings);
        out(g, r.commit, () => `flattened: ${profile} is now ${r.commit.id} (${r.commit.manifest.layers.length} layer(s))`);
      }),
    );

  program
    .command('tag')
    .description('name a commit')
    .argument('<name>')
    .argument('<commit>')
    .action(
      act((s, g, name: string, rev: string) => {
        const r = s.tag(name, rev);
        out(g, r, () => `tag ${name} -> ${r.commit}`);
      }),
    );

  program
    .command('branch')
    .description('a new branch at COMMIT (P/NAME belongs to profile P; a bare NAME is a new profile)')
    .argument('<name>')
    .argument('<commit>')
    .action(
      act((s, g, name: string, rev: string) => {
        const r = s.branch(name, rev);
        out(g, r, () => `branch ${name} -> ${r.commit}`);
      }),
    );

  program
    .command('reflog')
    .description('every move of a branch or tag, newest first')
    .argument('<ref>')
    .action(
      act((s, g, ref: string) => {
        const entries = s.reflog(ref);
        out(g, entries, () =>
          entries.map((e, i) => `${ref}@{${i}} ${shortId(e.new ?? '-')} ${formatTime(e.time)} ${e.action}: ${e.message}`).join('\n'),
        );
      }),
    );

  program
    .command('export')
    .description('write manifest + kernel + initrd + layer files (named by digest) to DIR')
    .argument('<commit>')
    .argument('<dir>')
    .action(
      act(async (s, g, rev: string, dir: string) => {
        const r = await s.exportCommit(rev, dir);
        out(g, r, () => r.files.join('\n'));
      }),
    );

  program
    .command('assign')
    .description('which profile (or pinned commit) a client boots; MATCH is a MAC, IP, CIDR or "default"')
    .argument('[match]')
    .argument('[target]', 'PROFILE or PROFILE@COMMIT (pinned)')
    .option('--cmdline <args>', 'extra kernel arguments for this assignment')
    .option('--remove', 'remove the assignment for MATCH')
    .action(
      act((s, g, match: string | undefined, target: string | undefined, o: { cmdline?: string; remove?: boolean }) => {
        if (!match) {
          const all = s.listAssignments();
          out(
            g,
            all,
            () =>
              all.map((a) => `${a.match}\t${a.profile}${a.pin ? `@${a.pin.slice(0, 12)}` : ''}\t${a.cmdline}`).join('\n') ||
              'no assignments',
          );
          return;
        }
        if (o.remove) {
          s.unassign(match);
          out(g, { removed: match }, () => `removed ${match}`);
          return;
        }
        if (!target) throw new StrataError('E_BAD_ARGUMENT', 'give a PROFILE or PROFILE@COMMIT to assign (or --remove)');
        const a = s.assign(match, target, { cmdline: o.cmdline });
        out(g, a, () => `${a.match} -> ${a.profile}${a.pin ? ` pinned at ${a.pin}` : ''}`);
      }),
    );

  program
    .command('cmdline')
    .description("show or set a profile's extra kernel arguments")
    .argument('<profile>')
    .argument('[args...]')
    .action(
      act((s, g, profile: string, args: string[]) => {
        const p = args.length ? s.setCmdline(profile, args.join(' ')) : s.getProfile(profile);
        out(g, { profile: p.name, cmdline: p.cmdline }, () => p.cmdline);
      }),
    );

  program
    .command('profile')
    .description("show profiles, or one profile's settings (compressor and level)")
    .argument('[name]')
    .addOption(new Option('--compressor <c>').choices(['zstd', 'lz4', 'gzip', 'xz']))
    .option('--level <n>', 'compression level; "default" for tar2sqfs default')
    .option('--kernel-version <v>', 'boot kernel V of each commit\'s tree instead of the newest; "newest" to follow the newest again')
    .option('--enroll-cidr <cidr>', 'approve new client keys pushing from this IPv4 CIDR at once (labs); "none" clears it')
    .action(
      act(
        async (
          s,
          g,
          name: string | undefined,
          o: { compressor?: Compressor; level?: string; kernelVersion?: string; enrollCidr?: string },
        ) => {
          if (name && o.enrollCidr !== undefined) {
            s.getProfile(name);
            const { Enrollment } = await import('../store/enrollment.ts');
            const cidr = new Enrollment(s).setEnrollCidr(name, o.enrollCidr);
            out(
              g,
              { profile: name, enrollCidr: cidr },
              () => `profile ${name}: ${cidr ? `keys from ${cidr} are approved at once` : 'no enroll CIDR'}`,
            );
            return;
          }
          if (!name) {
            const all = s.listProfiles();
            out(g, all, () =>
              all
                .map((p) => `${p.name}\t${p.head ? shortId(p.head) : '-'}\t${p.compressor}${p.level === null ? '' : `:${p.level}`}`)
                .join('\n'),
            );
            return;
          }
          let p = s.getProfile(name);
          if (o.compressor || o.level !== undefined)
            p = s.setCompression(
              name,
              o.compressor ?? p.compressor,
              o.level === undefined ? p.level : o.level === 'default' ? null : Number(o.level),
            );
          if (o.kernelVersion !== undefined) {
            const { pinKernel } = await import('./kernel-commands.ts');
            pinKernel(s, name, o.kernelVersion === 'newest' ? null : o.kernelVersion);
          }
          const kernelVersion = s.kernelPin(name);
          out(g, { ...p, kernelVersion }, () =>
            [
              `profile ${p.name}`,
              `head       ${p.head ?? '-'}`,
              `compressor ${p.compressor} level ${p.level ?? 'default (zstd 15: smallest, slowest; level 3 bakes ~30x faster for ~15% larger layers)'}`,
              `cmdline    ${p.cmdline}`,
              `kernel     ${p.kernel ? p.kernel.digest : '-'}`,
              `initrd     ${p.initrd ? p.initrd.digest : '-'}`,
              `kernel-version ${kernelVersion ?? 'newest in the tree'}`,
            ].join('\n'),
          );
        },
      ),
    );

  const keys = program.command('keys').description('SSH keys allowed to push');
  keys
    .command('add')
    .argument('<name>')
    .argument('<pubkey-file>')
    .option('--profile <p...>', 'profiles this key may push to')
    .option('--admin', 'may push anywhere')
    .action(
      act((s, g, name: string, file: string, o: { profile?: string[]; admin?: boolean }) => {
        const k = s.addKey(name, readFileSync(file, 'utf8'), { admin: !!o.admin, profiles: o.profile ?? [] });
        out(g, k, () => `key ${k.name} ${k.fingerprint} ${k.admin ? 'admin' : `profiles: ${k.profiles.join(', ')}`}`);
      }),
    );
  keys.command('list').action(
    act((s, g) => {
      const all = s.listKeys();
      out(g, all, () => all.map((k) => `${k.name}\t${k.fingerprint}\t${k.admin ? 'admin' : k.profiles.join(',')}`).join('\n'));
    }),
  );
  keys
    .command('remove')
    .argument('<name>')
    .action(
      act((s, g, name: string) => {
        s.removeKey(name);
        out(g, { removed: name }, () => `removed key ${name}`);
      }),
    );

  // Enrollment: keys clients made themselves, held until an admin decides (store/enrollment.ts).
  keys
    .command('pending')
    .description('client keys held for approval, with the MAC and IP they pushed from')
    .action(
      act(async (s, g) => {
        const { Enrollment } = await import('../store/enrollment.ts');
        const all = new Enrollment(s).list();
        const line = (k: (typeof all)[number]) =>
          `${k.id}\t${k.fingerprint}\tmac ${k.mac ?? '-'}\tip ${k.ip ?? '-'}\t${k.hostname ?? '-'}\t${k.heldPushes} held push(es)`;
        out(g, all, () => (all.length ? all.map(line).join('\n') : 'no pending keys'));
      }),
    );
  keys
    .command('approve')
    .description('admit a pending client key; its held pushes are queued')
    .argument('<id>')
    .option('--profile <p...>', 'profiles this key may push to')
    .option('--admin', 'may push anywhere')
    .option('--name <name>', 'the key name (default client-<id>)')
    .action(
      act(async (s, g, id: string, o: { profile?: string[]; admin?: boolean; name?: string }) => {
        const { Enrollment } = await import('../store/enrollment.ts');
        const r = new Enrollment(s).approve(id, { admin: !!o.admin, profiles: o.profile ?? [], name: o.name });
        out(g, r, () => `key ${r.key.name} ${r.key.fingerprint} admitted; ${r.released.length} held push(es) queued`);
      }),
    );
  keys
    .command('reject')
    .description('drop a pending client key and delete its held pushes')
    .argument('<id>')
    .action(
      act(async (s, g, id: string) => {
        const { Enrollment } = await import('../store/enrollment.ts');
        const r = new Enrollment(s).reject(id);
        out(g, { rejected: id, ...r }, () => `rejected key ${id}; deleted ${r.deleted.length} held push(es)`);
      }),
    );

  const token = program.command('token').description('bearer tokens for the admin API and the web UI');
  token
    .command('create')
    .argument('<name>')
    .action(
      act((s, g, name: string) => {
        const t = s.createToken(name);
        out(g, t, () => `${t.token}\n(shown once; keep it: it logs in to the web UI and the API)`);
      }),
    );
  token.command('list').action(
    act((s, g) => {
      const all = s.listTokens();
      out(g, all, () => all.map((t) => `${t.name}\t${formatTime(t.createdAt)}`).join('\n'));
    }),
  );
  token
    .command('revoke')
    .argument('<name>')
    .action(
      act((s, g, name: string) => {
        s.revokeToken(name);
        out(g, { revoked: name }, () => `revoked ${name}`);
      }),
    );

  program
    .command('clients')
    .description('who booted what, and when')
    .action(
      act(async (s, g) => {
        // With the last heartbeat (commit, uptime, inventory) of each machine that sent one.
        const { Heartbeats } = await import('../store/heartbeats.ts');
        const hb = new Heartbeats(s);
        const all = s.listClients().map((c) => ({ ...c, heartbeat: hb.get(c.mac) }));
        out(
          g,
          all,
          () =>
            all
              .map((c) => `${c.mac}\t${c.ip}\t${c.profile ?? '-'}\t${c.commit ? shortId(c.commit) : '-'}\t${formatTime(c.lastSeen)}`)
              .join('\n') || 'no clients yet',
        );
      }),
    );

  program
    .command('gc')
    .description('remove commits and blobs nothing keeps (refs, tags, recent reflog, pins, leases)')
    .option('--dry-run', 'only list what would go')
    .action(
      act(async (s, g, o: { dryRun?: boolean }) => {
        const r = await s.gc({ dryRun: o.dryRun });
        out(
          g,
          r,
          () =>
            `${o.dryRun ? 'would remove' : 'removed'} ${r.commits.length} commit(s), ${r.objects.length} object(s), ${(r.bytes / 1048576).toFixed(1)} MiB` +
            (o.dryRun ? `\n${[...r.commits.map((c) => `commit ${c}`), ...r.objects.map((d) => `object ${d}`)].join('\n')}` : ''),
        );
      }),
    );

  program
    .command('fsck')
    .description('re-hash every blob, check every manifest and chain')
    .action(
      act(async (s, g) => {
        const r = await s.fsck();
        out(g, r, () => (r.ok ? `ok: ${r.objects} objects, ${r.commits} commits` : r.problems.join('\n')));
        if (!r.ok) process.exitCode = 3;
      }),
    );

  program
    .command('serve')
    .description('boot (HTTP) and push (SSH) server with the baker; flags override the config file (--config)')
    .option('--http <host:port>', 'HTTP listen address (default 0.0.0.0:8080, or http.listen in the config file)')
    .option('--ssh <host:port>', 'SSH listen address (default 0.0.0.0:2222, or ssh.listen in the config file)')
    .option('--public-url <url>', 'URL clients use to reach this server (default: from each request)')
    .option('--http-workers <n>', 'HTTP processes sharing the port (SSH and the baker stay in one; default 1); see docs/api.md')
    .option(
      '--max-push-size <bytes>',
      'largest compressed push accepted over SSH (default 4 GiB; also limits.max_push_size in the config file)',
    )
    .option('--pxe <iface>', "answer PXE clients on this interface (proxyDHCP beside the site's DHCP, TFTP; docs/pxe.md)")
    .option('--pxe-dhcp-range <first,last>', 'with --pxe: be the DHCP server, handing out these addresses (isolated networks only)')
    .action(async (o: ServeFlags, cmd: Command) => {
      const g = await globals(cmd);
      const { runServe } = await import('./serve-command.ts');
      await runServe(o, g.data, g.config);
    });

  program
    .command('nginx-conf')
    .description('print an nginx server block that serves objects/ from --data and proxies the rest to strata (see docs/api.md)')
    .option('--listen <host:port>', 'address nginx listens on (what clients use)', '0.0.0.0:80')
    .option('--upstream <host:port>', 'address of strata serve --http', '127.0.0.1:8080')
    .action(async (o: { listen: string; upstream: string }, cmd: Command) => {
      const g = await globals(cmd);
      const { resolve } = await import('node:path');
      const { renderNginxConf } = await import('./nginx-conf.ts');
      process.stdout.write(renderNginxConf({ dataDir: resolve(g.data), listen: o.listen, upstream: o.upstream }));
    });

  program
    .command('grub-cfg')
    .description("print the grub.cfg for GRUB's network image on the TFTP server: it boots what strata assigns (see docs/booting.md)")
    .requiredOption('--server <url>', 'http://HOST[:PORT] of strata serve as the clients reach it')
    .option('--serial', "also put GRUB's menu and messages on the first serial port")
    .action(async (o: { server: string; serial?: boolean }) => {
      const { renderGrubCfg } = await import('./grub-cfg.ts');
      process.stdout.write(renderGrubCfg({ server: o.server, serial: o.serial }));
    });

  program
    .command('demo')
    .description('npm start: a server with a demo profile in ./strata-data')
    .option('--http <host:port>', 'HTTP listen address', process.env.STRATA_HTTP ?? '127.0.0.1:8080')
    .option('--ssh <host:port>', 'SSH listen address', process.env.STRATA_SSH ?? '127.0.0.1:2222')
    .action(async (o: { http: string; ssh: string }, cmd: Command) => {
      const g = await globals(cmd);
      const { runDemo } = await import('./demo.ts');
      await runDemo({ dataDir: g.data, http: o.http, ssh: o.ssh });
    });

  const initrd = program.command('initrd').description('the strata initramfs');
  initrd
    .command('build')
    .description("the host's kernel modules, or (--from) those in a commit's tree")
    .requiredOption('-o, --output <file>')
    .option('--kernel-version <v>')
    .option('--from <commit>', "build from the commit's own tree (its newest kernel, or --kernel-version)")
    .action(async (o: { output: string; kernelVersion?: string; from?: string }, cmd: Command) => {
      if (o.from) {
        const from = o.from;
        await act(async (s, g) => {
          const { initrdFromCommit } = await import('./kernel-commands.ts');
          const r = await initrdFromCommit(s, from, o.output, o.kernelVersion);
          out(g, r, () => `wrote ${r.output} for kernel ${r.kernelVersion} from ${from}'s tree`);
        })(cmd);
        return;
      }
      const g = await globals(cmd);
      const { buildInitrd } = await import('./initrd-build.ts');
      const r = await buildInitrd({ output: o.output, kernelVersion: o.kernelVersion });
      out(g, r, () => `wrote ${r.output} for kernel ${r.kernelVersion}`);
    });

  addServiceCommands(program, { globals, out });
  registerPxeCommands(program);
  return program;
}

/** Runs the command line ARGV (process.argv shape); errors become a sentence and an exit code. */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (thrown) {
    // A full disk the store did not name itself (e.g. SQLite) still gets the no-space advice and exit code.
    const e = wrapIoError(thrown, 'writing to the data directory');
    const err = e as Error;
    const g = program.opts() as GlobalOpts;
    if (g.json)
      process.stdout.write(
        `${JSON.stringify(
          err instanceof StrataError ? err.toJSON() : { error: { code: 'E_INTERNAL', message: String(err?.message ?? err) } },
        )}\n`,
      );
    process.stderr.write(`strata: ${err?.message ?? String(e)}\n`);
    if (!(err instanceof StrataError) && process.env.STRATA_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
    process.exitCode = exitCodeFor(e);
  }
}

// Run when this file (or its bundle in dist/) is the program, not when imported (tests, docs).
function isEntry(): boolean {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}
if (isEntry()) await main(process.argv);
