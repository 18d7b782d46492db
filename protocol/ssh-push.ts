/**
 * The SSH push protocol, spoken by the server (server/ssh-server.ts), the
 * agent (client-agent/ssh-push.ts) and anyone pasting a printed command.
 *
 * The exec command string is shell-quoted words, split here once the way a
 * POSIX shell splits them (no expansion: the command is data, never run).
 * So a message with spaces must reach the server quoted: printed hints quote
 * the whole remote command, e.g.
 *   ssh -p 2222 strata@host "push demo --parent ID -m 'my change'"
 * Then the words are parsed once, with node:util parseArgs.
 *
 *   push <profile> --parent <commit> [-m <message>] [--push-key <key>]   stdin: zstd tar
 *       -> the push id alone on the last stdout line, exit 0
 *   status <push id>  -> queued | baking | committed <id> [branch <name>] | rejected <why>
 *   log <profile>     -> "<commit id> <ISO time> <message>" lines, newest first
 */
import { parseArgs } from 'node:util';
import { StrataError } from './errors.ts';
import { PUSH_KEY, PUSH_KEY_RULE } from './ids.ts';

export const USAGE = [
  'usage:',
  '  push <profile> --parent <commit id> [-m <message>] [--push-key <key>]   (stdin: zstd-compressed tar of the upper dir)',
  '  status <push id>',
  '  log <profile>',
  'Words are split like a POSIX shell: quote a message with spaces for the server too,',
  `  e.g. ssh ... "push demo --parent ID -m 'my change'"`,
  '  --push-key <key>: optional idempotency key; a retry with the same key answers the stored push id',
].join('\n');

/** Splits an exec command line into words like a POSIX shell (quotes and backslashes; no expansion). */
export function splitShellWords(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new StrataError('E_BAD_ARGUMENT', 'unterminated single quote in the command');
      cur += line.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      i += 1;
      inWord = true;
      let closed = false;
      while (i < line.length) {
        const d = line[i]!;
        if (d === '"') {
          closed = true;
          i += 1;
          break;
        }
        if (d === '\\' && i + 1 < line.length && '\\"$`\n'.includes(line[i + 1]!)) {
          if (line[i + 1] !== '\n') cur += line[i + 1];
          i += 2;
          continue;
        }
        cur += d;
        i += 1;
      }
      if (!closed) throw new StrataError('E_BAD_ARGUMENT', 'unterminated double quote in the command');
    } else if (c === '\\') {
      if (i + 1 < line.length) {
        if (line[i + 1] !== '\n') {
          cur += line[i + 1];
          inWord = true;
        }
        i += 2;
      } else {
        i += 1;
      }
    } else if (c === ' ' || c === '\t' || c === '\n') {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
      i += 1;
    } else {
      cur += c;
      inWord = true;
      i += 1;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

/** Quotes one word so splitShellWords (and sh) gives it back unchanged: single quotes, ' as '\''. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export type SshCommand =
  | { cmd: 'push'; profile: string; parent: string; message: string; pushKey: string | null }
  | { cmd: 'status'; id: string }
  | { cmd: 'log'; profile: string };

const PUSH_OPTIONS = {
  parent: { type: 'string', short: 'p' },
  message: { type: 'string', short: 'm' },
  'push-key': { type: 'string' },
} as const;

const NEEDS: Record<string, string> = { parent: 'a commit id', message: 'a message', 'push-key': 'a key' };

/**
 * An option that takes a value takes the next word, whatever it starts with
 * (a message may read "--push-key" or "-x"): joined as --name=value before
 * parseArgs, which would otherwise call such a value ambiguous.
 */
function joinOptionValues(words: string[]): string[] {
  const names = new Map<string, string>();
  for (const [name, o] of Object.entries(PUSH_OPTIONS)) {
    names.set(`--${name}`, name);
    if ('short' in o) names.set(`-${o.short}`, name);
  }
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const name = names.get(words[i]!);
    if (name === undefined) out.push(words[i]!);
    else if (i + 1 < words.length) out.push(`--${name}=${words[++i]}`);
    else throw new StrataError('E_BAD_ARGUMENT', `push: --${name} needs ${NEEDS[name]}\n${USAGE}`);
  }
  return out;
}

const parsePush = (args: string[]) => parseArgs({ args, options: PUSH_OPTIONS, allowPositionals: true, strict: true, tokens: true });

/** Parses the words of an exec request; StrataError E_BAD_ARGUMENT (E_NOT_FOUND for an unknown command) with the usage. */
export function parseSshCommand(words: string[]): SshCommand {
  const [cmd, ...rest] = words;
  const bad = (why: string): never => {
    throw new StrataError('E_BAD_ARGUMENT', `${why}\n${USAGE}`);
  };
  switch (cmd) {
    case 'push': {
      let parsed: ReturnType<typeof parsePush>;
      try {
        parsed = parsePush(joinOptionValues(rest));
      } catch (e) {
        if (e instanceof StrataError) throw e;
        return bad(`push: ${(e as Error).message.split('\n')[0]}`);
      }
      for (const name of Object.keys(PUSH_OPTIONS)) {
        if (parsed.tokens.filter((t) => t.kind === 'option' && t.name === name).length > 1) bad(`push: --${name} given twice`);
      }
      const pushKey = parsed.values['push-key'] ?? null;
      if (pushKey !== null && !PUSH_KEY.test(pushKey)) {
        const shown = JSON.stringify(pushKey.length > 80 ? `${pushKey.slice(0, 80)}...` : pushKey);
        bad(`push: bad --push-key ${shown}: ${PUSH_KEY_RULE}`);
      }
      const [profile, ...extra] = parsed.positionals;
      if (extra.length) bad(`push: unexpected argument ${extra[0]} (quote a message with spaces: -m 'my change')`);
      if (!profile) return bad('push: which profile?');
      const { parent, message = '' } = parsed.values;
      if (!parent) return bad('push: --parent <commit id> is required (the commit the client booted)');
      return { cmd: 'push', profile, parent, message, pushKey };
    }
    case 'status':
      if (rest.length !== 1) return bad('status: give exactly one push id');
      return { cmd: 'status', id: rest[0]! };
    case 'log':
      if (rest.length !== 1) return bad('log: give exactly one profile');
      return { cmd: 'log', profile: rest[0]! };
    default:
      throw new StrataError('E_NOT_FOUND', `unknown command ${JSON.stringify(cmd ?? '')}\n${USAGE}`);
  }
}

/** The exec command string of a push, quoted so parseSshCommand reads back exactly these values. */
export function pushCommand(profile: string, parent: string, message?: string, pushKey?: string): string {
  const words = ['push', shellQuote(profile), '--parent', shellQuote(parent)];
  if (pushKey !== undefined) {
    if (!PUSH_KEY.test(pushKey)) throw new StrataError('E_BAD_ARGUMENT', `not a push key: ${JSON.stringify(pushKey)}`);
    words.push('--push-key', pushKey);
  }
  if (message !== undefined && message !== '') words.push('-m', shellQuote(message));
  return words.join(' ');
}

// ---------------------------------------------------------------- the status line

export interface PushRecordStatus {
  state: string;
  commit: string | null;
  branch: string | null;
  reason: string | null;
}

export type PushStatus =
  | { state: 'queued' | 'baking' }
  | { state: 'committed'; commit: string; branch?: string }
  | { state: 'rejected'; why: string }
  | { state: 'unknown'; text: string };

/** One line, the server's answer to `status <id>`. */
export function formatPushStatus(p: PushRecordStatus): string {
  switch (p.state) {
    case 'committed':
      return `committed ${p.commit}${p.branch ? ` branch ${p.branch}` : ''}`;
    case 'rejected':
      return `rejected ${(p.reason ?? 'no reason recorded').replace(/\s*\n\s*/g, ' ')}`;
    default:
      return p.state;
  }
}

/** Reads the line formatPushStatus wrote (pure). */
export function parseStatus(line: string): PushStatus {
  const t = line.trim();
  if (t === 'queued' || t === 'baking') return { state: t };
  const c = /^committed\s+([0-9a-f]{7,64})(?:\s+branch\s+(\S+))?/.exec(t);
  if (c) return c[2] ? { state: 'committed', commit: c[1]!, branch: c[2] } : { state: 'committed', commit: c[1]! };
  if (t.startsWith('rejected')) return { state: 'rejected', why: t.slice('rejected'.length).trim() };
  return { state: 'unknown', text: t };
}

/** One line of the answer to `log <profile>`. */
export function formatLogLine(c: { id: string; createdAt: number; message: string }): string {
  // Store times are milliseconds; tolerate seconds.
  const ms = c.createdAt < 1e11 ? c.createdAt * 1000 : c.createdAt;
  const iso = new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return `${c.id} ${iso} ${c.message.replace(/\s*\n\s*/g, ' ')}`;
}
