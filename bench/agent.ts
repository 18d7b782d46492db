/**
 * Agent benchmark (issue 4): snapshot + compress + push of a 200 MB upper dir
 * of real system files, against the plain pipeline doing the same work in
 * the same run:
 *   tar --xattrs -C upper -cf - . | zstd -T0 | ssh -p P root@127.0.0.1 'cat > /dev/null'
 * to a local OpenSSH sshd (own config, host key and authorized_keys in a temp
 * dir, spare port, stopped after). The agent side: commitToSpool (snapshot ->
 * zstd -> spool, fsynced) then sendPending to an ssh2 push endpoint that reads
 * and counts the bytes. Goals: time ratio <= 1.2, compressed size ratio <= 1.05.
 *
 *   node --import tsx bench/agent.ts
 *
 * Prints; never fails on a slow machine.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../client-agent/config.ts';
import { commitToSpool } from '../client-agent/commit.ts';
import { sendPending } from '../client-agent/sender.ts';
import { startFakePushServer } from '../test/helpers/fake-push-server.ts';
import { freePort, waitPort } from '../test/helpers/ports.ts';

const UPPER_BYTES = 200 * 1024 * 1024;
const RUNS = 3;

export interface AgentBenchResult {
  upperBytes: number;
  files: number;
  agentSeconds: number;
  pipelineSeconds: number;
  timeRatio: number;
  agentCompressedBytes: number;
  pipelineCompressedBytes: number;
  sizeRatio: number;
}

/** Picks real files from /usr until `bytes` (each < 32 MB), as paths relative to /. */
function pickSystemFiles(bytes: number): { list: string[]; total: number } {
  const list: string[] = [];
  let total = 0;
  const walk = (dir: string): boolean => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return false;
    }
    for (const n of names) {
      const p = join(dir, n);
      let st;
      try {
        st = lstatSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) {
        if (walk(p)) return true;
      } else if ((st.isFile() && st.size < 32 * 1024 * 1024) || st.isSymbolicLink()) {
        list.push(p.slice(1));
        if (st.isFile()) total += st.size;
        if (total >= bytes) return true;
      }
    }
    return false;
  };
  for (const d of ['/usr/lib', '/usr/share', '/usr/bin', '/usr/sbin']) if (walk(d)) break;
  return { list, total };
}

export async function main(): Promise<AgentBenchResult | null> {
  if (!existsSync('/usr/sbin/sshd')) {
    console.log('bench agent: /usr/sbin/sshd is missing; install openssh-server (scripts/setup.sh does)');
    return null;
  }
  const work = await mkdtemp(join(tmpdir(), 'strata-bench-agent-'));
  let sshd: ChildProcess | null = null;
  const fake = { close: async () => {} };
  try {
    // --- 200 MB of real system files as the upper dir
    const upper = join(work, 'upper');
    mkdirSync(upper);
    const { list, total } = pickSystemFiles(UPPER_BYTES);
    writeFileSync(join(work, 'list'), `${list.join('\n')}\n`);
    execFileSync(
      'sh',
      [
        '-c',
        `tar --xattrs --xattrs-include='*' -C / --no-recursion -T '${join(work, 'list')}' -cf - | tar --xattrs --xattrs-include='*' -C '${upper}' -xf -`,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    console.log(`upper: ${list.length} files, ${(total / 1048576).toFixed(0)} MB from /usr`);

    // --- keys, ssh2 push endpoint (counts bytes), OpenSSH sshd
    const key = join(work, 'agent_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const pub = readFileSync(`${key}.pub`, 'utf8');
    const srv = await startFakePushServer({ dir: join(work, 'recv'), authorizedKey: pub, discard: true });
    fake.close = srv.close;

    const sshdPort = await freePort();
    mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege-separation directory
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, 'sshd_host_key')]);
    writeFileSync(join(work, 'authorized_keys'), pub, { mode: 0o600 });
    writeFileSync(
      join(work, 'sshd_config'),
      [
        `Port ${sshdPort}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${work}/sshd_host_key`,
        `AuthorizedKeysFile ${work}/authorized_keys`,
        `PidFile ${work}/sshd.pid`,
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'PermitRootLogin prohibit-password',
        '',
      ].join('\n'),
    );
    sshd = spawn('/usr/sbin/sshd', ['-D', '-f', join(work, 'sshd_config')], { stdio: 'ignore' });
    await waitPort(sshdPort);
    const sshArgs = `-i '${key}' -p ${sshdPort} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR`;
    const pipeline = `tar --xattrs -C '${upper}' -cf - . | zstd -T0 -q | ssh ${sshArgs} root@127.0.0.1 'cat > /dev/null'`;

    const runPipeline = (): number => {
      const t0 = process.hrtime.bigint();
      execFileSync('sh', ['-c', `set -e; ${pipeline}`], { stdio: ['ignore', 'ignore', 'inherit'] });
      return Number(process.hrtime.bigint() - t0) / 1e9;
    };
    let agentBytes = 0;
    const runAgentOnce = async (i: number): Promise<number> => {
      // A fresh state dir per run: a second commit of an unchanged tree would be "nothing to commit".
      const state = join(work, `state-${i}`);
      const cfg = loadConfig(
        {
          config: join(work, 'none.json'),
          server: '127.0.0.1',
          sshPort: srv.port,
          key,
          upper,
          stateDir: state,
          cmdline: '',
          profile: 'bench',
          parent: 'b'.repeat(64),
        },
        { env: {} },
      );
      const t0 = process.hrtime.bigint();
      const r = await commitToSpool(cfg, { message: 'bench' });
      const sent = await sendPending(cfg, { attempts: 1, log: () => {} });
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      if (sent?.sent.length !== 1) throw new Error('the agent did not push');
      agentBytes = r.meta.bytes;
      return s;
    };
    writeFileSync(join(work, 'none.json'), '{}');

    // Warm the page cache for both, then best of RUNS, alternating.
    runPipeline();
    const pipeTimes: number[] = [];
    const agentTimes: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      agentTimes.push(await runAgentOnce(i));
      pipeTimes.push(runPipeline());
    }
    const pipelineBytes = Number(
      execFileSync('sh', ['-c', `tar --xattrs -C '${upper}' -cf - . | zstd -T0 -q | wc -c`], { encoding: 'utf8' }).trim(),
    );
    if (srv.pushes.length !== RUNS) throw new Error(`the endpoint saw ${srv.pushes.length} pushes`);
    const agentSeconds = Math.min(...agentTimes);
    const pipelineSeconds = Math.min(...pipeTimes);
    const result: AgentBenchResult = {
      upperBytes: total,
      files: list.length,
      agentSeconds,
      pipelineSeconds,
      timeRatio: agentSeconds / pipelineSeconds,
      agentCompressedBytes: agentBytes,
      pipelineCompressedBytes: pipelineBytes,
      sizeRatio: agentBytes / pipelineBytes,
    };
    console.log(
      `agent snapshot+zstd+spool+push: ${agentSeconds.toFixed(2)} s; tar|zstd -T0|ssh to sshd: ${pipelineSeconds.toFixed(2)} s; time ratio ${result.timeRatio.toFixed(2)} (goal <= 1.2)`,
    );
    console.log(
      `compressed: agent ${(agentBytes / 1048576).toFixed(1)} MB, pipeline ${(pipelineBytes / 1048576).toFixed(1)} MB; size ratio ${result.sizeRatio.toFixed(3)} (goal <= 1.05)`,
    );
    return result;
  } finally {
    if (sshd && sshd.exitCode === null) {
      sshd.kill('SIGTERM');
      await new Promise((r) => sshd!.once('close', r));
    }
    await fake.close();
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}
