/**
 * Which assignment a booting client gets: the matcher in protocol/match.js
 * (the browser's previews load the same file), with the store's types and a
 * StrataError for a rule text that is not a rule.
 */
import { matchAssignment as match, normalizeMac, parseMatch as parseRule } from '../protocol/match.js';
import { StrataError } from './errors.ts';
import type { Assignment } from './types.ts';

export { normalizeMac };

export function parseMatch(match: string): { match: string; kind: Assignment['kind'] } {
  const r = parseRule(match);
  if (r) return r;
  throw new StrataError(
    'E_BAD_ARGUMENT',
    `cannot read "${match}" as a MAC (aa:bb:cc:dd:ee:ff), an IPv4 address, a CIDR (10.0.0.0/24) or "default"`,
  );
}

export function matchAssignment(assignments: Assignment[], mac: string | null, ip: string | null): Assignment | null {
  return match(assignments, mac, ip);
}
