/**
 * Which live-ISO layout a listing is, and where its kernel, initrd and root
 * squashfs are: pure decisions over xorriso's output (parsed here too), no
 * I/O. iso.ts lists and extracts the ISO and calls these.
 *
 * Layouts recognised (matching is case-insensitive because plain ISO 9660 trees
 * report names upper-cased):
 * - debian-live:   live/vmlinuz*, live/initrd*, live/filesystem.squashfs
 * - ubuntu-casper: casper/vmlinuz*, casper/initrd*, casper/filesystem.squashfs,
 *                  or the layered squashfs set of Ubuntu >= 21.10 (see chooseCasperLayers)
 * - fedora-liveos: LiveOS/squashfs.img with kernel and initrd from images/pxeboot,
 *                  isolinux or boot/x86_64/loader; the nested form (squashfs.img that
 *                  only holds LiveOS/rootfs.img, an ext4 image) is refused
 * - alt:           syslinux/alt0/vmlinuz + syslinux/alt0/full.cz (or boot/vmlinuz +
 *                  boot/full.cz), root squashfs in the top-level file `live` or `altinst`
 */
import { StrataError } from './errors.ts';

export type IsoLayout = 'debian-live' | 'ubuntu-casper' | 'fedora-liveos' | 'alt';

export interface IsoContents {
  layout: IsoLayout;
  /** Paths INSIDE the iso, no leading slash, spelled exactly as the ISO reports them. */
  kernel: string;
  initrd: string;
  /** The root squashfs; a complete root filesystem by itself. */
  rootfs: string;
  /**
   * Only for layered Ubuntu casper ISOs (Ubuntu >= 21.10 server, >= 23.04 desktop):
   * the squashfs files whose overlay (base first, `rootfs` is layers[0]) gives the
   * system the ISO boots by default. Importers that can stack layers should import
   * them all in this order; importing `rootfs` alone yields the minimal system.
   * Absent for every other layout.
   */
  layers?: string[];
}

/** One node of the ISO's directory tree, as xorriso reports it. */
export interface IsoEntry {
  /** No leading slash. */
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
}

// ---------------------------------------------------------------------------
// Pure parsing and decisions
// ---------------------------------------------------------------------------

/** Reads one shell-quoted word as xorriso prints it ('a'"'"'b' style), from `start`. */
function readQuotedWord(line: string, start: number): string {
  let out = '';
  let i = start;
  while (i < line.length && line[i] !== ' ') {
    const ch = line[i];
    if (ch === "'" || ch === '"') {
      const end = line.indexOf(ch, i + 1);
      if (end < 0) {
        out += line.slice(i + 1);
        return out;
      }
      out += line.slice(i + 1, end);
      i = end + 1;
    } else {
      out += ch;
      i++;
    }
  }
  return out;
}

/** Parses the output of `xorriso -find / -exec lsdl` (default quoting). Unparseable lines are skipped. */
export function parseXorrisoLsdl(stdout: string): IsoEntry[] {
  const entries: IsoEntry[] = [];
  for (const line of stdout.split('\n')) {
    // mode links uid gid size month day time|year 'path' [-> 'target']
    const m = /^([-dlbcps?])[-rwxsStT]{9}\S*\s+\d+\s+\S+\s+\S+\s+(\d+)\s/.exec(line);
    const q = line.indexOf("'");
    if (!m || q < 0) continue;
    const path = readQuotedWord(line, q).replace(/^\/+/, '');
    if (path === '') continue; // the root itself
    const t = m[1];
    const type: IsoEntry['type'] = t === '-' ? 'file' : t === 'd' ? 'dir' : t === 'l' ? 'symlink' : 'other';
    entries.push({ path, type, size: Number(m[2]) });
  }
  return entries;
}

/** One extent of a file's data: `xorriso -find X -exec report_lba`. */
export interface IsoExtent {
  lba: number;
  blocks: number;
  size: number;
}

export function parseReportLba(stdout: string): IsoExtent[] {
  const out: IsoExtent[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^File data lba:\s*\d+\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,/.exec(line);
    if (m) out.push({ lba: Number(m[1]), blocks: Number(m[2]), size: Number(m[3]) });
  }
  return out;
}

/** Byte offset of a file's data in the image when its extents are contiguous, else undefined. */
export function contiguousOffset(extents: IsoExtent[]): number | undefined {
  if (extents.length === 0) return undefined;
  for (let i = 1; i < extents.length; i++) {
    if (extents[i].lba !== extents[i - 1].lba + extents[i - 1].blocks) return undefined;
  }
  return extents[0].lba * ISO_BLOCK;
}

export const lc = (s: string) => s.toLowerCase();
const base = (p: string) => p.slice(p.lastIndexOf('/') + 1);
const parentOf = (p: string) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');

/** Case-insensitive index of the tree. */
export class Tree {
  readonly byLower = new Map<string, IsoEntry>();
  constructor(readonly entries: IsoEntry[]) {
    for (const e of entries) if (!this.byLower.has(lc(e.path))) this.byLower.set(lc(e.path), e);
  }
  file(path: string): IsoEntry | undefined {
    const e = this.byLower.get(lc(path));
    return e && e.type === 'file' ? e : undefined;
  }
  dir(path: string): IsoEntry | undefined {
    const e = this.byLower.get(lc(path));
    return e && e.type === 'dir' ? e : undefined;
  }
  /** Regular files directly inside `dir` (case-insensitive). */
  filesIn(dir: string): IsoEntry[] {
    const d = lc(dir);
    return this.entries.filter((e) => e.type === 'file' && lc(parentOf(e.path)) === d);
  }
}

/** Compare so that 'x-10' sorts after 'x-9' (kernel versions). */
const naturalCompare = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true, sensitivity: 'base' });

/** Lower-case letters and digits only: makes 'VMLINUZ_6_1.0' and 'vmlinuz-6.1.0' comparable. */
const alnum = (s: string) => lc(s).replace(/[^a-z0-9]/g, '');

/**
 * Picks the kernel and its initrd among `vmlinuz*` / `initrd*` files of one directory.
 * A plain `vmlinuz` wins; otherwise the newest version. The initrd is the one whose
 * version suffix matches the kernel's (vmlinuz-6.1.0-18 <-> initrd.img-6.1.0-18),
 * else the only one, else the plainest name.
 */
export function pickKernelPair(files: string[]): { kernel: string; initrd: string } | undefined {
  const kernels = files.filter((f) => lc(base(f)).startsWith('vmlinuz'));
  const initrds = files.filter((f) => lc(base(f)).startsWith('initrd'));
  if (kernels.length === 0 || initrds.length === 0) return undefined;
  const suffixK = (f: string) => alnum(base(f)).replace(/^vmlinuz/, '');
  const suffixI = (f: string) => alnum(base(f)).replace(/^initrd(img)?/, '');
  kernels.sort((a, b) => {
    const pa = suffixK(a) === '' ? 0 : 1;
    const pb = suffixK(b) === '' ? 0 : 1;
    return pa - pb || -naturalCompare(base(a), base(b));
  });
  const kernel = kernels[0];
  const ks = suffixK(kernel);
  let initrd = ks !== '' ? initrds.find((i) => suffixI(i) === ks) : undefined;
  if (!initrd && initrds.length === 1) initrd = initrds[0];
  if (!initrd) {
    const plain = ['initrd', 'initrdimg', 'initrdlz', 'initrdgz', 'initrdzst', 'initrdxz'];
    initrd = plain.map((p) => initrds.find((i) => alnum(base(i)) === p)).find((x) => x !== undefined);
  }
  if (!initrd) initrd = [...initrds].sort(naturalCompare)[0];
  return { kernel, initrd };
}

/** Components of a casper layer name that are never part of the default system. */
const isSideLayer = (component: string) =>
  /^[a-z]{2,3}([_-][a-z]{2,4})?$/i.test(component) || // language packs: en, zh_CN, pt-BR
  /^no-languages$/i.test(component) ||
  /secureboot/i.test(component);

/**
 * Layered casper (Ubuntu server >= 21.10, desktop >= 23.04): there is no single
 * complete filesystem.squashfs. casper mounts `A.squashfs`, `A.B.squashfs`,
 * `A.B.C.squashfs` stacked for `layerfs-path=A.B.C.squashfs`, each file holding only
 * what its layer adds. No single file is the full live system, so `rootfs` is the
 * chain's base (A.squashfs, e.g. minimal.squashfs: a complete minimal system by
 * itself) and `layers` is the whole chain so an importer can stack it.
 * The top of the chain is the boot config's `layerfs-path=` when given; otherwise the
 * longest chain that does not go through language or secure-boot side layers
 * (ties: first in name order, so 'generic' wins over 'generic-hwe').
 *
 * `names` are the basenames of casper's *.squashfs files as listed; returns them
 * (same spelling) base first, or undefined when no chain exists.
 */
export function chooseCasperLayers(names: string[], layerfsPath?: string): string[] | undefined {
  const stemOf = (n: string) => lc(n).replace(/\.squashfs$/, '');
  const byStem = new Map(names.map((n) => [stemOf(n), n] as const));
  const chainFor = (top: string): string[] | undefined => {
    const parts = top.split('.');
    const chain: string[] = [];
    for (let i = 1; i <= parts.length; i++) {
      const n = byStem.get(parts.slice(0, i).join('.'));
      if (!n) return undefined;
      chain.push(n);
    }
    return chain;
  };
  if (layerfsPath) {
    const c = chainFor(stemOf(base(layerfsPath)));
    if (c) return c;
  }
  let best: string[] | undefined;
  for (const stem of [...byStem.keys()].sort()) {
    if (stem.split('.').some(isSideLayer)) continue;
    const c = chainFor(stem);
    if (c && (!best || c.length > best.length)) best = c;
  }
  return best;
}

/** Finds `layerfs-path=...` in a boot config (grub.cfg, txt.cfg); the first one is the default entry's. */
export function findLayerfsPath(cfgText: string): string | undefined {
  const m = /layerfs-path=([^\s"']+)/.exec(cfgText);
  return m ? m[1] : undefined;
}

/** What the error for an unknown layout lists: top-level dirs and boot-looking files, ~20 names. */
export function describeFound(entries: IsoEntry[], cap = 20): string {
  const top = entries
    .filter((e) => !e.path.includes('/') && e.type === 'dir')
    .map((e) => `${e.path}/`)
    .sort();
  const interesting = entries
    .filter((e) => e.type === 'file')
    .filter((e) => {
      const b = lc(base(e.path));
      return (
        /\.(squashfs|sqfs|sfs|img)$/.test(b) ||
        b.startsWith('vmlinuz') ||
        b.startsWith('initrd') ||
        ((b === 'live' || b === 'altinst') && !e.path.includes('/'))
      );
    })
    .map((e) => e.path)
    .sort();
  if (top.length + interesting.length === 0) return 'nothing (the ISO is empty)';
  // Folders get at least half the room, files the rest (more when there are few folders).
  const topShown = top.slice(0, Math.max(cap - interesting.length, Math.ceil(cap / 2)));
  const filesShown = interesting.slice(0, Math.max(0, cap - topShown.length));
  const hidden = top.length + interesting.length - topShown.length - filesShown.length;
  const parts: string[] = [];
  if (top.length) parts.push(`top-level folders ${topShown.join(', ')}${top.length > topShown.length ? ', ...' : ''}`);
  if (filesShown.length) parts.push(`boot-related files ${filesShown.join(', ')}`);
  else if (interesting.length === 0) parts.push('no kernel, initrd or filesystem image files');
  return parts.join('; ') + (hidden > 0 ? ` (and ${hidden} more)` : '');
}

/** ISO 9660 logical block size: xorriso's LBAs count these. */
export const ISO_BLOCK = 2048;

export const badIso = (message: string, details: Record<string, unknown> = {}) => new StrataError('E_BAD_ISO', message, details);

/**
 * Decides the layout and picks kernel, initrd and rootfs from a listing.
 * Pure; throws E_BAD_ISO naming what was found when nothing fits.
 * `layerfsPath` is the boot config's `layerfs-path=` for layered casper ISOs.
 */
export function pickIsoContents(entries: IsoEntry[], opts: { layerfsPath?: string; label?: string } = {}): IsoContents {
  const t = new Tree(entries);
  const problems: string[] = [];
  const names = (es: IsoEntry[]) => es.map((e) => e.path);

  // Debian live: live/ is a directory (ALT's `live` is a file).
  if (t.dir('live')) {
    const files = t.filesIn('live');
    const squash = files.filter((e) => lc(base(e.path)).endsWith('.squashfs'));
    const root = t.file('live/filesystem.squashfs') ?? (squash.length === 1 ? squash[0] : undefined);
    const pair = pickKernelPair(names(files));
    if (root && pair) return { layout: 'debian-live', ...pair, rootfs: root.path };
    if (root || pair)
      problems.push(
        `live/ has ${root ? 'a root squashfs' : 'a kernel and initrd'} but no ${root ? 'live/vmlinuz* and live/initrd* pair' : 'live/filesystem.squashfs'}`,
      );
  }

  if (t.dir('casper')) {
    const files = t.filesIn('casper');
    const squash = files.filter((e) => lc(base(e.path)).endsWith('.squashfs'));
    const pair = pickKernelPair(names(files));
    let rootfs: string | undefined;
    let layers: string[] | undefined;
    const full = t.file('casper/filesystem.squashfs');
    if (full) rootfs = full.path;
    else if (squash.length === 1) rootfs = squash[0].path;
    else if (squash.length > 1) {
      const chain = chooseCasperLayers(
        squash.map((e) => base(e.path)),
        opts.layerfsPath,
      );
      if (chain) {
        const dir = parentOf(squash[0].path);
        layers = chain.map((n) => `${dir}/${n}`);
        rootfs = layers[0];
      }
    }
    if (rootfs && pair) return { layout: 'ubuntu-casper', ...pair, rootfs, ...(layers ? { layers } : {}) };
    if (rootfs || pair || squash.length)
      problems.push(
        `casper/ has ${rootfs ? 'a root squashfs' : squash.length ? 'squashfs files that form no layer chain' : 'no squashfs'}${pair ? '' : ' and no casper/vmlinuz* and casper/initrd* pair'}`,
      );
  }

  const liveos = t.file('LiveOS/squashfs.img');
  if (liveos) {
    const candidates: Array<[string, string]> = [
      ['images/pxeboot/vmlinuz', 'images/pxeboot/initrd.img'],
      ['isolinux/vmlinuz', 'isolinux/initrd.img'],
      ['boot/x86_64/loader/linux', 'boot/x86_64/loader/initrd'],
      ['isolinux/vmlinuz0', 'isolinux/initrd0.img'], // Fedora <= 18 live media
      ['images/pxeboot/vmlinuz0', 'images/pxeboot/initrd0.img'],
    ];
    for (const [k, i] of candidates) {
      const ke = t.file(k);
      const ie = t.file(i);
      if (ke && ie) return { layout: 'fedora-liveos', kernel: ke.path, initrd: ie.path, rootfs: liveos.path };
    }
    problems.push('LiveOS/squashfs.img is there but no kernel and initrd in images/pxeboot/, isolinux/ or boot/x86_64/loader/');
  }

  // ALT: the root squashfs is a top-level FILE named live (preferred) or altinst.
  const altRoot = t.file('live') ?? t.file('altinst');
  if (altRoot) {
    for (const dir of ['syslinux/alt0', 'boot']) {
      const ke = t.file(`${dir}/vmlinuz`);
      const ie = t.file(`${dir}/full.cz`);
      if (ke && ie) return { layout: 'alt', kernel: ke.path, initrd: ie.path, rootfs: altRoot.path };
    }
    problems.push(`/${altRoot.path} is there but no syslinux/alt0/vmlinuz and syslinux/alt0/full.cz`);
  }

  const why = problems.length ? ` (${problems.join('; ')})` : '';
  throw badIso(
    `${opts.label ?? 'this ISO'} is not a live ISO layout strata knows${why}: expected Debian live (live/), Ubuntu casper (casper/), ` +
      `Fedora/RHEL LiveOS (LiveOS/squashfs.img) or ALT (/live or /altinst with syslinux/alt0/). ` +
      `Found: ${describeFound(entries)}. Import the root squashfs itself with --kernel and --initrd instead.`,
    { found: describeFound(entries) },
  );
}
