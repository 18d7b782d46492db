/**
 * One `strata serve --pxe` per interface. Two PXE answerers on one network
 * would race each other's offers, so the second is refused up front with a
 * sentence that names the first.
 *
 * The lock is a Linux abstract unix socket named after the interface: it
 * lives in the network namespace (where interface names live too), nothing
 * is left on disk, and the kernel drops it when its process dies, even by
 * SIGKILL, so a crashed server never leaves a stale lock.
 */
import net from 'node:net';
import { StrataError } from '../../store/errors.ts';

export interface IfaceLock {
  release(): Promise<void>;
}

const socketName = (iface: string) => `\0strata-pxe/${iface}`;

/** Asks the holder who it is; it answers its pid and closes. */
function holderPid(iface: string): Promise<number | null> {
  return new Promise((resolve) => {
    const c = net.connect(socketName(iface));
    let text = '';
    const done = (v: number | null) => {
      c.destroy();
      resolve(v);
    };
    c.setTimeout(2000, () => done(null));
    c.on('data', (d) => {
      text += d;
    });
    c.on('end', () => done(/^\d+$/.test(text.trim()) ? Number(text.trim()) : null));
    c.on('error', () => done(null));
  });
}

export async function lockInterface(iface: string): Promise<IfaceLock> {
  const server = net.createServer((c) => c.end(`${process.pid}\n`));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketName(iface), () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    const pid = await holderPid(iface);
    throw new StrataError(
      'E_LOCKED',
      `another strata serve --pxe already answers PXE clients on ${iface}${pid ? ` (pid ${pid})` : ''}; stop it first, or give this one another interface`,
      { interface: iface, pid },
    );
  }
  // The lock must not keep the process alive on its own.
  server.unref();
  return {
    release: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
