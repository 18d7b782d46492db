/**
 * Runs dnsmasq as a child of strata serve: started with the server, its log
 * lines in strata's log, restarted when it dies, stopped with the server.
 *
 * A first start that fails (a bad interface, port 67 taken) is an error for
 * the caller: a config that cannot work is reported, not retried forever.
 * After that, an exit nobody asked for is a crash: dnsmasq is started again
 * after a pause that doubles while it keeps dying quickly.
 *
 * dnsmasq runs under `setpriv --pdeathsig TERM` so the kernel stops it when
 * strata dies without cleaning up (SIGKILL, OOM): no orphan keeps answering
 * PXE for a server that is gone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { StrataError } from '../../store/errors.ts';

export interface SupervisorOptions {
  confFile: string;
  log: (msg: string) => void;
  /** dnsmasq binary (default: dnsmasq on PATH, as Debian installs it in /usr/sbin). */
  binary?: string;
  /** How long the first start may take before it counts as failed. */
  startTimeoutMs?: number;
}

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;
/** A run this long was healthy: the next crash restarts at once again. */
const HEALTHY_MS = 30_000;

export function findDnsmasq(): string {
  for (const p of ['/usr/sbin/dnsmasq', '/sbin/dnsmasq', '/usr/bin/dnsmasq']) if (existsSync(p)) return p;
  throw new StrataError(
    'E_BAD_ARGUMENT',
    '--pxe needs dnsmasq, which is not installed: apt-get install dnsmasq-base ipxe (scripts/setup.sh does this)',
  );
}

export class DnsmasqSupervisor {
  private child: ChildProcess | null = null;
  private stopping = false;
  private delay = FIRST_DELAY_MS;
  private timer: NodeJS.Timeout | null = null;
  /** How many times dnsmasq was started again after dying. */
  restarts = 0;

  constructor(private readonly opts: SupervisorOptions) {}

  /** The running dnsmasq's pid, or null between a crash and its restart. */
  pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** Resolves once dnsmasq has bound its ports; rejects with its own words if it cannot. */
  async start(): Promise<void> {
    await this.spawnOnce();
  }

  private spawnOnce(): Promise<void> {
    const binary = this.opts.binary ?? findDnsmasq();
    const args = ['--keep-in-foreground', `--conf-file=${this.opts.confFile}`, '--log-facility=-'];
    const child = spawn('setpriv', ['--pdeathsig', 'TERM', '--', binary, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const startedAt = Date.now();
    const said: string[] = [];
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      const timeout = setTimeout(() => {
        if (!ready) child.kill('SIGKILL');
      }, this.opts.startTimeoutMs ?? 15_000);
      const onLine = (line: string) => {
        // dnsmasq prefixes "dnsmasq[PID]: " (or "dnsmasq-tftp[PID]: ") on stderr; the pid is dropped.
        const m = /^(dnsmasq(?:-[a-z]+)?)(?:\[\d+\])?: (.*)$/.exec(line);
        const text = m ? m[2]! : line;
        said.push(text);
        this.opts.log(`${m ? m[1] : 'dnsmasq'}: ${text}`);
        if (!ready && /^started, version/.test(text)) {
          ready = true;
          clearTimeout(timeout);
          this.opts.log(`dnsmasq running (pid ${child.pid})`);
          resolve();
        }
      };
      for (const stream of [child.stdout!, child.stderr!]) {
        let partial = '';
        stream.on('data', (d: Buffer) => {
          partial += d.toString('utf8');
          const lines = partial.split('\n');
          partial = lines.pop() ?? '';
          for (const l of lines) if (l.trim()) onLine(l);
        });
      }
      child.on('error', (e) => {
        clearTimeout(timeout);
        if (!ready) reject(new StrataError('E_BAD_ARGUMENT', `cannot start dnsmasq: ${e.message}`, {}, { cause: e }));
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timeout);
        if (this.child === child) this.child = null;
        if (!ready) {
          const why = said.filter((l) => /fail|error|unknown|bad|cannot|denied|in use/i.test(l)).join('; ') || said.at(-1) || 'no output';
          reject(new StrataError('E_BAD_ARGUMENT', `dnsmasq did not start (${signal ?? `exit ${code}`}): ${why}`, { code, signal }));
          return;
        }
        if (this.stopping) return;
        const ran = Date.now() - startedAt;
        if (ran >= HEALTHY_MS) this.delay = FIRST_DELAY_MS;
        this.opts.log(`dnsmasq exited (${signal ?? `exit ${code}`}); starting it again in ${this.delay} ms`);
        this.timer = setTimeout(() => this.restart(), this.delay);
        this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
      });
    });
  }

  private restart(): void {
    this.timer = null;
    if (this.stopping) return;
    this.restarts++;
    this.spawnOnce().catch((e: Error) => {
      // Still failing (e.g. the interface went away): keep trying, slower each time.
      if (this.stopping) return;
      this.opts.log(`${e.message}; trying again in ${this.delay} ms`);
      this.timer = setTimeout(() => this.restart(), this.delay);
      this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    });
  }

  /** Stops dnsmasq (SIGTERM, then SIGKILL after 5 s) and any pending restart. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}
