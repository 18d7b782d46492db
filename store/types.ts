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
  deltaMaxShare: 0.5,
  staleBranchMs: 14 * 24 * 3600 * 1000,
};
