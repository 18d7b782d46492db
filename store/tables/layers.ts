/**
 * SQL for the layers table: what each layer blob holds (its entry listing,
 * gzip'd JSON) next to its size and compression. Listings are read often
 * (diff, the parent rule, flatten) and never change, so a few are cached.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import type { DB } from '../db.ts';
import type { Digest, LayerEntry, LayerInfo } from '../types.ts';

export interface NewLayer {
  info: Omit<LayerInfo, 'createdAt'>;
  entries: LayerEntry[];
}

interface Raw {
  digest: string;
  size: number;
  kind: LayerInfo['kind'];
  entry_count: number;
  uncompressed_bytes: number;
  compressor: LayerInfo['compressor'];
  created_at: number;
}

/** JSON text per gzip member: one member per this many characters of the listing. */
const MEMBER_CHARS = 1 << 20;

/**
 * The stored listing: gzip'd JSON of the entry array, written as a series
 * of gzip members of about 1 MiB of JSON each instead of one string of the
 * whole array (a listing near the metadata budget would be a string of
 * hundreds of MB, near V8's limit). Concatenated members gunzip to the same
 * text, so readers and rows written before are unchanged.
 */
export function gzipListing(entries: LayerEntry[]): Buffer {
  const members: Buffer[] = [];
  let text = '[';
  for (let i = 0; i < entries.length; i++) {
    text += (i ? ',' : '') + JSON.stringify(entries[i]);
    if (text.length >= MEMBER_CHARS) {
      members.push(gzipSync(text));
      text = '';
    }
  }
  members.push(gzipSync(`${text}]`));
  return Buffer.concat(members);
}

export class LayersTable {
  private readonly cache = new Map<Digest, LayerEntry[]>();
  constructor(private readonly db: DB) {}

  info(digest: Digest): LayerInfo | undefined {
    const r = this.db
      .prepare('SELECT digest, size, kind, entry_count, uncompressed_bytes, compressor, created_at FROM layers WHERE digest = ?')
      .get(digest) as Raw | undefined;
    if (!r) return undefined;
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

  entries(digest: Digest): LayerEntry[] | undefined {
    const cached = this.cache.get(digest);
    if (cached) return cached;
    const r = this.db.prepare('SELECT entries FROM layers WHERE digest = ?').get(digest) as { entries: Buffer } | undefined;
    if (!r) return undefined;
    const entries = JSON.parse(gunzipSync(r.entries).toString('utf8')) as LayerEntry[];
    if (this.cache.size > 64) this.cache.clear();
    this.cache.set(digest, entries);
    return entries;
  }

  /** Registers a layer; one already registered (same digest, same content) is kept. */
  insert(l: NewLayer, now: number): void {
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
        gzipListing(l.entries),
        now,
      );
  }

  remove(digests: Iterable<Digest>): void {
    const del = this.db.prepare('DELETE FROM layers WHERE digest = ?');
    for (const d of digests) del.run(d);
    this.cache.clear();
  }
}
