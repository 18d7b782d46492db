/**
 * PAX extended headers written byte-exact. tar-stream encodes pax values as
 * UTF-8 strings, which would mangle binary xattr values (security.capability,
 * trusted.overlay.redirect may hold any bytes); GNU tar and tar2sqfs expect the
 * raw bytes in `SCHILY.xattr.<name>` records. So the agent builds the 'x'
 * header block itself and hands tar-stream only ustar-safe headers.
 */

/** One PAX record: "<len> <key>=<value>\n" where len counts the whole record, digits included. */
export function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len), 'ascii'), body]);
}

function octal(buf: Buffer, value: number, offset: number, width: number): void {
  const s = value.toString(8).padStart(width - 1, '0');
  buf.write(`${s.slice(-(width - 1))}\0`, offset, 'ascii');
}

/** A ustar header block of type 'x' announcing `size` bytes of pax records, then the records, padded to 512. */
export function paxBlock(records: Buffer[], mtimeSec: number): Buffer {
  const data = Buffer.concat(records);
  const h = Buffer.alloc(512);
  h.write('./PaxHeaders/entry', 0, 'ascii');
  octal(h, 0o644, 100, 8);
  octal(h, 0, 108, 8);
  octal(h, 0, 116, 8);
  octal(h, data.length, 124, 12);
  octal(h, Math.max(0, Math.min(mtimeSec, 0o77777777777)), 136, 12);
  h.write('x', 156, 'ascii');
  h.write('ustar\x0000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  const pad = (512 - (data.length % 512)) % 512;
  return Buffer.concat([h, data, Buffer.alloc(pad)]);
}

/** True when tar-stream can encode `name` in a plain ustar header (ASCII, fits name+prefix). */
export function ustarNameFits(name: string): boolean {
  if (!/^[\x20-\x7e]*$/.test(name)) return false;
  let n = name;
  let prefix = '';
  while (n.length > 100) {
    const i = n.indexOf('/');
    if (i === -1) return false;
    prefix += prefix ? `/${n.slice(0, i)}` : n.slice(0, i);
    n = n.slice(i + 1);
  }
  return n.length <= 100 && prefix.length <= 155;
}

/** A stand-in ustar name for an entry whose real name travels in the pax `path` record. */
export function placeholderName(name: string, isDir: boolean): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, '_');
  const tail = ascii.slice(-90).replace(/^\/+/, '');
  return `./@pax/${tail.replace(/\//g, '_')}${isDir ? '/' : ''}`.slice(0, 100);
}

/** Largest value tar-stream's 6-digit octal uid/gid/mode fields hold. */
export const USTAR_ID_MAX = 0o777777;
