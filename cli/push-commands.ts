/**
 * Push administration: `strata pushes` lists the pushes that wait, bake or
 * were rejected, with their bake attempts and last error; `strata push
 * reject ID` ends a push that waits or keeps failing. A push failing
 * maxBakeAttempts times is rejected by the store on its own (store/pushes.ts).
 */
import type { Command } from 'commander';
import { act, out } from './command-kit.ts';
import { formatTime } from './format.ts';

export function registerPushCommands(program: Command): void {
  program
    .command('pushes')
    .description('pushes waiting, baking or rejected, newest first, with bake attempts and the last error')
    .option('--all', 'committed pushes too')
    .option('--limit <n>', 'at most N pushes', '200')
    .action(
      act((s, g, o: { all?: boolean; limit: string }) => {
        const limit = Math.max(1, Number.parseInt(o.limit, 10) || 200);
        const all = o.all ? s.listPushes({ limit }) : s.unfinishedPushes({ limit });
        const line = (p: (typeof all)[number]) => {
          const why = p.state === 'rejected' ? p.reason : p.lastError;
          return `${p.id}\t${p.state}\t${p.profile}\t${p.author}\t${formatTime(p.createdAt)}\t${p.attempts} attempt(s)${why ? `\t${why}` : ''}`;
        };
        out(g, all, () => (all.length ? all.map(line).join('\n') : o.all ? 'no pushes' : 'no pushes waiting or rejected'));
      }),
    );

  const push = program.command('push').description('administer one push (pushes arrive over SSH: docs/agent.md)');
  push
    .command('reject')
    .description('reject a push that waits or keeps failing; its archive is deleted')
    .argument('<id>')
    .option('--reason <text>', 'why (shown by strata pushes and to the pusher)', 'rejected by an admin')
    .action(
      act(async (s, g, id: string, o: { reason: string }) => {
        const p = await s.rejectPush(id, o.reason);
        out(g, p, () => `rejected push ${p.id} (${p.profile}): ${p.reason}`);
      }),
    );
}
