/**
 * The Store: the strata domain behind one object. It owns the data
 * directory (strata.db, objects/, incoming/; docs/design.md) and knows
 * nothing of HTTP or SSH; server/ and cli/ are thin adapters over these
 * methods.
 *
 * This class is a facade: each method is one call into the module that owns
 * the concern (listed below). Every module works on one StoreCore
 * (store/core.ts); SQL lives only in store/db.ts, store/commit-index.ts and
 * store/tables/. Every history operation is a pure decision (store/dag.ts)
 * followed by one SQLite transaction (store/commit-write.ts). Blobs are made
 * durable before the rows that name them (store/objects.ts).
 */
import { INCOMING_DIR } from '../protocol/push-incoming.ts';
import { existsSync, promises as fsp } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import * as access from './access.ts';
import { aptCacheDir, buildLogPath, logTail, runBuild } from './build.ts';
import * as builds from './build-queue.ts';
import type { TarPolicy } from './bake.ts';
import { bootFacts, matchClient, planBoot, type BootPlan } from './boot-plan.ts';
import * as clients from './clients.ts';
import * as health from './boot-health.ts';
import { type BootRecord, buildInitrdFromTree, viewOf } from './commit-boot.ts';
import { createCommit, type CommitResult, type NewCommit } from './commit-write.ts';
import { makeCore, readConfigFile, type StoreCore } from './core.ts';
import { openDb, type DB } from './db.ts';
import { StrataError } from './errors.ts';
import * as gcm from './gc.ts';
import * as history from './history.ts';
import { importBase, type ImportOptions } from './import.ts';
import * as objs from './object-access.ts';
import type { ObjectStore } from './objects.ts';
import * as profiles from './profiles.ts';
import * as pushes from './pushes.ts';
import * as incoming from './incoming.ts';
import { newBase, type NewBaseOptions, type NewBaseResult } from './new-base.ts';
import { rebase, rebaseCheck, type RebaseResult } from './rebase.ts';
import * as refDelete from './ref-delete.ts';
import * as refs from './refs.ts';
import * as revs from './revisions.ts';
import type { EnrollmentTable } from './tables/enrollment.ts';
import type { HeartbeatsTable } from './tables/heartbeats.ts';
import * as quota from './quota.ts';
import {
  DEFAULT_CONFIG,
  type Assignment,
  type ClientLease,
  type Commit,
  type CommitId,
  type Compressor,
  type DiffResult,
  type Digest,
  type LayerEntry,
  type LayerInfo,
  type Profile,
  type Push,
  type Ref,
  type ReflogEntry,
  type SshKey,
  type StoreConfig,
} from './types.ts';

export { sourceKind } from './import.ts';
export type { BootPlan } from './boot-plan.ts';
export type { BootRecord } from './commit-boot.ts';
export type { GcReason } from './gc.ts';
export type { NewCommit } from './commit-write.ts';
export type { Build, Schedule } from './tables/builds.ts';
export type { NewBaseOptions, NewBaseResult } from './new-base.ts';
export type { RebaseResult } from './rebase.ts';

export interface OpenOptions {
  create?: boolean;
  config?: Partial<StoreConfig>;
}

export class Store {
  readonly dataDir: string;
  readonly objects: ObjectStore;
  readonly db: DB;
  readonly config: StoreConfig;
  readonly incomingDir: string;
  private readonly core: StoreCore;

  private constructor(core: StoreCore) {
    this.core = core;
    this.dataDir = core.dataDir;
    this.db = core.db;
    this.config = core.config;
    this.objects = core.objects;
    this.incomingDir = core.incomingDir;
  }

  static async open(dataDir: string, opts: OpenOptions = {}): Promise<Store> {
    const dir = resolvePath(dataDir);
    const dbPath = join(dir, 'strata.db');
    if (!existsSync(dbPath) && !opts.create) {
      throw new StrataError(
        'E_NOT_FOUND',
        `no strata data directory at ${dir}; run "strata init --data ${dataDir}" or "strata import" first`,
      );
    }
    await fsp.mkdir(dir, { recursive: true });
    await fsp.mkdir(join(dir, INCOMING_DIR), { recursive: true });
    const db = openDb(dbPath);
    const store = new Store(makeCore(dir, db, { ...DEFAULT_CONFIG, ...readConfigFile(dir), ...opts.config }));
    await store.objects.init();
    return store;
  }

  close(): void {
    this.db.close();
  }

  // objects (store/object-access.ts)
  objectPath = (digest: string): string => objs.objectPath(this.core, digest);
  hasObject = (digest: string): boolean => objs.hasObject(this.core, digest);
  /** Writes manifest + kernel + initrd + layers (named by digest) into DIR. */
  exportCommit = (rev: string, dir: string): Promise<{ id: CommitId; files: string[] }> => objs.exportCommit(this.core, rev, dir);

  // reading history (store/revisions.ts)
  getCommit = (id: string): Commit => revs.getCommit(this.core, id);
  manifestText = (id: string): string => revs.manifestText(this.core, id);
  /** Full id, 7+ hex prefix, tag, branch or profile, NAME~N, NAME@{N}. */
  resolve = (rev: string): CommitId => revs.resolve(this.core, rev);
  log = (rev: string, opts: { limit?: number } = {}): Commit[] => revs.log(this.core, rev, opts);
  graph = (profile: string): { commits: Commit[]; refs: Ref[] } => revs.graph(this.core, profile);
  getLayer = (digest: Digest): LayerInfo => revs.getLayer(this.core, digest);
  layerEntries = (digest: Digest): LayerEntry[] => revs.layerEntries(this.core, digest);
  diff = (a: string, b?: string): DiffResult => revs.diff(this.core, a, b);

  // profiles (store/profiles.ts)
  listProfiles = (): Profile[] => profiles.listProfiles(this.core);
  getProfile = (name: string): Profile => profiles.getProfile(this.core, name);
  setCmdline = (profile: string, args: string): Profile => profiles.setCmdline(this.core, profile, args);
  setCompression = (profile: string, compressor: Compressor, level: number | null): Profile =>
    profiles.setCompression(this.core, profile, compressor, level);

  // refs and reflog (store/refs.ts)
  branchInfo = (ref: string): { profile: Profile; ref: string; head: CommitId } => refs.branchInfo(this.core, ref);
  listRefs = (): Ref[] => refs.listRefs(this.core);
  tag = (name: string, rev: string): Ref => refs.tag(this.core, name, rev);
  branch = (name: string, rev: string): Ref => refs.branch(this.core, name, rev);
  reflog = (ref: string): ReflogEntry[] => refs.reflog(this.core, ref);

  // import (store/import.ts)
  /** Creates profile NAME whose first commit is the base made from SOURCE. */
  importBase = (name: string, source: string, opts: ImportOptions = {}): Promise<Commit> => importBase(this.core, name, source, opts);

  // commits and history operations (store/history.ts, store/commit-write.ts)
  commitTar = (
    profile: string,
    input: NodeJS.ReadableStream | string,
    opts: { message?: string; parent?: string; author?: string; policy?: TarPolicy } = {},
  ): Promise<CommitResult> => history.commitTar(this.core, profile, input, opts);
  /** Moves PROFILE back (default PROFILE~1); for a deleted branch, tag or profile, restores it. */
  rollback = (profile: string, rev?: string): { from: CommitId; to: CommitId; restored?: string[] } =>
    history.rollback(this.core, profile, rev);
  revert = async (profile: string, rev: string, opts: { author?: string } = {}): Promise<CommitResult> =>
    history.revert(this.core, profile, rev, opts);
  cherryPickConflicts = (profile: string, rev: string): string[] => history.cherryPickConflicts(this.core, profile, rev);
  cherryPick = async (profile: string, rev: string, opts: { force?: boolean; author?: string } = {}): Promise<CommitResult> =>
    history.cherryPick(this.core, profile, rev, opts);
  flatten = (
    profile: string,
    opts: { from?: string; author?: string; onProgress?: (p: { done: number; total: number }) => void } = {},
  ): Promise<CommitResult> => history.flatten(this.core, profile, opts);
  /**
   * Records a commit with exactly this manifest and moves its branch (the
   * transaction every operation above ends in). For tools that build
   * histories directly (bench/history.ts); the layers must be registered.
   */
  createCommit = (c: NewCommit): CommitResult => createCommit(this.core, c);

  // kernels that follow the tree (store/commit-boot.ts)
  /** Where commit ID's kernel came from (null: committed before kernels followed the tree). */
  bootRecord = (id: CommitId): BootRecord | null => this.core.t.boot.record(id);
  kernelPin = (profile: string): string | null => this.core.t.boot.pin(profile);
  /** Pins PROFILE to kernel VERSION (null: follow the newest kernel in the tree). */
  setKernelPin = (profile: string, version: string | null): void => this.core.t.boot.setPin(profile, version);
  /** The initramfs of REV's tree kernel (or KERNELVERSION's), written to OUTPUT. */
  initrdFromCommit = (rev: string, output: string, kernelVersion?: string) => {
    const c = this.getCommit(this.resolve(rev));
    return buildInitrdFromTree(viewOf(this.core), c.manifest.layers, { output, kernelVersion, where: `commit ${c.id.slice(0, 12)}` });
  };

  // assignments, clients and boots (store/clients.ts, store/boot-plan.ts)
  assign = (match: string, target: string, opts: { cmdline?: string } = {}): Assignment => clients.assign(this.core, match, target, opts);
  unassign = (match: string): void => clients.unassign(this.core, match);
  listAssignments = (): Assignment[] => this.core.t.assignments.all();
  /** The assignment, profile and exact commit a booting client gets (resolved now, so the boot is pinned). */
  matchClient = (mac: string | null, ip: string | null) => matchClient(this.core, mac, ip);
  /** What a client booting now gets (or why it must retry), for a server reached at serverUrl. */
  planBoot = (mac: string | null, ip: string | null, serverUrl: string): BootPlan => planBoot(bootFacts(this.core, mac, ip, serverUrl));
  recordClient = (c: {
    mac: string;
    ip: string;
    commit: string | null;
    profile?: string | null;
    boot: boolean;
    assignment?: string | null;
  }) => clients.recordClient(this.core, c);
  /** Every client seen, each with its boot health (held back or not). */
  listClients = (): (ClientLease & { health: health.ClientHealth })[] =>
    this.core.t.clients.all().map((c) => ({ ...c, health: health.clientHealth(this.core, c.mac) }));
  /** Why a heartbeat from mac may not claim commit (null: it may); see store/clients.ts. */
  heartbeatRefusal = (mac: string, ip: string | null, commit: string): string | null =>
    clients.heartbeatRefusal(this.core, mac, ip, commit);

  // keys and tokens (store/access.ts)
  addKey = (name: string, publicKeyLine: string, opts: { admin: boolean; profiles: string[] }): SshKey =>
    access.addKey(this.core, name, publicKeyLine, opts);
  listKeys = (): SshKey[] => this.core.t.keys.all();
  removeKey = (name: string): void => access.removeKey(this.core, name);
  findKey = (algo: string, keyData: Buffer): SshKey | null => this.core.t.keys.find(algo, keyData) ?? null;
  getKey = (name: string): SshKey => access.getKey(this.core, name);
  createToken = (name: string): { name: string; token: string } => access.createToken(this.core, name);
  verifyToken = (token: string): { name: string } | null => access.verifyToken(this.core, token);
  listTokens = (): { name: string; createdAt: number }[] => this.core.t.tokens.all();
  revokeToken = (name: string): void => access.revokeToken(this.core, name);

  // pushes (store/pushes.ts)
  pushArchivePath = (id: string): string => pushes.pushArchivePath(this.core, id);
  createPush = (p: {
    id: string;
    profile: string;
    parent: string;
    message: string;
    author: string;
    bytes: number;
    pushKey?: string | null;
  }): Push => pushes.createPush(this.core, p);
  /** The stored push a client sent with this idempotency key, if any (keys are scoped per author and profile). */
  findPushByKey = (author: string, profile: string, pushKey: string): Push | null =>
    this.core.t.pushes.byKey(author, profile, pushKey) ?? null;
  getPush = (id: string): Push => pushes.getPush(this.core, id);
  listPushes = (opts: { limit?: number } = {}): Push[] => this.core.t.pushes.recent(opts.limit ?? 200);
  pendingPushes = (): Push[] => this.core.t.pushes.pending();
  setPushState = (id: string, state: 'baking' | 'queued'): void => this.core.t.pushes.setState(id, state);
  /** Bakes and commits a queued push exactly once; throws (push stays queued) when the failure may pass. */
  landPush = (id: string): Promise<Push> => pushes.landPush(this.core, id);
  /** A push's --parent resolved, refused unless it is in the pushed profile's history. */
  pushParent = (profile: string, rev: string): CommitId => pushes.pushParent(this.core, profile, rev);

  // the rows behind store/enrollment.ts and store/heartbeats.ts (those classes own the rules)
  get enrollmentTable(): EnrollmentTable {
    return this.core.t.enrollment;
  }
  get heartbeatsTable(): HeartbeatsTable {
    return this.core.t.heartbeats;
  }

  // boot health and automatic fallback (store/boot-health.ts)
  /** A client asks to boot: settles its last boot's health, plans (maybe held back), records the boot awaiting its report. */
  /** onUnrecorded: told why this boot's health could not be recorded (the answer is planned from what is stored). */
  bootClient = (mac: string | null, ip: string | null, serverUrl: string, onUnrecorded?: (e: unknown) => void): BootPlan =>
    health.bootClient(this.core, mac, ip, serverUrl, onUnrecorded);
  reportBootHealth = (r: health.HealthReport): health.Verdict => health.reportBootHealth(this.core, r);
  clientHealth = (mac: string): health.ClientHealth => health.clientHealth(this.core, mac);
  clearClientHealth = (mac: string) => health.clearClientHealth(this.core, mac);
  healthCheck = (profile: string): string | null => health.healthCheck(this.core, profile);
  setHealthCheck = (profile: string, command: string): string | null => health.setHealthCheck(this.core, profile, command);
  // recipe builds and schedules (store/build.ts, store/build-queue.ts)
  /** Checks the recipe and queues a build of it for PROFILE. */
  enqueueBuild = (profile: string, recipe: string) => builds.enqueueBuild(this.core, profile, recipe);
  getBuild = (id: string) => builds.getBuild(this.core, id);
  listBuilds = (opts: { limit?: number; profile?: string } = {}) => this.core.t.builds.recent(opts.limit ?? 50, opts.profile);
  /** Runs queued build ID here and now (the caller holds the runner lock). */
  runBuild = (id: string, opts: Parameters<typeof runBuild>[2] = {}) => runBuild(this.core, id, opts);
  /** A runner that drains the queue one build at a time (the server's, or the CLI's when no server runs). */
  buildRunner = (events: ConstructorParameters<typeof builds.BuildRunner>[1] = {}) => new builds.BuildRunner(this.core, events);
  buildLogPath = (id: string) => buildLogPath(this.core, id);
  buildLogTail = (id: string, lines?: number) => logTail(this.core, id, lines);
  aptCacheDir = () => aptCacheDir(this.core);
  /** The recipe text of the build that made commit ID, if a build made it. */
  commitRecipe = (id: CommitId) => this.core.t.builds.commitRecipe(id) ?? null;
  setSchedule = (profile: string, recipe: string, spec: { every?: string; at?: string }) =>
    builds.setSchedule(this.core, profile, recipe, spec);
  removeSchedule = (profile: string): boolean => this.core.t.builds.removeSchedule(profile);
  listSchedules = () => this.core.t.builds.schedules();
  /** Queues the builds whose schedule is due (the server's timer). */
  enqueueDueBuilds = (now?: number) => builds.enqueueDue(this.core, now);

  // gc and fsck (store/gc.ts)
  /** Commits gc must keep, each with every reason (structured; gcReasonText gives the words). */
  gcRoots = (now = Date.now()): Map<CommitId, gcm.GcReason[]> => gcm.gcRoots(this.core, now);
  gc = (opts: { dryRun?: boolean; now?: number } = {}): Promise<gcm.GcResult> => gcm.gc(this.core, opts);

  // new bases, rebase and deleting refs (store/new-base.ts, store/rebase.ts, store/ref-delete.ts)
  /**
   * SOURCE as NAME's new base: a delta layer over the old base when small
   * enough, else a full base; NAME's own layers replayed onto it in one ref
   * move (or onto a branch NAME/rebase-<id> on conflict). A first import when
   * NAME does not exist; E_NOTHING_TO_DO when the tree is the current base's.
   */
  newBase = (name: string, source: string, opts: NewBaseOptions = {}): Promise<NewBaseResult> => newBase(this.core, name, source, opts);
  /** REF's own layers (above its base) replayed onto ONTO, reused as they are; E_CONFLICT unless force. */
  rebase = (ref: string, onto: string, opts: { force?: boolean; author?: string } = {}): Promise<RebaseResult> =>
    rebase(this.core, ref, onto, opts);
  /** What a rebase would collide on, without changing anything. */
  rebaseCheck = (ref: string, onto: string) => rebaseCheck(this.core, ref, onto);
  deleteBranch = (name: string): Ref => refDelete.deleteBranch(this.core, name);
  deleteTag = (name: string): Ref => refDelete.deleteTag(this.core, name);
  removeProfile = (name: string): { profile: string; refs: Ref[] } => refDelete.removeProfile(this.core, name);
  fsck = (): Promise<{ ok: boolean; problems: string[]; objects: number; commits: number }> => gcm.fsck(this.core);

  // push administration and incoming/ upkeep (store/pushes.ts, store/incoming.ts)
  /** Pushes waiting, baking or rejected, newest first, with their attempts and last error (`strata pushes`). */
  unfinishedPushes = (opts: { limit?: number } = {}): Push[] => this.core.t.pushes.unfinished(opts.limit ?? 200);
  /** Rejects a pending push with REASON and deletes its archive; E_NOTHING_TO_DO when it already landed. */
  rejectPush = (id: string, reason: string): Promise<Push> => pushes.rejectPush(this.core, id, reason);
  /** Removes incoming/'s dead files (a crash's leftovers); gc does it too. */
  cleanIncoming = (): Promise<string[]> => incoming.cleanIncoming(this.core);
  // space for pushes: quotas and the free-space reserve (store/quota.ts)
  pushSpaceFacts = (author: string): Promise<quota.PushSpaceFacts> => quota.pushSpaceFacts(this.core, author);
}
