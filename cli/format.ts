/** Human output of the CLI (the --json output is the plain data). */
import type { ClientReport, Commit, DiffResult, Inventory, Ref } from '../store/types.ts';

export const shortId = (id: string) => id.slice(0, 12);
export const formatTime = (t: number) =>
  new Date(t)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');

export function formatCommit(c: Commit): string {
  return [
    `commit ${c.id}`,
    c.parent ? `parent ${c.parent}` : null,
    c.mergeParent ? `merge  ${c.mergeParent} (pushed against it, stacked onto ${shortId(c.parent ?? '')})` : null,
    `author ${c.author}`,
    `date   ${formatTime(c.createdAt)}`,
    `kind   ${c.kind}`,
    `layers ${c.manifest.layers.length}`,
    '',
    `    ${c.message}`,
    '',
  ]
    .filter((x) => x !== null)
    .join('\n');
}

/** One line per commit with a simple graph column: `*` commits, `M` merges (stacked pushes). */
export function formatLog(commits: Commit[], refs: Ref[]): string {
  const byCommit = new Map<string, string[]>();
  for (const r of refs) byCommit.set(r.commit, [...(byCommit.get(r.commit) ?? []), r.type === 'tag' ? `tag: ${r.name}` : r.name]);
  return commits
    .map((c) => {
      const names = byCommit.get(c.id);
      const mark = c.mergeParent ? 'M' : '*';
      return (
        `${mark} ${shortId(c.id)} ${formatTime(c.createdAt)} ${c.author} [${c.kind}, ${c.layerCount ?? c.manifest.layers.length} layers]${names ? ` (${names.join(', ')})` : ''} ${c.message}` +
        (c.mergeParent ? `\n|\\  merge of ${shortId(c.mergeParent)}` : '')
      );
    })
    .join('\n');
}

export function formatDiff(d: DiffResult): string {
  return (
    [...d.added.map((p) => `A ${p}`), ...d.changed.map((p) => `M ${p}`), ...d.deleted.map((p) => `D ${p}`)].join('\n') || '(no changes)'
  );
}

const gib = (bytes: number) => (bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`);

function duration(sec: number): string {
  if (sec < 120) return `${sec}s`;
  if (sec < 7200) return `${Math.floor(sec / 60)}m`;
  if (sec < 172800) return `${Math.floor(sec / 3600)}h`;
  return `${Math.floor(sec / 86400)}d`;
}

/** One line of hardware: "2 CPUs (model), 1.9 GiB; eth0 52:54:..; vda 8.0 GiB; vendor product serial S". */
export function formatInventory(inv: Inventory): string {
  const cpu = inv.cpus ? `${inv.cpus} CPU${inv.cpus === 1 ? '' : 's'}${inv.cpuModel ? ` (${inv.cpuModel})` : ''}` : 'CPUs unknown';
  const parts = [`${cpu}, ${inv.memoryKb ? gib(inv.memoryKb * 1024) : 'memory unknown'}`];
  if (inv.nics?.length) parts.push(inv.nics.map((n) => `${n.name} ${n.mac}`).join(', '));
  if (inv.disks?.length) parts.push(inv.disks.map((d) => `${d.name} ${gib(d.bytes)}`).join(', '));
  const dmi = [inv.dmi?.vendor, inv.dmi?.product, inv.dmi?.serial ? `serial ${inv.dmi.serial}` : ''].filter(Boolean).join(' ');
  if (dmi) parts.push(dmi);
  return parts.join('; ');
}

/** `strata clients`: a line per client, and its last heartbeat and hardware indented below it. */
export function formatClients(all: (ClientReport & { heldBack?: { reason: string } | null })[]): string {
  if (!all.length) return 'no clients yet';
  return all
    .map((c) => {
      const line =
        `${c.mac}\t${c.ip}\t${c.profile ?? '-'}\t${c.commit ? shortId(c.commit) : '-'}\t${formatTime(c.lastSeen)}` +
        (c.heldBack ? `\theld back: ${c.heldBack.reason}` : '');
      const hb = c.heartbeat;
      if (!hb) return `${line}\n  heartbeat: none yet`;
      return `${line}\n  heartbeat: ${formatTime(hb.at)}, runs ${shortId(hb.commit)}, up ${duration(hb.uptimeSec)}\n  hardware: ${formatInventory(hb.inventory)}`;
    })
    .join('\n');
}

/** `strata import` onto an existing profile: how the new base was stored and what was replayed. */
export function formatNewBase(
  name: string,
  r: {
    commit: Commit;
    base: Commit;
    mode: string;
    deltaBytes: number | null;
    fullBytes: number;
    reused: string[];
    conflicts: { path: string; oldBase: string; newBase: string; layer: string }[];
    branch: string | null;
  },
): string {
  const mb = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  const how =
    r.mode === 'delta'
      ? `a delta layer of ${mb(r.deltaBytes ?? 0)} over the old base (full image ${mb(r.fullBytes)})`
      : `a full base of ${mb(r.fullBytes)}${r.deltaBytes !== null ? ` (the delta, ${mb(r.deltaBytes)}, was too large)` : ''}`;
  const lines = [`new base for ${name}: ${r.base.id} as ${how}`, `${r.reused.length} layer(s) replayed as they are`];
  if (r.branch) {
    lines.push(`conflicts: the result is on ${r.branch}; ${name} did not move`);
    for (const c of r.conflicts) lines.push(`  ${c.path}: old base ${c.oldBase}, new base ${c.newBase}, layer ${c.layer.slice(0, 12)}`);
  } else lines.push(`${name} is now ${r.commit.id}`);
  return lines.join('\n');
}
