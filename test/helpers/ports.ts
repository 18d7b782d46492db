/** Ports for tests and benches on 127.0.0.1: one free to bind, and waiting until one listens. */
import net from 'node:net';

export { freePort } from '../../server/cluster.ts';

/** Resolves once something accepts TCP connections on 127.0.0.1:PORT. */
export async function waitPort(port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.end();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
