/**
 * Splits an SSH exec command line the way a POSIX shell would split words
 * (single quotes, double quotes with \\ \" \$ \` escapes, backslash outside
 * quotes). No expansion of any kind: the command is data, never run.
 */
import { StrataError } from '../store/errors.ts';

export function splitShellWords(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const c = line[i];
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
        const d = line[i];
        if (d === '"') {
          closed = true;
          i += 1;
          break;
        }
        if (d === '\\' && i + 1 < line.length && '\\"$`\n'.includes(line[i + 1])) {
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

export type SshCommand =
  | { cmd: 'push'; profile: string; parent: string; message: string }
  | { cmd: 'status'; id: string }
  | { cmd: 'log'; profile: string; limit?: number };

export const USAGE = [
  'usage:',
  '  push <profile> --parent <commit id> [-m <message>] [--push-key <key>]   (stdin: zstd-compressed tar of the upper dir)',
  '  status <push id>',
  '  log <profile>',
].join('\n');

/** Parses the words of an exec request; StrataError E_BAD_ARGUMENT with a usage message otherwise. */
export function parseSshCommand(words: string[]): SshCommand {
  const [cmd, ...rest] = words;
  const bad = (why: string): never => {
    throw new StrataError('E_BAD_ARGUMENT', `${why}\n${USAGE}`);
  };
  switch (cmd) {
    case 'push': {
      let profile: string | undefined;
      let parent: string | undefined;
      let message = '';
      for (let i = 0; i < rest.length; i++) {
        const w = rest[i];
        if (w === '--parent' || w === '-p') parent = rest[++i] ?? bad('--parent needs a commit id');
        else if (w.startsWith('--parent=')) parent = w.slice(9);
        else if (w === '-m' || w === '--message') message = rest[++i] ?? bad('-m needs a message');
        else if (w.startsWith('--message=')) message = w.slice(10);
        else if (w.startsWith('-')) bad(`push: unknown option ${w}`);
        else if (profile === undefined) profile = w;
        else bad(`push: unexpected argument ${w}`);
      }
      if (!profile) return bad('push: which profile?');
      if (!parent) return bad('push: --parent <commit id> is required (the commit the client booted)');
      return { cmd: 'push', profile, parent, message };
    }
    case 'status':
      if (rest.length !== 1) return bad('status: give exactly one push id');
      return { cmd: 'status', id: rest[0] };
    case 'log':
      if (rest.length !== 1) return bad('log: give exactly one profile');
      return { cmd: 'log', profile: rest[0] };
    default:
      throw new StrataError('E_NOT_FOUND', `unknown command ${JSON.stringify(cmd ?? '')}\n${USAGE}`);
  }
}
