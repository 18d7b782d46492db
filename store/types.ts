/**
 * Plain data types of the strata domain. Everything here is serialisable
 * (JSON) so the HTTP API, the CLI's --json and the web UI share one shape.
 */

/** 64 lowercase hex digits. */
export type Digest = string;
/** A commit id: sha256 of the commit's canonical manifest text. */
export type CommitId = string;

export type Compressor = 'zstd' | 'lz4' | 'gzip' | 'xz';

/** One entry of a layer as a tar (or squashfs) lists it, overlay meaning included. */
export interface LayerEntry {
  /** Normalised relative path without leading './' or '/', e.g. 'etc/hostname'. The root is ''. */
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  /** Symlink target, or hardlink target path (normalised like `path`). */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** An overlayfs whiteout: a char device 0:0. Means "deleted" in a layer. */
  whiteout?: boolean;
  /** A directory with trusted.overlay.opaque=y: hides everything below it in lower layers. */
  opaque?: boolean;
  xattrs?: Record<string, string>;
  /** sha256 of a regular file's content, when the baker read it. */
  sha256?: string;
}

export interface LayerInfo {
  digest: Digest;
  size: number;
  /** 'base' for imported images, 'layer' for baked upper dirs, 'flat' for flatten results. */
  kind: 'base' | 'layer' | 'flat';
  entryCount: number;
  uncompressedBytes: number;
  compressor: Compressor;
  createdAt: number;
}

export interface BlobRef {
  digest: Digest;
  size: number;
}

export interface Manifest {
  parent: CommitId | null;
  kernel: BlobRef | null;
  initrd: BlobRef | null;
  /** Base first. */
  layers: BlobRef[];
}

export interface Commit {
  id: CommitId;
  /** First parent; the one in the manifest. */
  parent: CommitId | null;
  /** Extra parent recorded outside the manifest (a stacked push's declared parent). */
  mergeParent: CommitId | null;
  profile: string;
  message: string;
  author: string;
  createdAt: number;
  manifest: Manifest;
  /**
   * manifest.layers.length, when the commit was read for a whole-history walk
   * (so a log needs no manifest); undefined otherwise: use the manifest.
   */
  layerCount?: number | undefined;
  /** The layer this commit added on top of its parent's chain, if any. */
  addedLayer: Digest | null;
  /** What the commit did: import, commit, push, revert, cherry-pick, flatten. */
  kind: 'import' | 'commit' | 'push' | 'revert' | 'cherry-pick' | 'flatten';
}

export interface Ref {
  name: string;
  type: 'branch' | 'tag';
  commit: CommitId;
  profile: string;
}

export interface ReflogEntry {
  id: number;
  ref: string;
  old: CommitId | null;
  new: CommitId | null;
  action: string;
  message: string;
  time: number;
}

export interface Profile {
  name: string;
  cmdline: string;
  compressor: Compressor;
  /** Compression level; null means tar2sqfs's default for that compressor. */
  level: number | null;
  kernel: BlobRef | null;
  initrd: BlobRef | null;
  head: CommitId | null;
  createdAt: number;
}

export interface Assignment {
  /** A MAC (aa:bb:..), an IP, a CIDR, or 'default'. */
  match: string;
  kind: 'mac' | 'ip' | 'cidr' | 'default';
  profile: string;
  /** A commit id or tag the client is pinned to; null follows the profile's head. */
  pin: string | null;
  cmdline: string;
}

export interface ClientLease {
  mac: string;
  ip: string;
  commit: CommitId | null;
  profile: string | null;
  lastSeen: number;
  lastBoot: number | null;
  assignment: string | null;
}

export interface SshKey {
  name: string;
  /** OpenSSH public key line ("ssh-ed25519 AAAA... comment"). */
  publicKey: string;
  fingerprint: string;
  admin: boolean;
  profiles: string[];
}

export type PushState = 'queued' | 'baking' | 'committed' | 'rejected';

export interface Push {
  id: string;
  profile: string;
  parent: CommitId;
  message: string;
  author: string;
  state: PushState;
  commit: CommitId | null;
  /** Set when the push landed on a new branch instead of the profile head. */
  branch: string | null;
  reason: string | null;
  bytes: number;
  createdAt: number;
  updatedAt: number;
  /** Bakes started so far (a push is rejected after StoreConfig.maxBakeAttempts). */
  attempts: number;
  /** Why the last bake failed when it may pass (disk full, tool missing); null otherwise. */
  lastError: string | null;
}

export interface DiffResult {
  added: string[];
  changed: string[];
  deleted: string[];
}

export interface StoreConfig {
  /** Refuse a commit whose chain is longer than this (overlayfs lowerdir limit is 500). */
  maxChainLength: number;
  /** Warn on commit from this chain length on. */
  warnChainLength: number;
  /** Reflog entries younger than this keep their commits alive in gc. */
  reflogKeepMs: number;
  /** Client leases younger than this keep the booted commit alive in gc. */
  leaseMs: number;
  /**
   * gc never removes a blob written (or re-stored) more recently than this:
   * another process may have just baked it and be about to commit it.
   */
  gcGraceMs: number;
  /** Caps on one pushed/committed archive once decompressed. */
  maxUncompressedBytes: number;
  /** Cap on one push as sent over SSH (compressed). */
  maxPushBytes: number;
  maxEntries: number;
  /** Failed boots of one commit in a row after which a client is served its last good commit (store/boot-health.ts). */
  healthMaxFailures: number;
  /** A boot whose health report comes later than this after it was served counts as failed. */
  healthTimeoutMs: number;
  /** The metadata budget of one archive and of one entry (paths, link targets, xattrs; store/tar-rules.ts). */
  maxMetadataBytes: number;
  maxEntryMetadataBytes: number;
  /** A push whose bake failed (or never finished) this many times is rejected, not retried again. */
  maxBakeAttempts: number;
  /** Cap on layers plus queued push archives, in bytes; 0: none. Pushes over it are refused. */
  storeQuotaBytes: number;
  /** Cap per push key on its queued pushes plus its pushes whose commits are still stored (compressed bytes); 0: none. */
  keyQuotaBytes: number;
  /**
   * Free space pushes never take, so the database, leases and gc can still
   * write at the limit. Absent: 2% of the filesystem, at most 1 GiB.
   */
  reserveBytes?: number;
  /**
   * Client rows (leases, and so gc roots) kept for MACs no assignment names:
   * boots and heartbeats are unauthenticated, so made-up MACs would add rows
   * without end. Over the cap the least recently seen unknown MAC goes.
   */
  unknownClientsMax: number;
  /**
   * A new base for an existing profile is stored as a delta layer over the
   * old base when that layer is smaller than this share of the full image
   * (0..1); otherwise as a full base.
   */
  deltaMaxShare: number;
  /** `strata gc --dry-run` lists push-conflict branches (P/push-*, P/rebase-*) that have not moved for this long. */
  staleBranchMs: number;
}

export const DEFAULT_CONFIG: StoreConfig = {
  maxChainLength: 128,
  warnChainLength: 64,
  reflogKeepMs: 30 * 24 * 3600 * 1000,
  leaseMs: 24 * 3600 * 1000,
  gcGraceMs: 3600 * 1000,
  maxUncompressedBytes: 16 * 1024 ** 3,
  maxPushBytes: 4 * 1024 ** 3,
  maxEntries: 2_000_000,
  healthMaxFailures: 3,
  healthTimeoutMs: 15 * 60 * 1000,
  maxMetadataBytes: 128 * 1024 ** 2,
  maxEntryMetadataBytes: 256 * 1024,
  maxBakeAttempts: 5,
  storeQuotaBytes: 0,
  keyQuotaBytes: 0,
  unknownClientsMax: 1000,
  deltaMaxShare: 0.5,
  staleBranchMs: 14 * 24 * 3600 * 1000,
};

/** A running client's hardware, as its heartbeat reports it (store/heartbeats.ts); fields it could not read are absent or empty. */
export interface Inventory {
  cpuModel?: string;
  cpus?: number;
  memoryKb?: number;
  nics?: { name: string; mac: string }[];
  disks?: { name: string; bytes: number }[];
  dmi?: { vendor?: string; product?: string; serial?: string };
}

/** The last heartbeat of a machine: what it runs, since when, on what (POST /v1/heartbeat). */
export interface Heartbeat {
  mac: string;
  ip: string | null;
  commit: CommitId;
  uptimeSec: number;
  inventory: Inventory;
  /** When the server received it (ms since the epoch). */
  at: number;
}

/** A client as `strata clients` and GET /v1/clients show it: its lease and its last heartbeat (null: none yet). */
export interface ClientReport extends ClientLease {
  heartbeat: Heartbeat | null;
}
