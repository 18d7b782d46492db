/** Types for web/held.js (what the page shows gc keeps and removes), for the tests. */
import type { GcReason } from '../store/gc.ts';
import type { Assignment, ClientLease, Commit, Push } from '../store/types.ts';

/** One reason of GET /v1/gc/roots: the store's GcReason and its words. */
export type GcRootReason = GcReason & { text: string };

/** One entry of GET /v1/gc/roots (`reason` is the first reason's words, for older clients). */
export interface GcRoot {
  commit: string;
  reason?: string;
  reasons: GcRootReason[];
}
export interface Known {
  assignments: Pick<Assignment, 'match' | 'profile' | 'pin'>[];
  clients: Pick<ClientLease, 'mac' | 'profile' | 'commit'>[];
  pushes: Pick<Push, 'id' | 'profile'>[];
}
export interface HeldWhy {
  kinds: string[];
  reasons: GcRootReason[];
  via: string | null;
  root: boolean;
  named?: boolean;
}

export function rootReasons(root: GcRoot): GcRootReason[];
export function rootMayBelong(root: GcRoot, profile: string, known: Known): boolean;
export function collectHeld<C extends Pick<Commit, 'id' | 'profile' | 'parent' | 'mergeParent'>>(
  roots: GcRoot[],
  drawn: Set<string>,
  profile: string,
  known: Known,
  getCommit: (id: string) => Promise<C>,
  max?: number,
): Promise<{ commits: C[]; why: Map<string, HeldWhy> }>;
export function heldReasons(id: string, w: HeldWhy, known: Known, reflogIds: Set<string>): string[];
export function describeGcObjects(
  objects: string[],
  deadCommits: Pick<Commit, 'id' | 'manifest'>[],
): { digest: string; what: string; size: number | null; commits: string[] }[];
