/**
 * The Store: the strata domain behind one object. It owns the data
 * directory (DESIGN.md: strata.db, objects/, incoming/) and knows nothing of
 * HTTP or SSH; server/ and cli/ are thin adapters over these methods.
 *
 * Every history operation is a pure decision (store/dag.ts) followed by one
 * SQLite transaction (createCommit / moveRef). Blobs are made durable before
 * the rows that name them (store/objects.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, promises as fsp, statSync, openSync, readSync, closeSync, readFileSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { spawn } from 'node:child_process';
import { openDb, type DB } from './db.ts';
import { StrataError, wrapIoError } from './errors.ts';
import { ObjectStore, assertDigest, sha256File } from './objects.ts';
import { commitIdOf, parseManifest, renderManifest } from './manifest.ts';
import {
  chainDifference,
  conflictingPaths,
  logOrder,
  mergeBase,
  nthFirstParent,
  reachable,
  touchedPaths,
  unionTouch,
  type TouchSet,
} from './dag.ts';
import { CommitIndex, type CommitRow } from './commit-index.ts';
import { matchAssignment, normalizeMac, parseMatch } from './assignments.ts';
import { bakeTar, type BakedImage, type TarPolicy } from './bake.ts';
import { assertSquashfs, listSquashfs } from './squashfs.ts';
import { mergedTree } from './overlay-merge.ts';
import { flattenToTar } from './flatten-stream.ts';
import { extractIsoFile, inspectIso, isNestedRootfs } from './iso.ts';
import { type BootFiles, decideCommitBoot, decideImportBoot, recordBoot } from './commit-boot.ts';
import {
  DEFAULT_CONFIG,
  type Assignment,
  type BlobRef,
  type ClientLease,
  type Commit,
  type CommitId,
  type Compressor,
  type DiffResult,
  type Digest,
  type LayerEntry,
  type LayerInfo,
  type Manifest,
  type Profile,
  type Push,
  type PushState,
  type Ref,
  type ReflogEntry,
  type SshKey,
  type StoreConfig,
} from './types.ts';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const REF_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(\/[A-Za-z0-9][A-Za-z0-9._-]{0,63})*$/;

export interface OpenOptions {
  create?: boolean;
  config?: Partial<StoreConfig>;
}

interface NewCommit {
  profile: string;
  /** The ref to move (a branch). */
  ref: string;
  /** The head the decision was made against; the transaction refuses to move a ref that moved since. null = ref must not exist. */
  expectedHead: CommitId | null | undefined;
  parent: CommitId | null;
  mergeParent?: CommitId | null;
  layers: BlobRef[];
  kernel: BlobRef | null;
  initrd: BlobRef | null;
  message: string;
  author: string;
  kind: Commit['kind'];
  addedLayer: Digest | null;
  /** A freshly baked layer to register in the same transaction. */
  newLayer?: { info: Omit<LayerInfo, 'createdAt'>; entries: LayerEntry[] };
  /** Further new layers (an ISO whose root is a stack of squashfs files). */
  moreLayers?: { info: Omit<LayerInfo, 'createdAt'>; entries: LayerEntry[] }[];
  action: string;
  /** Extra statements to run inside the same transaction (e.g. marking a push committed). */
  also?: (id: CommitId) => void;
}

/** Where a layer made on `parent` goes when the branch's head is elsewhere (decideParent). */
type ParentDecision = { kind: 'onto'; onto: CommitId } | { kind: 'conflict'; paths: string[] };

export class Store {
  readonly dataDir: string;
  readonly objects: ObjectStore;
  readonly db: DB;
  readonly config: StoreConfig;
  readonly incomingDir: string;
  private entryCache = new Map<Digest, LayerEntry[]>();
  /** Commits and their DAG links: the one cache getCommit, resolve, log, graph and gc read. */
  private readonly commits: CommitIndex;

  private constructor(dataDir: string, db: DB, config: StoreConfig) {
    this.dataDir = dataDir;
    this.db = db;
    this.config = config;
    this.objects = new ObjectStore(dataDir);
    this.incomingDir = join(dataDir, 'incoming');
    this.commits = new CommitIndex(db);
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
    await fsp.mkdir(join(dir, 'incoming'), { recursive: true });
    const db = openDb(dbPath);
    const store = new Store(dir, db, { ...DEFAULT_CONFIG, ...readConfigFile(dir), ...opts.config });
    await store.objects.init();
    return store;
  }

  close(): void {
    this.db.close();
  }

  // ---------------------------------------------------------------- objects

  objectPath(digest: string): string {
    const p = this.objects.pathOf(assertDigest(digest));
    if (!existsSync(p)) throw new StrataError('E_OBJECT_NOT_FOUND', `no object sha256:${digest} in this store`);
    return p;
  }

  hasObject(digest: string): boolean {
    return this.objects.has(assertDigest(digest));
  }

  // ---------------------------------------------------------------- commits

  private commitRow(id: string): CommitRow | undefined {
    return this.db.prepare('SELECT * FROM commits WHERE id = ?').get(id) as CommitRow | undefined;
  }

  getCommit(id: string): Commit {
    const c = this.commits.get(id);
    if (!c) throw new StrataError('E_COMMIT_NOT_FOUND', `no commit ${id}`);
    return c;
  }

  manifestText(id: string): string {
    const r = this.db.prepare('SELECT manifest FROM commits WHERE id = ?').get(id) as { manifest: string } | undefined;
    if (!r) throw new StrataError('E_COMMIT_NOT_FOUND', `no commit ${id}`);
    return r.manifest;
  }

  /**
   * Names a commit: full id, unique 7+ hex prefix, a tag, a branch or
   * profile (its head), NAME~N (N first parents back) or NAME@{N} (the
   * ref's value N moves ago, from the reflog).
   */
  resolve(rev: string): CommitId {
    const r = rev.trim();
    const tilde = /^(.+?)~(\d*)$/.exec(r);
    if (tilde) {
      const base = this.resolve(tilde[1]!);
      const n = tilde[2] === '' ? 1 : Number(tilde[2]);
      const id = nthFirstParent(base, n, this.commits.lookup);
      if (!id) throw new StrataError('E_COMMIT_NOT_FOUND', `${r}: the history of ${tilde[1]} is not ${n} commit(s) deep`);
      return id;
    }
    const at = /^(.+)@\{(\d+)\}$/.exec(r);
    if (at) {
      const ref = at[1]!;
      const n = Number(at[2]);
      const entries = this.db.prepare('SELECT new FROM reflog WHERE ref = ? ORDER BY id DESC').all(ref) as { new: string | null }[];
      const e = entries[n];
      if (!e?.new) throw new StrataError('E_COMMIT_NOT_FOUND', `${r}: the reflog of ${ref} has no entry ${n} (see "strata reflog ${ref}")`);
      return e.new;
    }
    const ref = this.db.prepare('SELECT commit_id FROM refs WHERE name = ?').get(r) as { commit_id: string } | undefined;
    if (ref) return ref.commit_id;
    if (/^[0-9a-f]{64}$/.test(r)) {
      if (this.commitRow(r)) return r;
      throw new StrataError('E_COMMIT_NOT_FOUND', `no commit ${r}`);
    }
    if (/^[0-9a-f]{7,63}$/.test(r)) {
      const rows = this.db.prepare('SELECT id FROM commits WHERE id >= ? AND id < ? LIMIT 11').all(r, `${r}g`) as { id: string }[];
      if (rows.length === 1) return rows[0]!.id;
      if (rows.length > 1) {
        throw new StrataError(
          'E_AMBIGUOUS_REF',
          `${r} is ambiguous: it starts ${rows.length > 10 ? 'more than 10' : rows.length} commits (${rows
            .slice(0, 5)
            .map((x) => x.id.slice(0, 12))
            .join(', ')}); give more digits`,
          { candidates: rows.map((x) => x.id) },
        );
      }
    }
    if (/^[0-9a-f]{1,6}$/.test(r)) {
      throw new StrataError('E_COMMIT_NOT_FOUND', `${r}: a commit prefix needs at least 7 hex digits`);
    }
    throw new StrataError('E_COMMIT_NOT_FOUND', `no commit, tag, branch or profile named "${r}" (see "strata log PROFILE")`);
  }

  log(rev: string, opts: { limit?: number } = {}): Commit[] {
    const head = this.resolve(rev);
    // A cold process reads the whole table in one query (a 10,000-commit log
    // in one pass, not 10,000 lookups); a warm one (the server) only new rows.
    return logOrder([head], this.commits.whole(), opts.limit ?? Infinity).map((n) => this.getCommit(n.id));
  }

  /** Every commit reachable from the profile's branches (P and P/...) and tags on them. */
  graph(profile: string): { commits: Commit[]; refs: Ref[] } {
    this.getProfile(profile);
    const refs = this.listRefs().filter((r) => r.profile === profile);
    const nodes = logOrder(
      refs.map((r) => r.commit),
      this.commits.whole(),
    );
    return { commits: nodes.map((n) => this.getCommit(n.id)), refs };
  }

  // ---------------------------------------------------------------- layers

  private layerRow(digest: Digest) {
    return this.db
      .prepare('SELECT digest, size, kind, entry_count, uncompressed_bytes, compressor, created_at FROM layers WHERE digest = ?')
      .get(digest) as
      | {
          digest: string;
          size: number;
          kind: LayerInfo['kind'];
          entry_count: number;
          uncompressed_bytes: number;
          compressor: Compressor;
          created_at: number;
        }
      | undefined;
  }

  getLayer(digest: Digest): LayerInfo {
    const r = this.layerRow(digest);
    if (!r) throw new StrataError('E_OBJECT_NOT_FOUND', `no layer sha256:${digest}`);
    return {
      digest: r.digest,
      size: r.size,
      kind: r.kind,
      entryCount: r.entry_count,
      uncompressedBytes: r.uncompressed_bytes,
      compressor: r.compressor,
      createdAt: r.created_at,
    };
  }

  layerEntries(digest: Digest): LayerEntry[] {
    const cached = this.entryCache.get(digest);
    if (cached) return cached;
    const r = this.db.prepare('SELECT entries FROM layers WHERE digest = ?').get(digest) as { entries: Buffer } | undefined;
    if (!r) throw new StrataError('E_OBJECT_NOT_FOUND', `no layer sha256:${digest}`);
    const entries = JSON.parse(gunzipSync(r.entries).toString('utf8')) as LayerEntry[];
    if (this.entryCache.size > 64) this.entryCache.clear();
    this.entryCache.set(digest, entries);
    return entries;
  }

  private touch(layers: Digest[]): TouchSet {
    return unionTouch(layers.map((d) => touchedPaths(this.layerEntries(d))));
  }

  // ---------------------------------------------------------------- profiles

  private rowToProfile(r: Record<string, unknown>): Profile {
    const head = this.db.prepare("SELECT commit_id FROM refs WHERE name = ? AND type = 'branch'").get(r.name) as
      | { commit_id: string }
      | undefined;
    return {
      name: r.name as string,
      cmdline: r.cmdline as string,
      compressor: r.compressor as Compressor,
      level: (r.level as number | null) ?? null,
      kernel: r.kernel_digest ? { digest: r.kernel_digest as string, size: r.kernel_size as number } : null,
      initrd: r.initrd_digest ? { digest: r.initrd_digest as string, size: r.initrd_size as number } : null,
      head: head?.commit_id ?? null,
      createdAt: r.created_at as number,
    };
  }

  listProfiles(): Profile[] {
    return (this.db.prepare('SELECT * FROM profiles ORDER BY name').all() as Record<string, unknown>[]).map((r) => this.rowToProfile(r));
  }

  getProfile(name: string): Profile {
    const r = this.db.prepare('SELECT * FROM profiles WHERE name = ?').get(name) as Record<string, unknown> | undefined;
    if (!r)
      throw new StrataError(
        'E_PROFILE_NOT_FOUND',
        `no profile "${name}" (see "strata log" / the profiles list; create one with "strata import ${name} SOURCE")`,
      );
    return this.rowToProfile(r);
  }

  /**
   * A branch and what it belongs to. History operations take a branch name:
   * a profile's own branch (`lab`) or one of its side branches (`lab/feature`).
   */
  branchInfo(ref: string): { profile: Profile; ref: string; head: CommitId } {
    const r = this.db.prepare('SELECT commit_id, type, profile FROM refs WHERE name = ?').get(ref) as
      | { commit_id: string; type: string; profile: string }
      | undefined;
    if (!r) {
      this.getProfile(ref);
      throw new StrataError('E_PROFILE_NOT_FOUND', `profile ${ref} has no commits`);
    }
    if (r.type !== 'branch') throw new StrataError('E_BAD_ARGUMENT', `${ref} is a tag; tags do not move (use a branch or a profile)`);
    return { profile: this.getProfile(r.profile), ref, head: r.commit_id };
  }

  /** The profile a branch belongs to: `lab` and `lab/push-x` both belong to `lab`. */
  private profileOfRef(ref: string): string {
    return ref.split('/')[0]!;
  }

  setCmdline(profile: string, args: string): Profile {
    this.getProfile(profile);
    if (/[\n\r\0]/.test(args)) throw new StrataError('E_BAD_ARGUMENT', 'a kernel command line cannot contain newlines');
    this.db.prepare('UPDATE profiles SET cmdline = ? WHERE name = ?').run(args.trim(), profile);
    return this.getProfile(profile);
  }

  setCompression(profile: string, compressor: Compressor, level: number | null): Profile {
    this.getProfile(profile);
    if (!['zstd', 'lz4', 'gzip', 'xz'].includes(compressor))
      throw new StrataError('E_BAD_ARGUMENT', `unknown compressor ${compressor} (zstd, lz4, gzip or xz)`);
    this.db.prepare('UPDATE profiles SET compressor = ?, level = ? WHERE name = ?').run(compressor, level, profile);
    return this.getProfile(profile);
  }

  // ---------------------------------------------------------------- the one place commits are made

  private createCommit(c: NewCommit): { commit: Commit; warnings: string[] } {
    const warnings: string[] = [];
    if (c.layers.length > this.config.maxChainLength) {
      throw new StrataError(
        'E_CHAIN_TOO_LONG',
        `this commit would stack ${c.layers.length} layers; the limit is ${this.config.maxChainLength} (overlayfs mounts at most 500 lower layers and its option string must fit one page). Run "strata flatten ${c.profile}" first.`,
      );
    }
    if (c.layers.length >= this.config.warnChainLength) {
      warnings.push(
        `the chain of ${c.profile} is now ${c.layers.length} layers deep; boots fetch and mount every layer, consider "strata flatten ${c.profile}"`,
      );
    }
    const manifest: Manifest = { parent: c.parent, kernel: c.kernel, initrd: c.initrd, layers: c.layers };
    const text = renderManifest(manifest);
    const id = commitIdOf(text);
    const now = Date.now();
    this.db
      .transaction(() => {
        faultPoint('ref-move');
        const cur = this.db.prepare('SELECT commit_id, type FROM refs WHERE name = ?').get(c.ref) as
          | { commit_id: string; type: string }
          | undefined;
        if (cur && cur.type !== 'branch') throw new StrataError('E_REF_EXISTS', `${c.ref} is a tag, not a branch`);
        if (c.expectedHead !== undefined && (cur?.commit_id ?? null) !== c.expectedHead) {
          throw new StrataError(
            'E_STALE_PARENT',
            `${c.ref} moved to ${cur?.commit_id.slice(0, 12) ?? 'nothing'} while this was being prepared; nothing was changed, try again`,
          );
        }
        for (const l of [...(c.newLayer ? [c.newLayer] : []), ...(c.moreLayers ?? [])]) {
          this.db
            .prepare(`INSERT OR IGNORE INTO layers (digest, size, kind, entry_count, uncompressed_bytes, compressor, entries, created_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
            .run(
              l.info.digest,
              l.info.size,
              l.info.kind,
              l.info.entryCount,
              l.info.uncompressedBytes,
              l.info.compressor,
              gzipSync(JSON.stringify(l.entries)),
              now,
            );
        }
        for (const l of c.layers) {
          if (!this.layerRow(l.digest)) throw new StrataError('E_INTERNAL', `layer ${l.digest} is not registered`);
        }
        // Same manifest = same commit id: committing identical content on the
        // same parent again is not an error, the existing commit is reused.
        this.db
          .prepare(`INSERT OR IGNORE INTO commits (id, parent, merge_parent, profile, message, author, created_at, manifest, added_layer, kind)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(id, c.parent, c.mergeParent ?? null, c.profile, c.message, c.author, now, text, c.addedLayer, c.kind);
        this.moveRefTx(c.ref, 'branch', id, c.profile, c.action, c.message);
        c.also?.(id);
      })
      .immediate();
    return { commit: this.getCommit(id), warnings };
  }

  /** Must run inside a transaction. */
  private moveRefTx(name: string, type: Ref['type'], to: CommitId, profile: string, action: string, message: string): void {
    const cur = this.db.prepare('SELECT commit_id FROM refs WHERE name = ?').get(name) as { commit_id: string } | undefined;
    if (cur?.commit_id === to) return;
    this.db
      .prepare(`INSERT INTO refs (name, type, commit_id, profile) VALUES (?, ?, ?, ?)
      ON CONFLICT(name) DO UPDATE SET commit_id = excluded.commit_id`)
      .run(name, type, to, profile);
    this.db
      .prepare('INSERT INTO reflog (ref, old, new, action, message, time) VALUES (?, ?, ?, ?, ?, ?)')
      .run(name, cur?.commit_id ?? null, to, action, message.split('\n')[0]!.slice(0, 200), Date.now());
  }

  private async registerBaked(baked: BakedImage): Promise<BlobRef> {
    await this.objects.adopt(baked.path, baked.digest);
    return { digest: baked.digest, size: baked.size };
  }

  private bakeOptions(profile: Profile, policy?: TarPolicy) {
    return {
      tmpDir: this.objects.tmpDir,
      compressor: profile.compressor,
      level: profile.level,
      maxUncompressedBytes: this.config.maxUncompressedBytes,
      maxEntries: this.config.maxEntries,
      policy,
    };
  }

  // ---------------------------------------------------------------- kernel and initrd of a new commit

  /**
   * C with the kernel and initramfs its tree decides (store/commit-boot.ts):
   * the parent's when the tree's kernel did not change or the tree has none,
   * else the tree's kernel with an initramfs built from its own modules. The
   * decision is recorded with the commit, in its transaction.
   */
  private async withBoot(c: NewCommit, files?: BootFiles): Promise<NewCommit> {
    // Layers baked for this commit are registered only in its transaction: lend their listings.
    const fresh = new Map([...(c.newLayer ? [c.newLayer] : []), ...(c.moreLayers ?? [])].map((l) => [l.info.digest, l.entries]));
    const view = { db: this.db, objects: this.objects, layerEntries: (d: Digest) => fresh.get(d) ?? this.layerEntries(d) };
    const boot = c.parent
      ? await decideCommitBoot(view, c.layers, c.profile, this.getCommit(c.parent))
      : await decideImportBoot(view, c.layers, c.profile, files);
    const also = c.also;
    return {
      ...c,
      kernel: boot.kernel,
      initrd: boot.initrd,
      also: (id) => {
        recordBoot(this.db, id, boot.record);
        also?.(id);
      },
    };
  }

  // ---------------------------------------------------------------- import

  /** Creates profile NAME whose first commit is the base made from SOURCE. */
  async importBase(
    name: string,
    source: string,
    opts: { kernel?: string; initrd?: string; message?: string; author?: string; compressor?: Compressor; level?: number | null } = {},
  ): Promise<Commit> {
    if (!NAME_RE.test(name))
      throw new StrataError('E_BAD_ARGUMENT', `"${name}" is not a usable profile name (letters, digits, . _ -; up to 64)`);
    if (
      this.db.prepare('SELECT 1 FROM profiles WHERE name = ?').get(name) ||
      this.db.prepare('SELECT 1 FROM refs WHERE name = ?').get(name)
    ) {
      throw new StrataError('E_PROFILE_EXISTS', `profile "${name}" already exists; commit on top of it or choose another name`);
    }
    const compressor = opts.compressor ?? 'zstd';
    const level = opts.level === undefined ? null : opts.level;
    const pseudo: Profile = { name, cmdline: '', compressor, level, kernel: null, initrd: null, head: null, createdAt: Date.now() };
    const kind = await sourceKind(source);
    let layer: BlobRef;
    let entries: LayerEntry[];
    let uncompressed = 0;
    /** Layers above the base when an ISO ships its root as a stack (newer Ubuntu). */
    const upperLayers: { ref: BlobRef; entries: LayerEntry[]; uncompressed: number }[] = [];
    let kernelSrc = opts.kernel;
    const initrdSrc = opts.initrd;
    const tmpFiles: string[] = [];
    try {
      if (kind === 'dir') {
        // --sort=name: squashfs keeps small files in fragment blocks in tar
        // order, and sqfs2tar (flatten, export) reads in name order; sorted
        // input made reading a layer back 4x faster here.
        const tar = spawn('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '--sort=name', '-C', source, '-cf', '-', '.'], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let err = '';
        tar.stderr.on('data', (d) => {
          err += d;
        });
        const exited = new Promise<number>((res) => tar.on('close', (code) => res(code ?? 1)));
        const baked = await bakeTar(tar.stdout, this.bakeOptions(pseudo));
        if ((await exited) !== 0) {
          await fsp.rm(baked.path, { force: true });
          throw new StrataError('E_BAD_SOURCE', `reading the directory ${source} failed: ${err.trim()}`);
        }
        layer = await this.registerBaked(baked);
        entries = baked.entries;
        uncompressed = baked.uncompressedBytes;
      } else if (kind === 'tar') {
        const baked = await bakeTar(source, this.bakeOptions(pseudo));
        layer = await this.registerBaked(baked);
        entries = baked.entries;
        uncompressed = baked.uncompressedBytes;
      } else {
        let sqfs = source;
        if (kind === 'iso') {
          const iso = await inspectIso(source);
          sqfs = this.objects.tempPath('iso-root');
          tmpFiles.push(sqfs);
          await extractIsoFile(source, iso.rootfs, sqfs);
          if (await isNestedRootfs(sqfs)) {
            throw new StrataError(
              'E_BAD_ISO',
              `${source}: ${iso.rootfs} holds LiveOS/rootfs.img (an ext4 image inside squashfs, older Fedora); strata cannot read it without mounting. Loop-mount rootfs.img yourself and "strata import ${name} <that directory>".`,
            );
          }
          if (!kernelSrc) {
            kernelSrc = this.objects.tempPath('iso-kernel');
            tmpFiles.push(kernelSrc);
            await extractIsoFile(source, iso.kernel, kernelSrc);
          }
          // The ISO's own initrd ignores strata's boot arguments: the initramfs is built from the root image's modules.
          for (const inner of (iso.layers ?? []).slice(1)) {
            const f = this.objects.tempPath('iso-layer');
            tmpFiles.push(f);
            await extractIsoFile(source, inner, f);
            await assertSquashfs(f);
            const le = await listSquashfs(f);
            upperLayers.push({
              ref: await this.objects.putFile(f),
              entries: le,
              uncompressed: le.reduce((a, e) => a + (e.type === 'file' ? e.size : 0), 0),
            });
          }
        }
        await assertSquashfs(sqfs);
        entries = await listSquashfs(sqfs);
        uncompressed = entries.reduce((a, e) => a + (e.type === 'file' ? e.size : 0), 0);
        layer = await this.objects.putFile(sqfs);
      }
      const first = await this.withBoot(
        {
          profile: name,
          ref: name,
          expectedHead: null,
          parent: null,
          layers: [layer, ...upperLayers.map((u) => u.ref)],
          kernel: null,
          initrd: null,
          moreLayers: upperLayers.map((u) => ({
            info: {
              digest: u.ref.digest,
              size: u.ref.size,
              kind: 'base' as const,
              entryCount: u.entries.length,
              uncompressedBytes: u.uncompressed,
              compressor,
            },
            entries: u.entries,
          })),
          message: opts.message ?? `import ${source.split('/').pop()}`,
          author: opts.author ?? 'admin',
          kind: 'import',
          addedLayer: layer.digest,
          newLayer: {
            info: {
              digest: layer.digest,
              size: layer.size,
              kind: 'base',
              entryCount: entries.length,
              uncompressedBytes: uncompressed,
              compressor,
            },
            entries,
          },
          action: 'import',
        },
        { kernel: kernelSrc, initrd: initrdSrc, kernelFrom: opts.kernel ? 'override' : 'iso' },
      );
      const { kernel, initrd } = first;
      const now = Date.now();
      const { commit } = (() => {
        // Profile row and first commit in one transaction: a crash leaves
        // either nothing or a complete profile.
        let result!: { commit: Commit; warnings: string[] };
        this.db.transaction(() => {
          this.db
            .prepare(`INSERT INTO profiles (name, cmdline, compressor, level, kernel_digest, kernel_size, initrd_digest, initrd_size, created_at)
            VALUES (?, '', ?, ?, ?, ?, ?, ?, ?)`)
            .run(name, compressor, level, kernel?.digest ?? null, kernel?.size ?? null, initrd?.digest ?? null, initrd?.size ?? null, now);
          result = this.createCommit(first);
        })();
        return result;
      })();
      return commit;
    } catch (e) {
      throw wrapIoError(e, `importing ${source}`);
    } finally {
      for (const f of tmpFiles) await fsp.rm(f, { force: true });
    }
  }

  // ---------------------------------------------------------------- commit a tar

  /**
   * An upper-directory tar becomes a layer on top of PARENT (default: the
   * profile's head). When another commit landed on the profile meanwhile, the
   * layer is stacked onto the new head if it touches none of the paths that
   * changed; otherwise nothing moves and E_STALE_PARENT says why.
   */
  async commitTar(
    profileName: string,
    input: NodeJS.ReadableStream | string,
    opts: { message?: string; parent?: string; author?: string; policy?: TarPolicy } = {},
  ): Promise<{ commit: Commit; warnings: string[] }> {
    const { profile, head: startHead } = this.branchInfo(profileName);
    const parent = opts.parent ? this.resolve(opts.parent) : startHead;
    const baked = await bakeTar(input, this.bakeOptions(profile, opts.policy));
    const layer = await this.registerBaked(baked);
    const r = await this.commitAgainstHead(
      () => this.branchInfo(profileName).head,
      parent,
      baked.entries,
      (head, decision) => {
        if (decision.kind === 'conflict') {
          throw new StrataError(
            'E_STALE_PARENT',
            `${profileName} moved past ${parent.slice(0, 12)} and the new commits change the same paths: ${decision.paths.slice(0, 10).join(', ')}${decision.paths.length > 10 ? ', ...' : ''}. Nothing was committed; commit against ${head.slice(0, 12)} or use a branch.`,
            { paths: decision.paths },
          );
        }
        const base = this.getCommit(decision.onto);
        return {
          profile: profile.name,
          ref: profileName,
          expectedHead: head,
          parent: decision.onto,
          mergeParent: decision.onto === parent ? null : parent,
          layers: [...base.manifest.layers, layer],
          kernel: base.manifest.kernel,
          initrd: base.manifest.initrd,
          message: opts.message ?? 'commit',
          author: opts.author ?? 'admin',
          kind: 'commit',
          addedLayer: layer.digest,
          newLayer: {
            info: {
              digest: layer.digest,
              size: layer.size,
              kind: 'layer',
              entryCount: baked.entries.length,
              uncompressedBytes: baked.uncompressedBytes,
              compressor: profile.compressor,
            },
            entries: baked.entries,
          },
          action: 'commit',
        };
      },
    );
    return { commit: r.commit, warnings: [...baked.warnings, ...r.warnings] };
  }

  /**
   * Decide, then commit, against a head that other writers may move (commits
   * and pushes): read the head, decide purely where the new layer goes
   * (decideParent), let `prepare` turn that into a commit (or throw, e.g. on
   * a conflict; not retried), and run the transaction with the head it read
   * as expectedHead. When another writer moved the head in between, the
   * transaction refuses with E_STALE_PARENT and nothing was written: decide
   * again against the new head, up to 5 more times, then give up with that error.
   */
  private async commitAgainstHead(
    readHead: () => CommitId,
    parent: CommitId,
    entries: LayerEntry[],
    prepare: (head: CommitId, decision: ParentDecision) => NewCommit,
  ): Promise<{ commit: Commit; warnings: string[] }> {
    for (let attempt = 0; ; attempt++) {
      const head = readHead();
      const c = await this.withBoot(prepare(head, this.decideParent(parent, head, entries)));
      try {
        return this.createCommit(c);
      } catch (e) {
        if ((e as StrataError).code === 'E_STALE_PARENT' && attempt < 5) continue;
        throw e;
      }
    }
  }

  /**
   * Pure-ish parent rule (shared by commits and pushes): fast-forward when
   * the parent is the head; stack onto the head when the new layer touches no
   * path that changed between parent and head; otherwise a conflict.
   */
  private decideParent(parent: CommitId, head: CommitId, entries: LayerEntry[]): ParentDecision {
    if (parent === head) return { kind: 'onto', onto: head };
    const changed = chainDifference(this.chainOf(parent), this.chainOf(head));
    const paths = conflictingPaths(touchedPaths(entries), this.touch(changed));
    return paths.length ? { kind: 'conflict', paths } : { kind: 'onto', onto: head };
  }

  private chainOf(id: CommitId): Digest[] {
    return this.getCommit(id).manifest.layers.map((l) => l.digest);
  }

  // ---------------------------------------------------------------- history operations

  rollback(profile: string, rev?: string): { from: CommitId; to: CommitId } {
    const b = this.branchInfo(profile);
    const from = b.head;
    const to = rev ? this.resolve(rev) : this.resolve(`${profile}~1`);
    if (to === from) throw new StrataError('E_NOTHING_TO_DO', `${profile} is already at ${to.slice(0, 12)}`);
    this.db
      .transaction(() => {
        const cur = this.db.prepare('SELECT commit_id FROM refs WHERE name = ?').get(profile) as { commit_id: string };
        if (cur.commit_id !== from)
          throw new StrataError('E_STALE_PARENT', `${profile} moved while rolling back; nothing was changed, try again`);
        this.moveRefTx(profile, 'branch', to, b.profile.name, 'rollback', `rollback from ${from.slice(0, 12)} to ${to.slice(0, 12)}`);
      })
      .immediate();
    return { from, to };
  }

  async revert(profile: string, rev: string, opts: { author?: string } = {}): Promise<{ commit: Commit; warnings: string[] }> {
    const b = this.branchInfo(profile);
    const head = this.getCommit(b.head);
    const target = this.getCommit(this.resolve(rev));
    const layer = target.addedLayer;
    const chain = head.manifest.layers.map((l) => l.digest);
    const idx = layer ? chain.indexOf(layer) : -1;
    if (!layer || idx < 0)
      throw new StrataError(
        'E_NOTHING_TO_DO',
        `the head of ${profile} does not contain the layer that ${target.id.slice(0, 12)} added (already reverted, or flattened into another layer)`,
      );
    if (idx === 0)
      throw new StrataError(
        'E_BAD_ARGUMENT',
        `${target.id.slice(0, 12)} is the base of ${profile}; a chain cannot drop its base (import a new base instead)`,
      );
    const later = chain.slice(idx + 1);
    const warnings: string[] = [];
    const overlap = conflictingPaths(touchedPaths(this.layerEntries(layer)), this.touch(later));
    if (overlap.length)
      warnings.push(
        `later layers also change ${overlap.length} of the reverted paths (${overlap.slice(0, 5).join(', ')}${overlap.length > 5 ? ', ...' : ''}); their version stays`,
      );
    const r = this.createCommit(
      await this.withBoot({
        profile: b.profile.name,
        ref: profile,
        expectedHead: head.id,
        parent: head.id,
        layers: head.manifest.layers.filter((l) => l.digest !== layer),
        kernel: head.manifest.kernel,
        initrd: head.manifest.initrd,
        message: `revert ${target.id.slice(0, 12)}: ${target.message}`,
        author: opts.author ?? 'admin',
        kind: 'revert',
        addedLayer: null,
        action: 'revert',
      }),
    );
    return { commit: r.commit, warnings: [...warnings, ...r.warnings] };
  }

  /** Paths a cherry-pick of `rev` onto `profile` would collide on (empty = clean). */
  cherryPickConflicts(profile: string, rev: string): string[] {
    const head = this.getCommit(this.branchInfo(profile).head);
    const picked = this.getCommit(this.resolve(rev));
    if (!picked.addedLayer) return [];
    const base = picked.parent ? mergeBase(head.id, picked.parent, this.commits.whole()) : null;
    const since = chainDifference(
      base ? this.chainOf(base) : [],
      head.manifest.layers.map((l) => l.digest),
    );
    return conflictingPaths(touchedPaths(this.layerEntries(picked.addedLayer)), this.touch(since));
  }

  async cherryPick(
    profile: string,
    rev: string,
    opts: { force?: boolean; author?: string } = {},
  ): Promise<{ commit: Commit; warnings: string[] }> {
    const b = this.branchInfo(profile);
    const head = this.getCommit(b.head);
    const picked = this.getCommit(this.resolve(rev));
    if (!picked.addedLayer || picked.kind === 'import')
      throw new StrataError(
        'E_BAD_ARGUMENT',
        `${picked.id.slice(0, 12)} adds no layer of its own (${picked.kind}); only commits that add a layer can be cherry-picked`,
      );
    if (head.manifest.layers.some((l) => l.digest === picked.addedLayer))
      throw new StrataError('E_NOTHING_TO_DO', `${profile} already contains the layer of ${picked.id.slice(0, 12)}`);
    const conflicts = this.cherryPickConflicts(profile, picked.id);
    const warnings: string[] = [];
    if (conflicts.length && !opts.force) {
      throw new StrataError(
        'E_CONFLICT',
        `${profile} changed the same paths since it diverged from ${picked.id.slice(0, 12)}: ${conflicts.slice(0, 10).join(', ')}${conflicts.length > 10 ? ` and ${conflicts.length - 10} more` : ''}. Nothing was changed; use --force to stack the layer anyway (its version wins).`,
        { paths: conflicts },
      );
    }
    if (conflicts.length) warnings.push(`forced over ${conflicts.length} conflicting path(s); the picked layer's version wins`);
    const layer = picked.manifest.layers.find((l) => l.digest === picked.addedLayer)!;
    // The picked layer is reused as is: same digest, no re-bake.
    const r = this.createCommit(
      await this.withBoot({
        profile: b.profile.name,
        ref: profile,
        expectedHead: head.id,
        parent: head.id,
        layers: [...head.manifest.layers, layer],
        kernel: head.manifest.kernel,
        initrd: head.manifest.initrd,
        message: `cherry-pick ${picked.id.slice(0, 12)}: ${picked.message}`,
        author: opts.author ?? 'admin',
        kind: 'cherry-pick',
        addedLayer: layer.digest,
        action: 'cherry-pick',
      }),
    );
    return { commit: r.commit, warnings: [...warnings, ...r.warnings] };
  }

  /**
   * One layer for the chain (or the part above `from`). `onProgress` is
   * called about once a second while the merged tree is read and baked (a
   * flatten at the default zstd level takes minutes on a large base).
   */
  async flatten(
    profileName: string,
    opts: { from?: string; author?: string; onProgress?: (p: { done: number; total: number }) => void } = {},
  ): Promise<{ commit: Commit; warnings: string[] }> {
    const { profile, head: headId } = this.branchInfo(profileName);
    const head = this.getCommit(headId);
    const chain = head.manifest.layers;
    let keep = 0;
    if (opts.from) {
      const from = this.getCommit(this.resolve(opts.from));
      const fl = from.manifest.layers;
      const isPrefix = fl.length <= chain.length && fl.every((l, i) => chain[i]!.digest === l.digest);
      if (!isPrefix)
        throw new StrataError(
          'E_BAD_ARGUMENT',
          `${from.id.slice(0, 12)}'s chain is not the start of ${profileName}'s chain; --from must name an earlier commit of ${profileName}`,
        );
      keep = fl.length;
    }
    const part = chain.slice(keep);
    if (part.length < 2)
      throw new StrataError(
        'E_NOTHING_TO_DO',
        `${part.length === 0 ? 'no layers' : 'only one layer'} above ${keep ? 'that commit' : 'nothing'}; nothing to flatten`,
      );
    const entries = part.map((l) => this.layerEntries(l.digest));
    const tar = flattenToTar(
      part.map((l) => this.objectPath(l.digest)),
      entries,
      { keepBelow: keep > 0 },
    );
    // The merged tar is the store's own (headers encoded from checked layers):
    // no re-check, its listing comes from the merge (docs/decisions.md, "Flatten speed").
    const onProgress = opts.onProgress;
    const ticker = onProgress ? setInterval(() => onProgress(tar.progress()), 1000) : null;
    let baked: Awaited<ReturnType<typeof bakeTar>>;
    try {
      baked = await bakeTar(tar, { ...this.bakeOptions(profile), trustedListing: () => tar.listing() });
    } finally {
      if (ticker) clearInterval(ticker);
    }
    onProgress?.(tar.progress());
    const layer = await this.registerBaked(baked);
    const r = this.createCommit(
      await this.withBoot({
        profile: profile.name,
        ref: profileName,
        expectedHead: head.id,
        parent: head.id,
        layers: [...chain.slice(0, keep), layer],
        kernel: head.manifest.kernel,
        initrd: head.manifest.initrd,
        message: `flatten ${part.length} layers${keep ? ` above ${chain[keep - 1]!.digest.slice(0, 12)}` : ''}`,
        author: opts.author ?? 'admin',
        kind: 'flatten',
        addedLayer: layer.digest,
        action: 'flatten',
        newLayer: {
          info: {
            digest: layer.digest,
            size: layer.size,
            kind: 'flat',
            entryCount: baked.entries.length,
            uncompressedBytes: baked.uncompressedBytes,
            compressor: profile.compressor,
          },
          entries: baked.entries,
        },
      }),
    );
    return { commit: r.commit, warnings: [...baked.warnings, ...r.warnings] };
  }

  diff(a: string, b?: string): DiffResult {
    const ca = this.getCommit(this.resolve(a));
    let from: Commit | null;
    let to: Commit;
    if (b === undefined) {
      from = ca.parent ? this.getCommit(ca.parent) : null;
      to = ca;
    } else {
      from = ca;
      to = this.getCommit(this.resolve(b));
    }
    const treeOf = (c: Commit | null) => mergedTree(c ? c.manifest.layers.map((l) => this.layerEntries(l.digest)) : []);
    const ta = treeOf(from);
    const tb = treeOf(to);
    const added: string[] = [];
    const changed: string[] = [];
    const deleted: string[] = [];
    for (const [p, e] of tb) {
      if (p === '') continue;
      const o = ta.get(p);
      if (!o) added.push(p);
      else if (!sameEntry(o, e)) changed.push(p);
    }
    for (const p of ta.keys()) if (p !== '' && !tb.has(p)) deleted.push(p);
    return { added: added.sort(), changed: changed.sort(), deleted: deleted.sort() };
  }

  // ---------------------------------------------------------------- refs

  listRefs(): Ref[] {
    return (
      this.db.prepare('SELECT name, type, commit_id, profile FROM refs ORDER BY type, name').all() as {
        name: string;
        type: Ref['type'];
        commit_id: string;
        profile: string;
      }[]
    ).map((r) => ({ name: r.name, type: r.type, commit: r.commit_id, profile: r.profile }));
  }

  tag(name: string, rev: string): Ref {
    if (!REF_RE.test(name) || /^[0-9a-f]{7,64}$/.test(name)) throw new StrataError('E_BAD_ARGUMENT', `"${name}" is not a usable tag name`);
    const id = this.resolve(rev);
    const c = this.getCommit(id);
    this.db
      .transaction(() => {
        if (this.db.prepare('SELECT 1 FROM refs WHERE name = ?').get(name))
          throw new StrataError('E_REF_EXISTS', `a tag or branch named "${name}" already exists`);
        this.moveRefTx(name, 'tag', id, c.profile, 'tag', `tag ${name}`);
      })
      .immediate();
    return { name, type: 'tag', commit: id, profile: c.profile };
  }

  /** A new branch. `P/NAME` belongs to profile P; a bare NAME becomes a new profile with the source's settings. */
  branch(name: string, rev: string): Ref {
    if (!REF_RE.test(name) || /^[0-9a-f]{7,64}$/.test(name))
      throw new StrataError('E_BAD_ARGUMENT', `"${name}" is not a usable branch name`);
    const id = this.resolve(rev);
    const src = this.getCommit(id);
    const profile = this.profileOfRef(name);
    this.db
      .transaction(() => {
        if (this.db.prepare('SELECT 1 FROM refs WHERE name = ?').get(name))
          throw new StrataError('E_REF_EXISTS', `a tag or branch named "${name}" already exists`);
        if (!this.db.prepare('SELECT 1 FROM profiles WHERE name = ?').get(profile)) {
          if (name.includes('/')) throw new StrataError('E_PROFILE_NOT_FOUND', `no profile "${profile}" for branch ${name}`);
          const sp = this.db.prepare('SELECT * FROM profiles WHERE name = ?').get(src.profile) as Record<string, unknown>;
          this.db
            .prepare(`INSERT INTO profiles (name, cmdline, compressor, level, kernel_digest, kernel_size, initrd_digest, initrd_size, created_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
            .run(name, sp.cmdline, sp.compressor, sp.level, sp.kernel_digest, sp.kernel_size, sp.initrd_digest, sp.initrd_size, Date.now());
        }
        this.moveRefTx(name, 'branch', id, profile, 'branch', `branch ${name} at ${id.slice(0, 12)}`);
      })
      .immediate();
    return { name, type: 'branch', commit: id, profile };
  }

  reflog(ref: string): ReflogEntry[] {
    const rows = this.db.prepare('SELECT * FROM reflog WHERE ref = ? ORDER BY id DESC').all(ref) as ReflogEntry[];
    if (!rows.length && !this.db.prepare('SELECT 1 FROM refs WHERE name = ?').get(ref))
      throw new StrataError('E_REF_NOT_FOUND', `no branch, tag or profile named "${ref}"`);
    return rows;
  }

  // ---------------------------------------------------------------- export

  /** Writes manifest + kernel + initrd + layers (named by digest) into DIR. */
  async exportCommit(rev: string, dir: string): Promise<{ id: CommitId; files: string[] }> {
    const id = this.resolve(rev);
    const c = this.getCommit(id);
    await fsp.mkdir(dir, { recursive: true });
    const files: string[] = [];
    const blobs = [c.manifest.kernel, c.manifest.initrd, ...c.manifest.layers].filter((b): b is BlobRef => !!b);
    try {
      for (const b of blobs) {
        const dest = join(dir, b.digest);
        if (!existsSync(dest)) await fsp.copyFile(this.objectPath(b.digest), dest);
        files.push(dest);
      }
      const mpath = join(dir, `${id}.manifest`);
      await fsp.writeFile(mpath, this.manifestText(id));
      files.push(mpath);
      await fsp.writeFile(join(dir, 'manifest'), this.manifestText(id));
    } catch (e) {
      throw wrapIoError(e, `exporting to ${dir}`);
    }
    return { id, files };
  }

  // ---------------------------------------------------------------- assignments

  assign(match: string, target: string, opts: { cmdline?: string } = {}): Assignment {
    const m = parseMatch(match);
    const [profile, pinRev] = target.split('@') as [string, string | undefined];
    this.getProfile(profile);
    let pin: string | null = null;
    if (pinRev !== undefined) {
      // A tag pin keeps following the tag; anything else is fixed to a commit id now.
      const tag = this.db.prepare("SELECT name FROM refs WHERE name = ? AND type = 'tag'").get(pinRev) as { name: string } | undefined;
      pin = tag ? tag.name : this.resolve(pinRev);
    }
    const cmdline = (opts.cmdline ?? '').trim();
    this.db
      .prepare(`INSERT INTO assignments (match, kind, profile, pin, cmdline) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT(match) DO UPDATE SET kind = excluded.kind, profile = excluded.profile, pin = excluded.pin, cmdline = excluded.cmdline`)
      .run(m.match, m.kind, profile, pin, cmdline);
    return { match: m.match, kind: m.kind, profile, pin, cmdline };
  }

  unassign(match: string): void {
    const m = parseMatch(match);
    const r = this.db.prepare('DELETE FROM assignments WHERE match = ?').run(m.match);
    if (!r.changes) throw new StrataError('E_NOT_FOUND', `no assignment for ${m.match}`);
  }

  listAssignments(): Assignment[] {
    return this.db.prepare('SELECT match, kind, profile, pin, cmdline FROM assignments ORDER BY kind, match').all() as Assignment[];
  }

  /** The assignment, profile and exact commit a booting client gets (resolved now, so the boot is pinned). */
  matchClient(mac: string | null, ip: string | null): { assignment: Assignment; profile: Profile; commit: CommitId } | null {
    const a = matchAssignment(this.listAssignments(), mac, ip);
    if (!a) return null;
    const profile = this.getProfile(a.profile);
    const commit = a.pin ? this.resolve(a.pin) : profile.head;
    if (!commit) return null;
    return { assignment: a, profile, commit };
  }

  // ---------------------------------------------------------------- clients

  recordClient(c: {
    mac: string;
    ip: string;
    commit: string | null;
    profile?: string | null;
    boot: boolean;
    assignment?: string | null;
  }): void {
    const mac = normalizeMac(c.mac);
    if (!mac) throw new StrataError('E_BAD_ARGUMENT', `not a MAC address: ${c.mac}`);
    if (c.commit !== null && !/^[0-9a-f]{64}$/.test(c.commit))
      throw new StrataError('E_BAD_ARGUMENT', 'commit must be a full 64-hex commit id');
    const now = Date.now();
    this.db
      .prepare(`INSERT INTO clients (mac, ip, commit_id, profile, last_seen, last_boot, assignment) VALUES (@mac, @ip, @commit, @profile, @now, @boot, @assignment)
      ON CONFLICT(mac) DO UPDATE SET ip = excluded.ip, commit_id = COALESCE(excluded.commit_id, clients.commit_id), profile = COALESCE(excluded.profile, clients.profile),
        last_seen = excluded.last_seen, last_boot = COALESCE(excluded.last_boot, clients.last_boot), assignment = COALESCE(excluded.assignment, clients.assignment)`)
      .run({
        mac,
        ip: c.ip,
        commit: c.commit,
        profile: c.profile ?? null,
        now,
        boot: c.boot ? now : null,
        assignment: c.assignment ?? null,
      });
  }

  listClients(): ClientLease[] {
    return (this.db.prepare('SELECT * FROM clients ORDER BY last_seen DESC').all() as Record<string, unknown>[]).map((r) => ({
      mac: r.mac as string,
      ip: r.ip as string,
      commit: r.commit_id as string | null,
      profile: r.profile as string | null,
      lastSeen: r.last_seen as number,
      lastBoot: r.last_boot as number | null,
      assignment: r.assignment as string | null,
    }));
  }

  // ---------------------------------------------------------------- keys and tokens

  addKey(name: string, publicKeyLine: string, opts: { admin: boolean; profiles: string[] }): SshKey {
    if (!NAME_RE.test(name)) throw new StrataError('E_BAD_ARGUMENT', `"${name}" is not a usable key name`);
    const parts = publicKeyLine.trim().split(/\s+/);
    const algo = parts[0] ?? '';
    const data = Buffer.from(parts[1] ?? '', 'base64');
    // The blob starts with its own algorithm name: a cheap check that this is an OpenSSH public key line.
    const inner = data.length > 4 ? data.subarray(4, 4 + data.readUInt32BE(0)).toString() : '';
    if (!/^(ssh-|ecdsa-|sk-)/.test(algo) || inner !== algo)
      throw new StrataError(
        'E_BAD_ARGUMENT',
        'not an OpenSSH public key line (expected e.g. "ssh-ed25519 AAAA... comment", the content of a .pub file)',
      );
    if (!opts.admin && !opts.profiles.length) throw new StrataError('E_BAD_ARGUMENT', 'a key needs --admin or at least one --profile');
    for (const p of opts.profiles) this.getProfile(p);
    const fingerprint = `SHA256:${createHash('sha256').update(data).digest('base64').replace(/=+$/, '')}`;
    this.db
      .prepare(`INSERT INTO keys (name, public_key, algo, key_data, fingerprint, admin, profiles) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT(name) DO UPDATE SET public_key = excluded.public_key, algo = excluded.algo, key_data = excluded.key_data, fingerprint = excluded.fingerprint, admin = excluded.admin, profiles = excluded.profiles`)
      .run(name, parts.slice(0, 2).join(' '), algo, data, fingerprint, opts.admin ? 1 : 0, JSON.stringify(opts.profiles));
    return { name, publicKey: parts.slice(0, 2).join(' '), fingerprint, admin: opts.admin, profiles: opts.profiles };
  }

  private rowToKey(r: Record<string, unknown>): SshKey {
    return {
      name: r.name as string,
      publicKey: r.public_key as string,
      fingerprint: r.fingerprint as string,
      admin: !!r.admin,
      profiles: JSON.parse(r.profiles as string) as string[],
    };
  }

  listKeys(): SshKey[] {
    return (this.db.prepare('SELECT * FROM keys ORDER BY name').all() as Record<string, unknown>[]).map((r) => this.rowToKey(r));
  }

  removeKey(name: string): void {
    if (!this.db.prepare('DELETE FROM keys WHERE name = ?').run(name).changes) throw new StrataError('E_NOT_FOUND', `no key named ${name}`);
  }

  findKey(algo: string, keyData: Buffer): SshKey | null {
    const r = this.db.prepare('SELECT * FROM keys WHERE algo = ? AND key_data = ?').get(algo, keyData) as
      | Record<string, unknown>
      | undefined;
    return r ? this.rowToKey(r) : null;
  }

  getKey(name: string): SshKey {
    const r = this.db.prepare('SELECT * FROM keys WHERE name = ?').get(name) as Record<string, unknown> | undefined;
    if (!r) throw new StrataError('E_NOT_FOUND', `no key named ${name}`);
    return this.rowToKey(r);
  }

  createToken(name: string): { name: string; token: string } {
    if (!NAME_RE.test(name)) throw new StrataError('E_BAD_ARGUMENT', `"${name}" is not a usable token name`);
    const token = `st_${randomBytes(24).toString('base64url')}`;
    // Only a hash is kept: a leaked database does not leak usable tokens.
    const hash = createHash('sha256').update(token).digest('hex');
    try {
      this.db.prepare('INSERT INTO tokens (name, hash, created_at) VALUES (?, ?, ?)').run(name, hash, Date.now());
    } catch {
      throw new StrataError('E_REF_EXISTS', `a token named ${name} already exists; revoke it first`);
    }
    return { name, token };
  }

  verifyToken(token: string): { name: string } | null {
    if (!token) return null;
    const hash = createHash('sha256').update(token).digest('hex');
    const r = this.db.prepare('SELECT name FROM tokens WHERE hash = ?').get(hash) as { name: string } | undefined;
    return r ?? null;
  }

  listTokens(): { name: string; createdAt: number }[] {
    return (this.db.prepare('SELECT name, created_at FROM tokens ORDER BY name').all() as { name: string; created_at: number }[]).map(
      (r) => ({ name: r.name, createdAt: r.created_at }),
    );
  }

  revokeToken(name: string): void {
    if (!this.db.prepare('DELETE FROM tokens WHERE name = ?').run(name).changes)
      throw new StrataError('E_NOT_FOUND', `no token named ${name}`);
  }

  // ---------------------------------------------------------------- pushes

  private rowToPush(r: Record<string, unknown>): Push {
    return {
      id: r.id as string,
      profile: r.profile as string,
      parent: r.parent as string,
      message: r.message as string,
      author: r.author as string,
      state: r.state as PushState,
      commit: r.commit_id as string | null,
      branch: r.branch as string | null,
      reason: r.reason as string | null,
      bytes: r.bytes as number,
      createdAt: r.created_at as number,
      updatedAt: r.updated_at as number,
    };
  }

  pushArchivePath(id: string): string {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new StrataError('E_BAD_ARGUMENT', `not a push id: ${id}`);
    return join(this.incomingDir, `${id}.tar.zst`);
  }

  /**
   * Records a push whose archive is already fsynced at incoming/<id>.tar.zst.
   * With a `pushKey` (client-chosen idempotency key), a push already stored
   * under the same (author, profile, key) wins: it is returned and nothing is
   * inserted, so the caller sees an id other than its own and must drop its
   * archive. The unique index decides, so two concurrent uploads with one key
   * still make one push.
   */
  createPush(p: {
    id: string;
    profile: string;
    parent: string;
    message: string;
    author: string;
    bytes: number;
    pushKey?: string | null;
  }): Push {
    this.pushArchivePath(p.id);
    const pushKey = p.pushKey ?? null;
    if (pushKey !== null && !/^[A-Za-z0-9_-]{16,64}$/.test(pushKey))
      throw new StrataError('E_BAD_ARGUMENT', `not a push key: ${JSON.stringify(pushKey)} (16-64 characters of A-Z a-z 0-9 _ -)`);
    const now = Date.now();
    try {
      this.db
        .prepare(
          `INSERT INTO pushes (id, profile, parent, message, author, state, bytes, created_at, updated_at, push_key) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)`,
        )
        .run(p.id, p.profile, p.parent, p.message, p.author, p.bytes, now, now, pushKey);
    } catch (e) {
      const existing = pushKey === null ? null : this.findPushByKey(p.author, p.profile, pushKey);
      if (existing && (e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') return existing;
      throw e;
    }
    return this.getPush(p.id);
  }

  /** The stored push a client sent with this idempotency key, if any (keys are scoped per author and profile). */
  findPushByKey(author: string, profile: string, pushKey: string): Push | null {
    const r = this.db.prepare('SELECT * FROM pushes WHERE author = ? AND profile = ? AND push_key = ?').get(author, profile, pushKey) as
      | Record<string, unknown>
      | undefined;
    return r ? this.rowToPush(r) : null;
  }

  getPush(id: string): Push {
    const r = this.db.prepare('SELECT * FROM pushes WHERE id = ?').get(id) as Record<string, unknown> | undefined;
    if (!r) throw new StrataError('E_NOT_FOUND', `no push ${id}`);
    return this.rowToPush(r);
  }

  listPushes(opts: { limit?: number } = {}): Push[] {
    return (
      this.db.prepare('SELECT * FROM pushes ORDER BY created_at DESC, id DESC LIMIT ?').all(opts.limit ?? 200) as Record<string, unknown>[]
    ).map((r) => this.rowToPush(r));
  }

  pendingPushes(): Push[] {
    return (
      this.db.prepare("SELECT * FROM pushes WHERE state IN ('queued','baking') ORDER BY created_at, id").all() as Record<string, unknown>[]
    ).map((r) => this.rowToPush(r));
  }

  setPushState(id: string, state: 'baking' | 'queued'): void {
    this.db.prepare("UPDATE pushes SET state = ?, updated_at = ? WHERE id = ? AND state IN ('queued','baking')").run(state, Date.now(), id);
  }

  private rejectPush(id: string, reason: string): Push {
    this.db
      .prepare("UPDATE pushes SET state = 'rejected', reason = ?, updated_at = ? WHERE id = ? AND state IN ('queued','baking')")
      .run(reason, Date.now(), id);
    return this.getPush(id);
  }

  /**
   * Bakes a queued push into a layer and a commit, exactly once: the commit,
   * the ref move and the push's 'committed' state are one transaction, and a
   * push already committed or rejected is returned as it is. The archive is
   * deleted only after that transaction (a crash before it re-bakes; baking
   * is deterministic so the commit is the same).
   */
  async landPush(id: string): Promise<Push> {
    let push = this.getPush(id);
    if (push.state === 'committed' || push.state === 'rejected') return push;
    const archive = this.pushArchivePath(id);
    if (!existsSync(archive)) return this.rejectPush(id, 'the pushed archive is missing from incoming/');
    let baked: BakedImage;
    let profile: Profile;
    try {
      profile = this.getProfile(push.profile);
      this.getCommit(push.parent);
      const key = (() => {
        try {
          return this.getKey(push.author);
        } catch {
          return null;
        }
      })();
      // Devices other than whiteouts come only from admins: a client's
      // /dev is devtmpfs, so a device node in a pushed layer is unexpected.
      // setuid files and capabilities are allowed: a key that may push to a
      // profile can already change anything in it (sudo is setuid).
      const policy: TarPolicy = { allowDevices: !!key?.admin, allowSetuid: true, allowCapabilities: true };
      baked = await bakeTar(archive, this.bakeOptions(profile, policy));
    } catch (e) {
      const err = e as StrataError;
      if (err.code === 'E_NO_SPACE') throw e; // leave it queued: it may bake once space is freed
      push = this.rejectPush(id, err.message ?? String(e));
      await fsp.rm(archive, { force: true });
      return push;
    }
    const layer = await this.registerBaked(baked);
    const newLayer = {
      info: {
        digest: layer.digest,
        size: layer.size,
        kind: 'layer' as const,
        entryCount: baked.entries.length,
        uncompressedBytes: baked.uncompressedBytes,
        compressor: profile.compressor,
      },
      entries: baked.entries,
    };
    try {
      await this.commitAgainstHead(
        () => this.getProfile(push.profile).head!,
        push.parent,
        baked.entries,
        (head, decision) => {
          // A conflicting push is not lost: it lands on a branch of its own.
          const parentCommit = this.getCommit(decision.kind === 'onto' ? decision.onto : push.parent);
          const onBranch = decision.kind === 'conflict' ? `${push.profile}/push-${id}` : null;
          return {
            profile: push.profile,
            ref: onBranch ?? push.profile,
            expectedHead: onBranch ? null : head,
            parent: parentCommit.id,
            mergeParent: decision.kind === 'onto' && decision.onto !== push.parent ? push.parent : null,
            layers: [...parentCommit.manifest.layers, layer],
            kernel: parentCommit.manifest.kernel,
            initrd: parentCommit.manifest.initrd,
            message: push.message || `push ${id}`,
            author: push.author,
            kind: 'push',
            addedLayer: layer.digest,
            newLayer,
            action: 'push',
            also: (commitId) => {
              const r = this.db
                .prepare(
                  "UPDATE pushes SET state = 'committed', commit_id = ?, branch = ?, reason = ?, updated_at = ? WHERE id = ? AND state IN ('queued','baking')",
                )
                .run(
                  commitId,
                  onBranch,
                  onBranch
                    ? `conflicts with ${push.profile} on: ${decision.kind === 'conflict' ? decision.paths.slice(0, 10).join(', ') : ''}`
                    : null,
                  Date.now(),
                  id,
                );
              // Another process landed it first: undo everything in this transaction.
              if (!r.changes) throw new StrataError('E_NOTHING_TO_DO', `push ${id} is already ${this.getPush(id).state}`);
            },
          };
        },
      );
    } catch (e) {
      const code = (e as StrataError).code;
      // E_BAD_SOURCE: the pushed tree's kernel cannot run the hook (store/commit-boot.ts).
      if (code === 'E_CHAIN_TOO_LONG' || code === 'E_REF_EXISTS' || code === 'E_BAD_SOURCE')
        push = this.rejectPush(id, (e as Error).message);
      else if (code !== 'E_NOTHING_TO_DO') throw e;
    }
    await fsp.rm(archive, { force: true });
    return this.getPush(id);
  }

  // ---------------------------------------------------------------- gc and fsck

  /**
   * Commits that must survive gc, each with every reason that keeps it (in
   * this order: branch/tag, reflog, pin, client lease, pending push; no
   * duplicates), e.g. a head that a client booted is kept as
   * ['branch lab', 'reflog of lab', 'booted by client 52:54:00:00:00:01'].
   */
  gcRoots(now = Date.now()): Map<CommitId, string[]> {
    const roots = new Map<CommitId, string[]>();
    const keep = (id: CommitId, reason: string) => {
      const reasons = roots.get(id);
      if (!reasons) roots.set(id, [reason]);
      else if (!reasons.includes(reason)) reasons.push(reason);
    };
    for (const r of this.listRefs()) keep(r.commit, `${r.type} ${r.name}`);
    const rl = this.db.prepare('SELECT ref, old, new FROM reflog WHERE time > ?').all(now - this.config.reflogKeepMs) as {
      ref: string;
      old: string | null;
      new: string | null;
    }[];
    for (const e of rl) for (const id of [e.old, e.new]) if (id) keep(id, `reflog of ${e.ref}`);
    for (const a of this.listAssignments()) {
      if (!a.pin) continue;
      try {
        keep(this.resolve(a.pin), `pinned by assignment ${a.match}`);
      } catch {
        /* a dangling pin keeps nothing */
      }
    }
    const leases = this.db
      .prepare('SELECT mac, commit_id FROM clients WHERE commit_id IS NOT NULL AND last_seen > ?')
      .all(now - this.config.leaseMs) as { mac: string; commit_id: string }[];
    for (const l of leases) keep(l.commit_id, `booted by client ${l.mac}`);
    for (const p of this.pendingPushes()) keep(p.parent, `parent of pending push ${p.id}`);
    return roots;
  }

  /**
   * Removes commits nothing keeps and blobs no kept commit or profile uses.
   *
   * Other processes (the server baking a push, a CLI commit) may write while
   * gc runs, so: (1) the blob files are listed first, with their mtimes;
   * (2) what is live is decided inside one IMMEDIATE transaction, which no
   * other writer can interleave with, and the rows go in that same
   * transaction; (3) a blob younger than gcGraceMs is never a candidate: it
   * may have been baked and stored by a process that has not committed it
   * yet (objects.adopt also refreshes the mtime of a blob stored again).
   * Blob files are deleted only after the transaction committed, so a crash
   * leaves unreferenced blobs (removed next time), never a row naming a
   * missing blob.
   */
  async gc(opts: { dryRun?: boolean; now?: number } = {}): Promise<{ commits: CommitId[]; objects: Digest[]; bytes: number }> {
    const now = opts.now ?? Date.now();
    const candidates: { digest: Digest; size: number }[] = [];
    for await (const d of this.objects.list()) {
      const st = statSync(this.objects.pathOf(d), { throwIfNoEntry: false });
      if (st && st.mtimeMs <= now - this.config.gcGraceMs) candidates.push({ digest: d, size: st.size });
    }
    const decide = (): { deadCommits: CommitId[]; deadObjects: { digest: Digest; size: number }[] } => {
      const roots = this.gcRoots(now);
      const live = reachable(roots.keys(), this.commits.whole());
      const all = this.db.prepare('SELECT id, manifest FROM commits').all() as { id: string; manifest: string }[];
      const liveBlobs = new Set<Digest>();
      for (const c of all) {
        if (!live.has(c.id)) continue;
        const m = parseManifest(c.manifest);
        for (const b of [m.kernel, m.initrd, ...m.layers]) if (b) liveBlobs.add(b.digest);
      }
      for (const p of this.listProfiles()) for (const b of [p.kernel, p.initrd]) if (b) liveBlobs.add(b.digest);
      return {
        deadCommits: all.filter((c) => !live.has(c.id)).map((c) => c.id),
        deadObjects: candidates.filter((o) => !liveBlobs.has(o.digest)),
      };
    };
    const report = (d: ReturnType<typeof decide>) => ({
      commits: d.deadCommits,
      objects: d.deadObjects.map((o) => o.digest),
      bytes: d.deadObjects.reduce((a, o) => a + o.size, 0),
    });
    if (opts.dryRun) return report(decide());
    const dead = this.db
      .transaction(() => {
        const d = decide();
        const delC = this.db.prepare('DELETE FROM commits WHERE id = ?');
        for (const id of d.deadCommits) delC.run(id);
        const delL = this.db.prepare('DELETE FROM layers WHERE digest = ?');
        for (const o of d.deadObjects) delL.run(o.digest);
        this.db.prepare('DELETE FROM reflog WHERE time <= ?').run(now - this.config.reflogKeepMs);
        return d;
      })
      .immediate();
    this.entryCache.clear();
    this.commits.forget(dead.deadCommits);
    for (const o of dead.deadObjects) await this.objects.remove(o.digest);
    await this.objects.cleanTemp();
    return report(dead);
  }

  /** Re-hashes every blob and checks every manifest, chain and ref. */
  async fsck(): Promise<{ ok: boolean; problems: string[]; objects: number; commits: number }> {
    const problems: string[] = [];
    let objects = 0;
    for await (const d of this.objects.list()) {
      objects++;
      const { digest } = await sha256File(this.objects.pathOf(d));
      if (digest !== d) problems.push(`object ${d} is corrupt: its content hashes to ${digest}`);
    }
    const commits = this.db.prepare('SELECT * FROM commits').all() as CommitRow[];
    for (const c of commits) {
      if (commitIdOf(c.manifest) !== c.id) problems.push(`commit ${c.id}: manifest does not hash to its id`);
      let m: Manifest;
      try {
        m = parseManifest(c.manifest);
      } catch (e) {
        problems.push(`commit ${c.id}: ${(e as Error).message}`);
        continue;
      }
      if (m.parent !== c.parent) problems.push(`commit ${c.id}: parent column disagrees with the manifest`);
      if (c.parent && !this.commitRow(c.parent)) problems.push(`commit ${c.id}: parent ${c.parent} is missing`);
      for (const b of [m.kernel, m.initrd, ...m.layers]) {
        if (!b) continue;
        const p = this.objects.pathOf(b.digest);
        if (!existsSync(p)) problems.push(`commit ${c.id}: object ${b.digest} is missing`);
        else if (statSync(p).size !== b.size)
          problems.push(`commit ${c.id}: object ${b.digest} has size ${statSync(p).size}, manifest says ${b.size}`);
      }
      for (const l of m.layers) if (!this.layerRow(l.digest)) problems.push(`commit ${c.id}: layer ${l.digest} has no metadata`);
    }
    for (const r of this.listRefs())
      if (!this.commitRow(r.commit)) problems.push(`${r.type} ${r.name} points to missing commit ${r.commit}`);
    return { ok: problems.length === 0, problems, objects, commits: commits.length };
  }
}

/**
 * <data>/config.json overrides StoreConfig (limits, chain lengths, keep
 * times), e.g. {"maxUncompressedBytes": 4294967296, "warnChainLength": 32}.
 */
function readConfigFile(dir: string): Partial<StoreConfig> {
  const p = join(dir, 'config.json');
  if (!existsSync(p)) return {};
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as Partial<StoreConfig>;
  } catch (e) {
    throw new StrataError('E_BAD_ARGUMENT', `${p} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * Fault injection for the crash tests: STRATA_FAULT=<point>:<ms> makes the
 * process sleep at that point (inside the transaction for 'ref-move') so a
 * test can SIGKILL it there. Unset in production: a no-op.
 */
function faultPoint(name: string): void {
  const f = process.env.STRATA_FAULT;
  if (!f) return;
  const [point, ms] = f.split(':');
  if (point === name) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(ms ?? 1000));
}

function sameEntry(a: LayerEntry, b: LayerEntry): boolean {
  // Content first when both sides know it; otherwise size and mtime stand in.
  if (a.sha256 && b.sha256 && a.sha256 !== b.sha256) return false;
  return (
    a.type === b.type &&
    a.mode === b.mode &&
    a.uid === b.uid &&
    a.gid === b.gid &&
    a.size === b.size &&
    a.mtime === b.mtime &&
    (a.linkname ?? '') === (b.linkname ?? '') &&
    JSON.stringify(a.xattrs ?? {}) === JSON.stringify(b.xattrs ?? {})
  );
}

/** What kind of base SOURCE is, from its content rather than its name. */
export async function sourceKind(source: string): Promise<'dir' | 'tar' | 'squashfs' | 'iso'> {
  if (source === '-') return 'tar';
  let st;
  try {
    st = statSync(source);
  } catch {
    throw new StrataError('E_BAD_SOURCE', `${source} does not exist`);
  }
  if (st.isDirectory()) return 'dir';
  if (!st.isFile() && source !== '-') throw new StrataError('E_BAD_SOURCE', `${source} is neither a file nor a directory`);
  const fd = openSync(source, 'r');
  const head = Buffer.alloc(32774);
  const n = readSync(fd, head, 0, head.length, 0);
  closeSync(fd);
  if (n >= 4 && head.subarray(0, 4).toString('latin1') === 'hsqs') return 'squashfs';
  if (n >= 32774 && head.subarray(32769, 32774).toString('latin1') === 'CD001') return 'iso';
  if (/\.(sqfs|squashfs|img)$/i.test(source))
    throw new StrataError(
      'E_NOT_SQUASHFS',
      `${source} is not a squashfs image (no "hsqs" magic); give a squashfs, an ISO, a tar or a directory`,
    );
  if (/\.iso$/i.test(source)) throw new StrataError('E_BAD_ISO', `${source} is not an ISO 9660 image`);
  return 'tar';
}
