/** Types for web/match.js (the browser's copy of the assignment matcher), for the tests. */
import type { Assignment, ClientLease } from '../store/types.ts';

export function isIPv4(s: string): boolean;
export function normalizeMac(mac: string): string | null;
export function parseMatch(text: string): { match: string; kind: Assignment['kind'] } | null;
export function matchAssignment<A extends Pick<Assignment, 'match' | 'kind'>>(
  assignments: A[],
  mac: string | null,
  ip: string | null,
): A | null;
export function previewChange<A extends Pick<Assignment, 'match' | 'kind'>>(
  assignments: A[],
  clients: Pick<ClientLease, 'mac' | 'ip'>[],
  change: { add?: A | null; remove?: string | null },
): { client: Pick<ClientLease, 'mac' | 'ip'>; before: A | null; after: A | null; caught: boolean }[];
