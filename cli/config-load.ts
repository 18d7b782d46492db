/**
 * Finding and reading the config file: --config, else $STRATA_CONFIG, else
 * /etc/strata/strata.toml when it exists. Every command reads it only for
 * data_dir (and only when neither --data nor $STRATA_DATA is given);
 * `strata serve` takes the rest.
 */
import { existsSync, readFileSync } from 'node:fs';
import { StrataError } from '../store/errors.ts';
import { parseConfigText, type ServiceSettings } from './config-file.ts';

export const DEFAULT_CONFIG_FILE = '/etc/strata/strata.toml';

/** The file to read, or null when none is named and the default does not exist. */
export function configFileFor(flag: string | undefined): string | null {
  const named = flag ?? process.env.STRATA_CONFIG;
  if (named) return named;
  return existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : null;
}

export function readConfigFile(file: string): ServiceSettings {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new StrataError('E_BAD_ARGUMENT', `cannot read config file ${file}: ${(e as Error).message}`);
  }
  return parseConfigText(file, text);
}

/** The settings of the config file in force, or empty ones when there is none. */
export function loadSettings(flag: string | undefined): { file: string | null; settings: ServiceSettings } {
  const file = configFileFor(flag);
  return { file, settings: file ? readConfigFile(file) : { storeConfig: {} } };
}
