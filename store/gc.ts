/**
 * Garbage collection and fsck. What gc keeps is decided from its roots,
 * each with the reasons that keep it as data (GcReason), so the API and
 * the web page never parse sentences back.
 */
import { faultPoint } from './fault.ts';
import { existsSync, statSync } from 'node:fs';
import { inTransaction, type StoreCore } from './core.ts';
import { reachable } from './dag.ts';
import { cleanIncoming } from './incoming.ts';
import { commitIdOf, parseManifest } from './manifest.ts';
import { sha256File } from './objects.ts';
import { listProfiles } from './profiles.ts';
import { staleBranches } from './ref-delete.ts';
import { resolve } from './revisions.ts';
import type { CommitId, Digest, Manifest } from './types.ts';

/** One reason gc keeps a commit. */
export type GcReason =
  | { kind: 'ref'; refType: 'branch' | 'tag'; ref: string }
  | { kind: 'reflog'; ref: string }
  | { kind: 'assignment'; match: string }
  | { kind: 'lease'; mac: string }
  | { kind: 'push'; push: string };

/** The reason in words, as the CLI and older API clients show it. */
export function gcReasonText(r: GcReason): string {
  switch (r.kind) {
    case 'ref':
      return `${r.refType} ${r.ref}`;
    case 'reflog':
      return `reflog of ${r.ref}`;
    case 'assignment':
      return `pinned by assignment ${r.match}`;
    case 'lease':
      return `booted by client ${r.mac}`;
    case 'push':
      return `parent of pending push ${r.push}`;
  }
}

const sameReason = (a: GcReason, b: GcReason) => gcReasonText(a) === gcReasonText(b);

/**
 * Commits that must survive gc, each with every reason that keeps it (in
 * this order: branch/tag, reflog, pin, client lease, pending push; no
 * duplicates), e.g. a head that a client booted is kept for
 * [{kind:'ref', refType:'branch', ref:'lab'}, {kind:'reflog', ref:'lab'}, {kind:'lease', mac:'52:54:00:00:00:01'}].
 */
export function gcRoots(core: StoreCore, now = Date.now()): Map<CommitId, GcReason[]> {
  const roots = new Map<CommitId, GcReason[]>();
  const keep = (id: CommitId, reason: GcReason) => {
    const reasons = roots.get(id);
    if (!reasons) roots.set(id, [reason]);
    else if (!reasons.some((r) => sameReason(r, reason))) reasons.push(reason);
  };
  for (const r of core.t.refs.all()) keep(r.commit, { kind: 'ref', refType: r.type, ref: r.name });
  for (const e of core.t.refs.reflogSince(now - core.config.reflogKeepMs))
    for (const id of [e.old, e.new]) if (id) keep(id, { kind: 'reflog', ref: e.ref });
  for (const a of core.t.assignments.all()) {
    if (!a.pin) continue;
    try {
      keep(resolve(core, a.pin), { kind: 'assignment', match: a.match });
    } catch {
      /* a dangling pin keeps nothing */
    }
  }
  for (const l of core.t.clients.leasesSince(now - core.config.leaseMs)) keep(l.commit, { kind: 'lease', mac: l.mac });
  for (const p of core.t.pushes.pending()) keep(p.parent, { kind: 'push', push: p.id });
  return roots;
}

export interface GcResult {
  commits: CommitId[];
  objects: Digest[];
  bytes: number;
  /** Dead files of incoming/ (uploads cut short, archives of pushes already landed: store/incoming.ts). */
  incoming: string[];
  /** Push- and rebase-conflict branches older than staleBranchMs: gc keeps them, `strata branch -d` frees them. */
  staleBranches: { name: string; commit: CommitId; lastMove: number | null }[];
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
export async function gc(core: StoreCore, opts: { dryRun?: boolean; now?: number } = {}): Promise<GcResult> {
  const now = opts.now ?? Date.now();
  const candidates: { digest: Digest; size: number }[] = [];
  for await (const d of core.objects.list()) {
    const st = statSync(core.objects.pathOf(d), { throwIfNoEntry: false });
    if (st && st.mtimeMs <= now - core.config.gcGraceMs) candidates.push({ digest: d, size: st.size });
  }
  const decide = (): { deadCommits: CommitId[]; deadObjects: { digest: Digest; size: number }[] } => {
    const live = reachable(gcRoots(core, now).keys(), core.commits.whole());
    const all = core.t.commits.manifests();
    const liveBlobs = new Set<Digest>();
    for (const c of all) {
      if (!live.has(c.id)) continue;
      const m = parseManifest(c.manifest);
      for (const b of [m.kernel, m.initrd, ...m.layers]) if (b) liveBlobs.add(b.digest);
    }
    for (const p of listProfiles(core)) for (const b of [p.kernel, p.initrd]) if (b) liveBlobs.add(b.digest);
    return {
      deadCommits: all.filter((c) => !live.has(c.id)).map((c) => c.id),
      deadObjects: candidates.filter((o) => !liveBlobs.has(o.digest)),
    };
  };
  const report = (d: ReturnType<typeof decide>, incoming: string[]): GcResult => ({
    commits: d.deadCommits,
    objects: d.deadObjects.map((o) => o.digest),
    bytes: d.deadObjects.reduce((a, o) => a + o.size, 0),
    incoming,
    staleBranches: staleBranches(core, now),
  });
  if (opts.dryRun) return report(decide(), await cleanIncoming(core, { now, dryRun: true }));
  const dead = inTransaction(core, () => {
    const d = decide();
    core.t.commits.remove(d.deadCommits);
    core.t.boot.removeRecords(d.deadCommits);
    core.t.layers.remove(d.deadObjects.map((o) => o.digest));
    core.t.boot.removeInitrdBuilds(d.deadObjects.map((o) => o.digest));
    core.t.refs.pruneReflog(now - core.config.reflogKeepMs);
    // A removed profile can no longer be restored once its reflog is gone.
    core.t.profiles.purgeRemoved(now - core.config.reflogKeepMs);
    return d;
  });
  core.commits.forget(dead.deadCommits);
  faultPoint('gc-delete');
  for (const o of dead.deadObjects) await core.objects.remove(o.digest);
  await core.objects.cleanTemp();
  return report(dead, await cleanIncoming(core, { now }));
}

/** Re-hashes every blob and checks every manifest, chain and ref. */
export async function fsck(core: StoreCore): Promise<{ ok: boolean; problems: string[]; objects: number; commits: number }> {
  const problems: string[] = [];
  let objects = 0;
  for await (const d of core.objects.list()) {
    objects++;
    const { digest } = await sha256File(core.objects.pathOf(d));
    if (digest !== d) problems.push(`object ${d} is corrupt: its content hashes to ${digest}`);
  }
  const commits = core.t.commits.all();
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
    if (c.parent && !core.t.commits.exists(c.parent)) problems.push(`commit ${c.id}: parent ${c.parent} is missing`);
    for (const b of [m.kernel, m.initrd, ...m.layers]) {
      if (!b) continue;
      const p = core.objects.pathOf(b.digest);
      if (!existsSync(p)) problems.push(`commit ${c.id}: object ${b.digest} is missing`);
      else if (statSync(p).size !== b.size)
        problems.push(`commit ${c.id}: object ${b.digest} has size ${statSync(p).size}, manifest says ${b.size}`);
    }
    for (const l of m.layers) if (!core.t.layers.info(l.digest)) problems.push(`commit ${c.id}: layer ${l.digest} has no metadata`);
  }
  for (const r of core.t.refs.all())
    if (!core.t.commits.exists(r.commit)) problems.push(`${r.type} ${r.name} points to missing commit ${r.commit}`);
  return { ok: problems.length === 0, problems, objects, commits: commits.length };
}
