/**
 * `strata serve` with its settings merged: command-line flags, else the
 * config file, else the defaults. SIGHUP (`systemctl reload strata`)
 * re-reads the config file: limits and gc times apply at once, an invalid
 * file is reported and ignored, and settings that need new sockets or a new
 * process (listen addresses, data directory, workers, public URL, PXE) are
 * logged as waiting for a restart.
 */
import { StrataError } from '../store/errors.ts';
import type { ServiceSettings } from './config-file.ts';
import { loadSettings, readConfigFile } from './config-load.ts';

export interface ServeFlags {
  http?: string;
  ssh?: string;
  publicUrl?: string;
  httpWorkers?: string;
  maxPushSize?: string;
  pxe?: string;
  pxeDhcpRange?: string;
  pxeSecureBoot?: boolean;
}

export const SERVE_DEFAULTS = { http: '0.0.0.0:8080', ssh: '0.0.0.0:2222', httpWorkers: 1 };

const RESTART_ONLY: (keyof ServiceSettings)[] = ['dataDir', 'http', 'ssh', 'httpWorkers', 'publicUrl', 'pxeInterface', 'pxeSecureBoot'];

export async function runServe(o: ServeFlags, dataDir: string, configFlag: string | undefined): Promise<void> {
  const { file, settings } = loadSettings(configFlag);
  let httpWorkers = settings.httpWorkers ?? SERVE_DEFAULTS.httpWorkers;
  if (o.httpWorkers !== undefined) {
    httpWorkers = Number(o.httpWorkers);
    if (!/^\d+$/.test(o.httpWorkers.trim()) || httpWorkers < 1)
      throw new StrataError('E_BAD_ARGUMENT', `--http-workers must be a whole number >= 1, not "${o.httpWorkers}"`);
  }
  const maxPushBytes = o.maxPushSize === undefined ? undefined : Number(o.maxPushSize);
  if (maxPushBytes !== undefined && !(Number.isSafeInteger(maxPushBytes) && maxPushBytes > 0))
    throw new StrataError('E_BAD_ARGUMENT', `--max-push-size must be a number of bytes, not "${o.maxPushSize}"`);
  const pxeIface = o.pxe ?? settings.pxeInterface;
  if (o.pxeDhcpRange && !pxeIface) throw new StrataError('E_BAD_ARGUMENT', '--pxe-dhcp-range needs --pxe IFACE');
  const secureBoot = o.pxeSecureBoot ?? settings.pxeSecureBoot ?? false;
  if (o.pxeSecureBoot && !pxeIface) throw new StrataError('E_BAD_ARGUMENT', '--pxe-secure-boot needs --pxe IFACE');
  const pxe = pxeIface ? { iface: pxeIface, dhcpRange: o.pxeDhcpRange, secureBoot } : undefined;
  const { startServer } = await import('../server/main.ts');
  const log = (m: string) => process.stderr.write(`strata: ${m}\n`);
  const running = await startServer({
    dataDir,
    http: o.http ?? settings.http ?? SERVE_DEFAULTS.http,
    ssh: o.ssh ?? settings.ssh ?? SERVE_DEFAULTS.ssh,
    publicUrl: o.publicUrl ?? settings.publicUrl,
    httpWorkers,
    maxPushBytes,
    storeConfig: settings.storeConfig,
    limits: settings.serverLimits,
    pxe,
    log,
  });
  if (file) log(`settings from ${file}`);

  let current = settings;
  process.on('SIGHUP', () => {
    if (!file) {
      log('SIGHUP: no config file to re-read (give --config or create /etc/strata/strata.toml)');
      return;
    }
    let next: ServiceSettings;
    try {
      next = readConfigFile(file);
    } catch (e) {
      log(`SIGHUP: kept the running settings: ${(e as Error).message}`);
      return;
    }
    // The store reads its limits at each use, so changing them in place takes effect for the next push, gc or boot.
    Object.assign(running.store.config, next.storeConfig);
    // The SSH limits are read at each use too; the HTTP timeouts are the HTTP server's and wait for a restart.
    Object.assign(running.limits, next.serverLimits);
    const changed = Object.entries({ ...next.storeConfig, ...next.serverLimits }).map(([k, v]) => `${k}=${v}`);
    log(`SIGHUP: re-read ${file}${changed.length ? `; in force: ${changed.join(', ')}` : ''}`);
    const waiting = RESTART_ONLY.filter((k) => JSON.stringify(next[k]) !== JSON.stringify(current[k]));
    if (waiting.length) log(`SIGHUP: ${waiting.join(', ')} changed: takes effect after a restart (systemctl restart strata)`);
    current = next;
  });
}
