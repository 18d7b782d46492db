/**
 * HOST:PORT listen addresses (--http, --ssh, the config file's listen keys).
 * A leaf module: the CLI checks addresses without loading the server.
 */
import { StrataError } from '../store/errors.ts';

export function parseHostPort(s: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s.trim());
  if (!m) throw new StrataError('E_BAD_ARGUMENT', `${what} must be HOST:PORT (e.g. 127.0.0.1:8080), not "${s}"`);
  const host = m[1] ?? (m[2] || '0.0.0.0');
  const port = Number(m[3]);
  if (port > 65535) throw new StrataError('E_BAD_ARGUMENT', `${what}: port ${port} is out of range`);
  return { host, port };
}
