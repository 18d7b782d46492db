// @ts-check
/**
 * What garbage collection keeps and removes, as the page shows it. Pure
 * functions (the fetching is injected) so the decisions are easy to read:
 *
 * - "held" commits: no branch or tag reaches them, but gc keeps them (a young
 *   reflog entry, a pin, a client lease, a pending push) — and so keeps their
 *   ancestors too. The history graph draws them dimmed with the reason.
 * - a gc dry run's object list, labelled with what each blob was (a layer of
 *   which commit, a kernel, an initrd, or nothing any commit names).
 *
 * The reasons come from GET /v1/gc/roots as data, store.gcRoots()'s
 * GcReason with its words in `text`: { kind: 'ref', refType, ref } |
 * { kind: 'reflog', ref } | { kind: 'assignment', match } | { kind: 'lease', mac }
 * | { kind: 'push', push }. The page decides on the fields and shows `text`.
 */

/** Every reason gc gives for a root. */
export function rootReasons(root) {
  return Array.isArray(root.reasons) ? root.reasons : [];
}

/** The reason kinds this page knows how to read. */
const REASON_KINDS = ['ref', 'reflog', 'assignment', 'lease', 'push'];

const ownsRef = (profile, ref) => ref === profile || ref.startsWith(`${profile}/`);

/**
 * Whether a root may belong to `profile`'s history, judged from what the page
 * already knows (so roots of other profiles are not fetched one by one).
 * Unknown cases answer true; the commit's own `profile` decides after fetching.
 * A root on a branch or tag is not held (its profile's graph draws it); any
 * other root may belong when one of its reasons may.
 */
export function rootMayBelong(root, profile, known) {
  const reasons = rootReasons(root);
  if (reasons.some((r) => r.kind === 'ref')) return false;
  return reasons.some((r) => reasonMayBelong(r, profile, known));
}

function reasonMayBelong(r, profile, known) {
  switch (r.kind) {
    case 'ref':
      return false;
    case 'reflog':
      return ownsRef(profile, r.ref);
    case 'assignment': {
      const a = known.assignments.find((x) => x.match === r.match);
      return !a || a.profile === profile;
    }
    case 'lease': {
      const c = known.clients.find((x) => x.mac === r.mac);
      return !c?.profile || c.profile === profile;
    }
    case 'push': {
      const p = known.pushes.find((x) => x.id === r.push);
      return !p || p.profile === profile;
    }
    default:
      return true;
  }
}

/**
 * The commits of `profile` that gc keeps but the graph (ids in `drawn`) does
 * not reach, with their ancestors down to the drawn part. getCommit(id) is
 * async and may reject (a commit gone meanwhile: skipped). At most `max`
 * fetches, so a huge store cannot stall the page.
 * Returns { commits: Commit[], why: Map(id -> { kinds: string[], reasons: string[], via: id|null }) }.
 */
export async function collectHeld(roots, drawn, profile, known, getCommit, max = 200) {
  const why = new Map();
  const commits = [];
  const queue = [];
  for (const root of roots) {
    if (drawn.has(root.commit) || !rootMayBelong(root, profile, known)) continue;
    const w = why.get(root.commit) ?? { kinds: [], reasons: [], via: null, root: true, named: false };
    for (const r of rootReasons(root)) {
      w.kinds.push(r.kind);
      w.reasons.push(r);
      // This profile's own reflog or one of its pins names the commit.
      if ((r.kind === 'reflog' || r.kind === 'assignment') && reasonMayBelong(r, profile, known)) w.named = true;
    }
    if (!why.has(root.commit)) queue.push(root.commit);
    why.set(root.commit, w);
  }
  const done = new Set();
  let fetched = 0;
  while (queue.length && fetched < max) {
    // The next (up to) 16 queued commits are fetched together: one request
    // after another made a page with many held commits slow to draw on a
    // busy server. Visiting them in queue order keeps the walk breadth-first.
    const batch = [];
    while (queue.length && batch.length < 16 && fetched < max) {
      const id = queue.shift();
      if (done.has(id) || drawn.has(id)) continue;
      done.add(id);
      fetched += 1;
      batch.push(id);
    }
    const got = await Promise.all(
      batch.map((id) =>
        getCommit(id).then(
          (c) => c,
          () => null,
        ),
      ),
    );
    for (const [i, id] of batch.entries()) visit(id, got[i]);
  }
  for (const id of [...why.keys()]) if (!commits.some((c) => c.id === id)) why.delete(id);
  return { commits, why };

  function visit(id, c) {
    if (!c) {
      why.delete(id);
      return;
    }
    const w = why.get(id);
    // A root of another profile's commit that this profile's reflog or pins
    // name still belongs here; anything else of another profile does not.
    if (c.profile !== profile && !w.named && w.root) {
      why.delete(id);
      return;
    }
    commits.push(c);
    for (const p of [c.parent, c.mergeParent]) {
      if (!p || drawn.has(p) || done.has(p)) continue;
      if (!why.has(p)) why.set(p, { kinds: [], reasons: [], via: id, root: false });
      queue.push(p);
    }
  }
}

const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/**
 * Short words for why a held commit is kept, for its badge and details:
 * 'reflog', 'pinned by N clients', 'pin MATCH', 'pending push', 'under a kept commit'.
 * Clients and pins are counted from what the page knows (an ancestor of a
 * root has no reasons of its own; an older server sent only one per root).
 */
export function heldReasons(id, w, known, reflogIds) {
  const out = [];
  if (w.kinds.includes('reflog') || reflogIds.has(id)) out.push('reflog');
  const running = known.clients.filter((c) => c.commit === id).length;
  if (running) out.push(`pinned by ${plural(running, 'client')}`);
  for (const a of known.assignments) if (a.pin === id) out.push(`pin ${a.match}`);
  if (w.kinds.includes('push')) out.push('pending push');
  // A kind this page does not know yet is shown in the server's words.
  out.push(...w.reasons.filter((r) => !REASON_KINDS.includes(r.kind)).map((r) => r.text));
  if (!out.length) out.push(w.via ? 'under a kept commit' : 'kept by gc');
  return out;
}

/**
 * Labels a gc result's objects with what they were, from the removed commits'
 * manifests (fetched before the removal): [{ digest, what, size, commits }].
 * `size` is null for a blob no removed commit names (its size is in the total only).
 */
export function describeGcObjects(objects, deadCommits) {
  return objects.map((digest) => {
    const users = [];
    let what = 'no commit uses it';
    let size = null;
    for (const c of deadCommits) {
      const m = c.manifest;
      const layer = m.layers.find((l) => l.digest === digest);
      if (layer) {
        what = 'layer';
        size = layer.size;
        users.push(c.id);
      } else if (m.kernel?.digest === digest) {
        if (what !== 'layer') what = 'kernel';
        size = m.kernel.size;
        users.push(c.id);
      } else if (m.initrd?.digest === digest) {
        if (what !== 'layer') what = 'initrd';
        size = m.initrd.size;
        users.push(c.id);
      }
    }
    return { digest, what, size, commits: users };
  });
}
