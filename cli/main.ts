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
import type { Compressor } from '../store/types.ts';
import { registerAdminCommands } from './admin-commands.ts';
import { act, globals, type GlobalOpts, out, warn } from './command-kit.ts';
import { exitCodeFor } from './exit-codes.ts';
import { formatCommit } from './format.ts';
import { registerHistoryCommands } from './history-commands.ts';
import type { ServeFlags } from './serve-command.ts';
import { addServiceCommands } from './service-commands.ts';
import { registerPxeCommands } from './pxe-commands.ts';
import { registerPushCommands } from './push-commands.ts';
import { registerBuildCommands } from './build-commands.ts';

/** The version in package.json (one directory up from both cli/ and the built dist/). */
function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
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
    .description(
      'create profile NAME whose first commit is the base made from SOURCE (.iso | .sqfs | .tar[.zst|.gz|.xz] | dir | -); when NAME exists, SOURCE becomes its new base (a delta layer when small) and its own layers are replayed onto it',
    )
    .argument('<name>')
    .argument('<source>')
    .option('--kernel <file>', 'kernel image to boot this profile with')
    .option('--initrd <file>', 'initramfs to boot this profile with (see "strata initrd build")')
    .option('-m, --message <msg>', 'commit message')
    .addOption(new Option('--compressor <c>', 'squashfs compressor for this profile').choices(['zstd', 'lz4', 'gzip', 'xz']))
    .option('--level <n>', 'compression level (default: tar2sqfs default, zstd 15; 3 bakes ~30x faster for ~15% larger layers)')
    .option('--full', 'an existing profile: store a full base, never a delta layer')
    .option('--delta-share <x>', 'an existing profile: keep the delta when smaller than this share of the full image (default 0.5)')
    .action(
      act(
        async (
          s,
          g,
          name: string,
          source: string,
          o: {
            kernel?: string;
            initrd?: string;
            message?: string;
            compressor?: Compressor;
            level?: string;
            full?: boolean;
            deltaShare?: string;
          },
        ) => {
          const r = await s.newBase(name, source, {
            kernel: o.kernel,
            initrd: o.initrd,
            message: o.message,
            compressor: o.compressor,
            level: o.level === undefined ? undefined : Number(o.level),
            full: o.full,
            deltaShare: o.deltaShare === undefined ? undefined : Number(o.deltaShare),
          });
          warn(r.warnings);
          if (r.mode === 'new') {
            out(g, r.commit, () => `imported ${name}: commit ${r.commit.id}\n${formatCommit(r.commit)}`);
            return;
          }
          const { formatNewBase } = await import('./format.ts');
          out(g, r, () => formatNewBase(name, r));
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

  registerHistoryCommands(program);
  registerAdminCommands(program);

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
    .option('--pxe-secure-boot', 'with --pxe: UEFI machines get shim -> Debian-signed GRUB -> kernel over TFTP instead of iPXE')
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
  registerPushCommands(program);
  registerBuildCommands(program);
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
