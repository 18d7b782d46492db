/**
 * What every store module works on: the data directory, its database (one
 * repository object per table group, the only places with SQL), the object
 * store and the settings. The Store facade (store/store.ts) builds one and
 * hands it to the module functions.
 */
import { INCOMING_DIR } from '../protocol/push-incoming.ts';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DB } from './db.ts';
import { StrataError } from './errors.ts';
import { CommitIndex } from './commit-index.ts';
import { ObjectStore } from './objects.ts';
import { KeysTable, TokensTable } from './tables/access.ts';
import { BootTable } from './tables/boot.ts';
import { BootHealthTable } from './tables/boot-health.ts';
import { BuildsTable } from './tables/builds.ts';
import { AssignmentsTable, ClientsTable } from './tables/clients.ts';
import { CommitsTable } from './tables/commits.ts';
import { EnrollmentTable } from './tables/enrollment.ts';
import { HeartbeatsTable } from './tables/heartbeats.ts';
import { LayersTable } from './tables/layers.ts';
import { ProfilesTable } from './tables/profiles.ts';
import { PushesTable } from './tables/pushes.ts';
import { RefsTable } from './tables/refs.ts';
import type { StoreConfig } from './types.ts';

export interface StoreCore {
  readonly dataDir: string;
  readonly db: DB;
  readonly objects: ObjectStore;
  readonly config: StoreConfig;
  readonly incomingDir: string;
  /** Commits and their DAG links: the one cache getCommit, resolve, log, graph and gc read. */
  readonly commits: CommitIndex;
  readonly t: Tables;
}

export interface Tables {
  readonly profiles: ProfilesTable;
  readonly layers: LayersTable;
  readonly commits: CommitsTable;
  readonly refs: RefsTable;
  readonly assignments: AssignmentsTable;
  readonly clients: ClientsTable;
  readonly keys: KeysTable;
  readonly tokens: TokensTable;
  readonly pushes: PushesTable;
  readonly boot: BootTable;
  readonly enrollment: EnrollmentTable;
  readonly heartbeats: HeartbeatsTable;
  readonly bootHealth: BootHealthTable;
  readonly builds: BuildsTable;
}

export function makeCore(dataDir: string, db: DB, config: StoreConfig): StoreCore {
  return {
    dataDir,
    db,
    config,
    objects: new ObjectStore(dataDir),
    incomingDir: join(dataDir, INCOMING_DIR),
    commits: new CommitIndex(db),
    t: {
      profiles: new ProfilesTable(db),
      layers: new LayersTable(db),
      commits: new CommitsTable(db),
      refs: new RefsTable(db),
      assignments: new AssignmentsTable(db),
      clients: new ClientsTable(db),
      keys: new KeysTable(db),
      tokens: new TokensTable(db),
      pushes: new PushesTable(db),
      boot: new BootTable(db),
      enrollment: new EnrollmentTable(db),
      heartbeats: new HeartbeatsTable(db),
      bootHealth: new BootHealthTable(db),
      builds: new BuildsTable(db),
    },
  };
}

/** Runs `fn` in one IMMEDIATE transaction (no other writer interleaves). */
export function inTransaction<T>(core: StoreCore, fn: () => T): T {
  return core.db.transaction(fn).immediate();
}

/**
 * <data>/config.json overrides StoreConfig (limits, chain lengths, keep
 * times), e.g. {"maxUncompressedBytes": 4294967296, "warnChainLength": 32}.
 */
export function readConfigFile(dir: string): Partial<StoreConfig> {
  const p = join(dir, 'config.json');
  if (!existsSync(p)) return {};
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as Partial<StoreConfig>;
  } catch (e) {
    throw new StrataError('E_BAD_ARGUMENT', `${p} is not valid JSON: ${(e as Error).message}`);
  }
}
