/**
 * The metadata bomb of issue 11: many empty files, each carrying one large
 * xattr (`SCHILY.xattr.user.a`), generated as a stream straight into zstd,
 * so the test never holds the multi-GB tar. 75,000 entries of 60 KB make
 * ~4.6 GB of tar and well under 1 MB of zstd. Used by the tests and bench/.
 */
import { spawn } from 'node:child_process';
import { encodeEntryHeader } from '../../protocol/tar-encode.ts';

export interface BombShape {
  entries: number;
  /** Bytes of the one xattr value per entry. */
  xattrBytes: number;
  /** zstd level (default 3). */
  level?: number;
}

const STYLE = { dirSlash: true, longNameMarker: false, paxHeaderCopiesEntry: false } as const;

/** The zstd-compressed tar of the bomb; the tar streams through zstd with backpressure. */
export async function metadataBombZstd(shape: BombShape): Promise<Buffer> {
  const z = spawn('zstd', ['-q', '-c', `-${shape.level ?? 3}`, '-T0'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const out: Buffer[] = [];
  z.stdout.on('data', (c: Buffer) => out.push(c));
  const closed = new Promise<void>((resolve, reject) => {
    z.on('error', reject);
    z.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`zstd exited ${code}`))));
  });
  const value = Buffer.alloc(shape.xattrBytes, 'x');
  const write = (b: Buffer): Promise<void> | null =>
    z.stdin.write(b) ? null : new Promise<void>((resolve) => z.stdin.once('drain', () => resolve()));
  const base = {
    type: 'file' as const,
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 0,
    linkname: Buffer.alloc(0),
    devmajor: 0,
    devminor: 0,
  };
  await write(encodeEntryHeader({ ...base, path: Buffer.from('bomb'), type: 'dir', mode: 0o755, xattrs: [] }, STYLE));
  // Every entry's PAX block is the same bytes (short paths stay in the ustar
  // header): encode it once, then only the 512-byte header per entry.
  const one = encodeEntryHeader({ ...base, path: Buffer.from('bomb/f0'), xattrs: [['user.a', value]] }, STYLE);
  const pax = one.subarray(0, one.length - 512);
  for (let i = 0; i < shape.entries; i++) {
    const header = encodeEntryHeader({ ...base, path: Buffer.from(`bomb/f${i}`), xattrs: [] }, STYLE);
    const w = write(Buffer.concat([pax, header]));
    if (w) await w;
  }
  z.stdin.end(Buffer.alloc(1024));
  await closed;
  return Buffer.concat(out);
}
