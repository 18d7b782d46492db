/** Builds small upper-directory tars in memory for store tests (tar-stream). */
import tarStream from 'tar-stream';

type Headers = Parameters<ReturnType<typeof tarStream.pack>['entry']>[0];

// @types/tar-stream lacks `pax`, which tar-stream 3 writes as a PAX header.
type H = Headers & { pax?: Record<string, string> };

export type Spec =
  | string
  | { file: string; mode?: number; uid?: number; gid?: number; mtime?: number; xattrs?: Record<string, string> }
  | { dir: true; opaque?: boolean; mode?: number; xattrs?: Record<string, string> }
  | { whiteout: true }
  | { symlink: string }
  | { hardlink: string };

/** Paths without leading './'; parent dirs are added automatically. */
export async function makeTar(files: Record<string, Spec>, opts: { raw?: boolean } = {}): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = new Promise<void>((res, rej) => {
    pack.on('end', () => res());
    pack.on('error', rej);
  });
  const dirs = new Set<string>();
  const mtime = new Date(1_700_000_000_000);
  const entry = (h: H, body?: string) => new Promise<void>((res, rej) => pack.entry(h as Headers, body ?? '', (e) => (e ? rej(e) : res())));
  for (const [path, spec] of Object.entries(files)) {
    if (!opts.raw) {
      const parts = path.split('/');
      for (let i = 1; i < parts.length; i++) {
        const d = parts.slice(0, i).join('/');
        if (!dirs.has(d) && !(d in files)) {
          dirs.add(d);
          await entry({ name: `${d}/`, type: 'directory', mode: 0o755, mtime });
        }
      }
    }
    if (typeof spec === 'string') await entry({ name: path, type: 'file', mode: 0o644, mtime }, spec);
    else if ('file' in spec) {
      await entry(
        {
          name: path,
          type: 'file',
          mode: spec.mode ?? 0o644,
          uid: spec.uid ?? 0,
          gid: spec.gid ?? 0,
          mtime: spec.mtime ? new Date(spec.mtime * 1000) : mtime,
          pax: spec.xattrs ? Object.fromEntries(Object.entries(spec.xattrs).map(([k, v]) => [`SCHILY.xattr.${k}`, v])) : undefined,
        },
        spec.file,
      );
    } else if ('dir' in spec) {
      dirs.add(path);
      await entry({
        name: `${path}/`,
        type: 'directory',
        mode: spec.mode ?? 0o755,
        mtime,
        pax:
          spec.opaque || spec.xattrs
            ? {
                ...(spec.opaque ? { 'SCHILY.xattr.trusted.overlay.opaque': 'y' } : {}),
                ...Object.fromEntries(Object.entries(spec.xattrs ?? {}).map(([k, v]) => [`SCHILY.xattr.${k}`, v])),
              }
            : undefined,
      });
    } else if ('whiteout' in spec) await entry({ name: path, type: 'character-device', devmajor: 0, devminor: 0, mode: 0o644, mtime });
    else if ('symlink' in spec) await entry({ name: path, type: 'symlink', linkname: spec.symlink, mode: 0o777, mtime });
    else if ('hardlink' in spec) await entry({ name: path, type: 'link', linkname: spec.hardlink, mode: 0o644, mtime });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}
