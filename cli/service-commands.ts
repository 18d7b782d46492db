/**
 * The commands for running strata as an installed service: `config check`,
 * `doctor`, `install-service`. Only their definitions live here; each action
 * imports its implementation when it runs (start-up stays small).
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';

interface Globals {
  data: string;
  config?: string;
  json?: boolean;
}

interface Helpers {
  globals: (cmd: Command) => Promise<Globals>;
  out: (g: Globals, json: unknown, human: () => string) => void;
}

/** --data, else $STRATA_DATA, else data_dir of the config file in force, else ./strata-data. */
export async function resolveDataDir(g: { data?: string; config?: string }): Promise<string> {
  if (g.data) return g.data;
  if (process.env.STRATA_DATA) return process.env.STRATA_DATA;
  if (g.config || process.env.STRATA_CONFIG || existsSync('/etc/strata/strata.toml')) {
    const { loadSettings } = await import('./config-load.ts');
    const dir = loadSettings(g.config).settings.dataDir;
    if (dir) return dir;
  }
  return './strata-data';
}

export function addServiceCommands(program: Command, { globals, out }: Helpers): void {
  const config = program.command('config').description('the service config file (/etc/strata/strata.toml)');
  config
    .command('check')
    .description('validate a config file; every problem is printed as FILE:LINE: KEY: what is wrong')
    .argument('[file]', 'the file (default: --config, $STRATA_CONFIG or /etc/strata/strata.toml)')
    .action(async (file: string | undefined, _o: unknown, cmd: Command) => {
      const g = await globals(cmd);
      const { runConfigCheck } = await import('./config-check.ts');
      const r = runConfigCheck(file ?? g.config);
      out(g, r, () => (r.ok ? `${r.file}: ok` : r.text));
      if (!r.ok) process.exitCode = 2;
    });

  program
    .command('doctor')
    .description('check that the tools strata drives are installed with usable versions, and say what to install')
    .action(async (_o: unknown, cmd: Command) => {
      const g = await globals(cmd);
      const { runDoctor, formatDoctor } = await import('./doctor.ts');
      const r = await runDoctor();
      out(g, r, () => formatDoctor(r));
      if (!r.ok) process.exitCode = 1;
    });

  program
    .command('install-service')
    .description('install the systemd units, the strata system user, /etc/strata/strata.toml and /var/lib/strata (as root)')
    .option('--root <dir>', 'install under DIR instead of / (for packaging; no user is created, systemctl is not run)')
    .option('--pxe <iface>', 'also answer PXE on IFACE: sets pxe.interface and installs the capabilities dnsmasq needs')
    .option('--no-start', 'do not enable and start strata.service')
    .action(async (o: { root?: string; pxe?: string; start: boolean }, cmd: Command) => {
      const g = await globals(cmd);
      const { installService } = await import('./install-service.ts');
      const r = await installService({ root: o.root, start: o.start, pxe: o.pxe });
      out(g, r, () => r.steps.join('\n'));
    });
}
