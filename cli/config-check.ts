/** `strata config check [FILE]`: every problem of a config file, with its line and key. */
import { readFileSync } from 'node:fs';
import { StrataError } from '../store/errors.ts';
import { checkConfigText, formatProblems, type ConfigProblem } from './config-file.ts';
import { DEFAULT_CONFIG_FILE } from './config-load.ts';

export function runConfigCheck(named: string | undefined): { file: string; ok: boolean; problems: ConfigProblem[]; text: string } {
  const file = named ?? process.env.STRATA_CONFIG ?? DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new StrataError('E_BAD_ARGUMENT', `cannot read config file ${file}: ${(e as Error).message}`);
  }
  const { problems } = checkConfigText(text);
  return { file, ok: problems.length === 0, problems, text: formatProblems(file, problems) };
}
