/**
 * The admin API's responses as the page reads them, written once: the data
 * types are the store's own (store/types.ts, the JSON the server sends);
 * here are only the envelopes. The page's JS files use them through JSDoc
 * `import('./api-types.js')` types; nothing here exists at run time.
 */
import type { ClientHealth } from '../store/boot-health.ts';
import type {
  Assignment,
  ClientLease as Lease,
  ClientReport as Report,
  Commit,
  DiffResult,
  Profile,
  Push,
  Ref,
  ReflogEntry,
} from '../store/types.ts';
import type { GcRoot, HeldWhy } from './held.js';

/** A client as GET /v1/clients sends it: its lease, its boot health and its last heartbeat. */
export type ClientLease = Lease & { health?: ClientHealth };
export type ClientReport = Report & { health?: ClientHealth };

export type { Assignment, Commit, DiffResult, GcRoot, HeldWhy, Profile, Push, Ref, ReflogEntry };

/** The body of every error answer: { error: ApiErrorBody }. */
export interface ApiErrorBody {
  code?: string;
  message?: string;
  [detail: string]: unknown;
}

export interface ProfilesResponse {
  profiles: Profile[];
}
export interface GraphResponse {
  commits: Commit[];
  refs: Ref[];
}
export interface GcRootsResponse {
  roots: GcRoot[];
}
export interface ReflogResponse {
  reflog: ReflogEntry[];
}
export interface CommitResponse {
  commit: Commit;
}
export interface DiffResponse {
  diff: DiffResult;
}
export interface ClientsResponse {
  clients: ClientReport[];
}
export interface AssignmentsResponse {
  assignments: Assignment[];
}
export interface PushesResponse {
  pushes: Push[];
}
/** POST /v1/gc: what gc removes (dry run) or removed. */
export interface GcResponse {
  commits: string[];
  objects: string[];
  bytes: number;
}

/** One event of /v1/events. */
export interface ServerEvent {
  type: string;
  // biome-ignore lint/suspicious/noExplicitAny: events carry different fields per type; onEvent reads them by type
  data: any;
}

/** The storage view: the last dry run (and its commits), or what a real gc freed. */
export interface GcView {
  preview: GcResponse | null;
  commits: Commit[];
  freed: GcResponse | null;
  stale: boolean;
  busy: boolean;
}

/** A key a client made itself, held until an admin approves it (store/enrollment.ts). */
export type PendingKey = import('../store/enrollment.ts').PendingKey;

/** The page's state (state.js's S). */
export interface PageState {
  view: string;
  profiles: Profile[];
  profile: string | null;
  graph: GraphResponse;
  graphFor: string | null;
  held: { commits: Commit[]; why: Map<string, HeldWhy> };
  reflog: { branch: string | null; entries: ReflogEntry[] };
  reflogBranch: string | null;
  reflogAll: boolean;
  commitCache: Map<string, Promise<Commit>>;
  gc: GcView;
  selected: string | null;
  branch: string | null;
  assignments: Assignment[];
  clients: ClientReport[];
  /** Client keys held for approval (GET /v1/keys/pending). */
  pendingKeys: PendingKey[];
  pushes: Push[];
  diffs: Map<string, Promise<DiffResult>>;
  editing: string | null;
  stopEvents: (() => void) | null;
  loggedIn: boolean;
}
