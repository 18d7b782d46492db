/**
 * What every `strata` command module shares: the global options with the data
 * directory resolved, printing a result (human or --json), warnings, and the
 * wrapper that opens the store around an action. Kept free of top-level store
 * imports so `strata --help` stays light (test/cli-startup-imports.test.ts).
 */
import type { Command } from 'commander';
import type { Store } from '../store/store.ts';
import { resolveDataDir } from './service-commands.ts';

export interface GlobalOpts {
  data: string;
  config?: string;
  json?: boolean;
}

/**
 * The global options with the data directory resolved: --data, else
 * $STRATA_DATA, else data_dir in the config file, else ./strata-data.
 */
export async function globals(cmd: Command): Promise<GlobalOpts> {
  const g = cmd.optsWithGlobals() as { data?: string; config?: string; json?: boolean };
  return { ...g, data: await resolveDataDir(g) };
}

export function out(g: GlobalOpts, json: unknown, human: () => string): void {
  if (g.json) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  else {
    const text = human();
    if (text) process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }
}

export function warn(warnings: string[]): void {
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
}

/** Wraps an action: opens the store, runs, closes, maps errors to exit codes. */
export function act<A extends unknown[]>(
  fn: (store: Store, g: GlobalOpts, ...args: A) => Promise<void> | void,
  opts: { create?: boolean } = {},
) {
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
