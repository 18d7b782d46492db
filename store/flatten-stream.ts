/**
 * Flatten in user space: one tar stream that holds what a stack of squashfs
 * layers shows through overlayfs, ready for tar2sqfs. No mount, no extraction:
 * each layer is read once, in order, as sqfs2tar's tar stream, and only the
 * entries the merge plan (overlay-merge.ts) gives to that layer are copied,
 * file bodies streamed chunk by chunk.
 *
 * Why our own tar reader/writer instead of tar-stream: squashfs keeps xattr
 * values as raw bytes (security.capability is binary) and sqfs2tar and
 * tar2sqfs carry them raw in PAX `SCHILY.xattr.*` records. tar-stream 3
 * decodes and encodes PAX values as UTF-8 strings, which corrupts any value
 * that is not valid UTF-8 (its pack() also cannot emit a raw PAX block). The
 * byte-level format is tar-format.ts and protocol/tar-encode.ts (shared
 * with the checker of pushed tars); the parser is tar-parser.ts, sqfs2tar's
 * child layer-source.ts, the merge flatten-merge.ts; here is the stream.
 */
import { Readable } from 'node:stream';
import { StrataError } from './errors.ts';
import { planMerge, type MergePlan } from './overlay-merge.ts';
import type { LayerEntry } from './types.ts';
import { TarParser, type TarVisitor } from './tar-parser.ts';
import { LayerSource, READ_AHEAD } from './layer-source.ts';
import { LayerMerge, PendingLinkMerge, TarOut, Listing, emitHeader, type MergeState, ZEROS } from './flatten-merge.ts';

/**
 * The merged tar as a Readable. Each wanted layer is read once, in order;
 * up to READ_AHEAD later wanted layers are already being read into bounded
 * queues. Backpressure: when the consumer's buffer is full, parsing stops
 * (the current queue then fills, and its sqfs2tar blocks on its pipe) until
 * the consumer reads again.
 */
function flattenStream(images: string[], entries: LayerEntry[][], plan: MergePlan): FlattenTar {
  const live = new Set<LayerSource>();
  let current: LayerSource | null = null;
  let started = false;
  let stopped = false;
  const open = (image: string): LayerSource => {
    const s = new LayerSource(image);
    live.add(s);
    return s;
  };
  const close = (s: LayerSource): void => {
    s.kill();
    live.delete(s);
  };

  const listing = new Listing();
  const rs = new Readable({
    highWaterMark: 256 * 1024,
    read() {
      out.full = false;
      if (!started) {
        started = true;
        run().then(
          () => rs.push(null),
          (e: unknown) => rs.destroy(e as Error),
        );
      } else current?.pump();
    },
    destroy(err, cb) {
      stopped = true;
      for (const s of live) s.kill();
      live.clear();
      cb(err);
    },
  });
  const out = new TarOut(rs);
  const m: MergeState = { plan, out, done: new Set(), rootLayer: plan.owner.get('') ?? images.length - 1, listing };

  /** Reads one layer through visitor; the source is closed whatever happens. */
  const readLayer = async (src: LayerSource, visitor: TarVisitor): Promise<void> => {
    current = src;
    try {
      await src.consume(new TarParser(visitor), () => out.full);
      await src.exited;
    } finally {
      current = null;
      close(src);
    }
  };

  async function run(): Promise<void> {
    const wantedSet = new Set<number>(plan.owner.values());
    for (const k of plan.linkCarrier.keys()) wantedSet.add(k);
    // The root's mode, owner and xattrs come from the topmost layer, even when
    // the listings left the root out (every squashfs has one).
    wantedSet.add(m.rootLayer);
    // Fully shadowed layers are not even read.
    const wanted = [...wantedSet].filter((l) => l >= 0 && l < images.length).sort((a, b) => a - b);
    const ahead = new Map<number, LayerSource>();
    for (let k = 0; k < wanted.length; k++) {
      if (stopped) return;
      for (let j = k; j < wanted.length && j <= k + READ_AHEAD; j++) if (!ahead.has(j)) ahead.set(j, open(images[wanted[j]!]!));
      const src = ahead.get(k)!;
      ahead.delete(k);
      const layer = wanted[k]!;
      const merge = new LayerMerge(layer, m, entries[layer]!);
      await readLayer(src, merge);
      if (merge.pending.length > 0 && !stopped) {
        const again = new PendingLinkMerge(merge.pending, m, entries[layer]!);
        await readLayer(open(images[layer]!), again);
        if (again.byTarget.size > 0) {
          throw new StrataError(
            'E_CORRUPT',
            `layer ${images[layer]} has hardlinks to missing files: ${[...again.byTarget.keys()].slice(0, 5).join(', ')}`,
            { image: images[layer] },
          );
        }
      }
    }
    if (stopped) return;
    for (const w of plan.whiteouts) {
      if (m.done.has(w)) continue;
      emitHeader(m, {
        path: w,
        type: 'char',
        mode: 0,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        linkname: '',
        devmajor: 0,
        devminor: 0,
        xattrs: new Map(),
      });
      m.done.add(w);
    }
    out.write(ZEROS); // end of archive
    out.flush();
  }

  let finished = false;
  rs.once('end', () => {
    finished = true;
  });
  const total = expectedTarBytes(entries, plan);
  return Object.assign(rs, {
    progress: () => ({ done: out.sent, total: Math.max(total, out.sent) }),
    listing: () => {
      if (!finished) throw new StrataError('E_INTERNAL', 'the flatten listing is only complete once the stream has ended');
      return { entries: listing.entries, warnings: listing.warnings };
    },
  });
}

/** The merged tar stream, and after its end the listing of what it holds. */
export interface FlattenTar extends Readable {
  /**
   * The entries of the stream, equal to what TarChecker lists for the same
   * bytes (sha256 included); only once the stream has ended.
   */
  listing(): { entries: LayerEntry[]; warnings: string[] };
  /**
   * Bytes of tar written so far, and about how many the whole stream will
   * have (from the listings: a header block per surviving entry plus file
   * bodies; PAX blocks make the real end a little later, never earlier than
   * `done`). For progress reports of long flattens.
   */
  progress(): { done: number; total: number };
}

/** Header blocks and padded bodies of every entry the plan keeps, plus the end-of-archive blocks. */
function expectedTarBytes(entries: LayerEntry[][], plan: MergePlan): number {
  let n = 1024;
  entries.forEach((list, layer) => {
    for (const e of list) {
      if (plan.owner.get(e.path) !== layer) continue;
      n += 512 + (e.type === 'file' ? Math.ceil(e.size / 512) * 512 : 0);
    }
  });
  return n;
}

/**
 * One tar stream (ustar + PAX) of the merge of `layerImages` (squashfs paths,
 * base first), described by `entries` (their listings, same order).
 * keepBelow=false: the result replaces the whole chain; keepBelow=true: it
 * will sit on top of other lower layers (flatten --from), with whiteouts and
 * opaque marks where the segment hid their content. Errors (a layer sqfs2tar
 * cannot read, a malformed stream) surface as an 'error' event on the stream.
 */
export function flattenToTar(layerImages: string[], entries: LayerEntry[][], opts: { keepBelow: boolean }): FlattenTar {
  if (layerImages.length !== entries.length) {
    throw new StrataError('E_BAD_ARGUMENT', `flatten got ${layerImages.length} layer images but ${entries.length} entry lists`);
  }
  if (layerImages.length === 0) throw new StrataError('E_NOTHING_TO_DO', 'nothing to flatten: the chain has no layers');
  const plan = planMerge(entries, opts);
  return flattenStream(layerImages, entries, plan);
}

/**
 * The tar of a merge plan made elsewhere (store/tree-delta.ts's delta over
 * one full image): only the paths the plan owns, then its whiteouts.
 */
export function planToTar(layerImages: string[], entries: LayerEntry[][], plan: MergePlan): FlattenTar {
  return flattenStream(layerImages, entries, plan);
}
