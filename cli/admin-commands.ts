/**
 * The administration commands of `strata`: which profile a client boots
 * (assign, cmdline), profile settings, push keys and their enrollment, API
 * tokens, the clients seen, and store upkeep (gc, fsck). Each action loads the
 * store lazily through act() (cli/command-kit.ts).
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { readFileSync } from 'node:fs';
import { StrataError } from '../store/errors.ts';
import type { Compressor } from '../store/types.ts';
import { act, out } from './command-kit.ts';
import { formatClients, formatTime, shortId } from './format.ts';

export function registerAdminCommands(program: Command): void {
  program
    .command('assign')
    .description('which profile (or pinned commit) a client boots; MATCH is a MAC, IP, CIDR or "default"')
    .argument('[match]')
    .argument('[target]', 'PROFILE or PROFILE@COMMIT (pinned)')
    .option('--cmdline <args>', 'extra kernel arguments for this assignment')
    .option('--remove', 'remove the assignment for MATCH')
    .action(
      act((s, g, match: string | undefined, target: string | undefined, o: { cmdline?: string; remove?: boolean }) => {
        if (!match) {
          const all = s.listAssignments();
          out(
            g,
            all,
            () =>
              all.map((a) => `${a.match}\t${a.profile}${a.pin ? `@${a.pin.slice(0, 12)}` : ''}\t${a.cmdline}`).join('\n') ||
              'no assignments',
          );
          return;
        }
        if (o.remove) {
          s.unassign(match);
          out(g, { removed: match }, () => `removed ${match}`);
          return;
        }
        if (!target) throw new StrataError('E_BAD_ARGUMENT', 'give a PROFILE or PROFILE@COMMIT to assign (or --remove)');
        const a = s.assign(match, target, { cmdline: o.cmdline });
        out(g, a, () => `${a.match} -> ${a.profile}${a.pin ? ` pinned at ${a.pin}` : ''}`);
      }),
    );

  program
    .command('cmdline')
    .description("show or set a profile's extra kernel arguments")
    .argument('<profile>')
    .argument('[args...]')
    .action(
      act((s, g, profile: string, args: string[]) => {
        const p = args.length ? s.setCmdline(profile, args.join(' ')) : s.getProfile(profile);
        out(g, { profile: p.name, cmdline: p.cmdline }, () => p.cmdline);
      }),
    );

  program
    .command('profile')
    .description("show profiles, or one profile's settings (compressor and level)")
    .argument('[name]')
    .addOption(new Option('--compressor <c>').choices(['zstd', 'lz4', 'gzip', 'xz']))
    .option('--level <n>', 'compression level; "default" for tar2sqfs default')
    .option('--kernel-version <v>', 'boot kernel V of each commit\'s tree instead of the newest; "newest" to follow the newest again')
    .option('--enroll-cidr <cidr>', 'approve new client keys pushing from this IPv4 CIDR at once (labs); "none" clears it')
    .option('--health-check <cmd>', 'shell command a booted client runs to judge its boot healthy (exit 0); "none" removes it')
    .action(
      act(
        async (
          s,
          g,
          name: string | undefined,
          o: { compressor?: Compressor; level?: string; kernelVersion?: string; enrollCidr?: string; healthCheck?: string },
        ) => {
          if (name && o.healthCheck !== undefined) {
            const cmd = s.setHealthCheck(name, o.healthCheck);
            out(
              g,
              { profile: name, healthCheck: cmd },
              () => `profile ${name}: ${cmd ? `health check: ${cmd}` : 'default health checks only'}`,
            );
            return;
          }
          if (name && o.enrollCidr !== undefined) {
            s.getProfile(name);
            const { Enrollment } = await import('../store/enrollment.ts');
            const cidr = new Enrollment(s).setEnrollCidr(name, o.enrollCidr);
            out(
              g,
              { profile: name, enrollCidr: cidr },
              () => `profile ${name}: ${cidr ? `keys from ${cidr} are approved at once` : 'no enroll CIDR'}`,
            );
            return;
          }
          if (!name) {
            const all = s.listProfiles();
            out(g, all, () =>
              all
                .map((p) => `${p.name}\t${p.head ? shortId(p.head) : '-'}\t${p.compressor}${p.level === null ? '' : `:${p.level}`}`)
                .join('\n'),
            );
            return;
          }
          let p = s.getProfile(name);
          if (o.compressor || o.level !== undefined)
            p = s.setCompression(
              name,
              o.compressor ?? p.compressor,
              o.level === undefined ? p.level : o.level === 'default' ? null : Number(o.level),
            );
          if (o.kernelVersion !== undefined) {
            const { pinKernel } = await import('./kernel-commands.ts');
            pinKernel(s, name, o.kernelVersion === 'newest' ? null : o.kernelVersion);
          }
          const kernelVersion = s.kernelPin(name);
          const healthCheck = s.healthCheck(name);
          out(g, { ...p, kernelVersion, healthCheck }, () =>
            [
              `profile ${p.name}`,
              `head       ${p.head ?? '-'}`,
              `compressor ${p.compressor} level ${p.level ?? 'default (zstd 15: smallest, slowest; level 3 bakes ~30x faster for ~15% larger layers)'}`,
              `cmdline    ${p.cmdline}`,
              `kernel     ${p.kernel ? p.kernel.digest : '-'}`,
              `initrd     ${p.initrd ? p.initrd.digest : '-'}`,
              `kernel-version ${kernelVersion ?? 'newest in the tree'}`,
              `health-check ${healthCheck ?? '-'}`,
            ].join('\n'),
          );
        },
      ),
    )
    .command('rm')
    .description(
      'remove profile NAME with its branches and tags (refused while an assignment uses it); undo with "strata rollback NAME" until gc',
    )
    .argument('<name>')
    .action(
      act((s, g, name: string) => {
        const r = s.removeProfile(name);
        out(g, r, () => `removed profile ${name} (${r.refs.map((x) => x.name).join(', ')}); undo with: strata rollback ${name}`);
      }),
    );

  const keys = program.command('keys').description('SSH keys allowed to push');
  keys
    .command('add')
    .argument('<name>')
    .argument('<pubkey-file>')
    .option('--profile <p...>', 'profiles this key may push to')
    .option('--admin', 'may push anywhere')
    .action(
      act((s, g, name: string, file: string, o: { profile?: string[]; admin?: boolean }) => {
        const k = s.addKey(name, readFileSync(file, 'utf8'), { admin: !!o.admin, profiles: o.profile ?? [] });
        out(g, k, () => `key ${k.name} ${k.fingerprint} ${k.admin ? 'admin' : `profiles: ${k.profiles.join(', ')}`}`);
      }),
    );
  keys.command('list').action(
    act((s, g) => {
      const all = s.listKeys();
      out(g, all, () => all.map((k) => `${k.name}\t${k.fingerprint}\t${k.admin ? 'admin' : k.profiles.join(',')}`).join('\n'));
    }),
  );
  keys
    .command('remove')
    .argument('<name>')
    .action(
      act((s, g, name: string) => {
        s.removeKey(name);
        out(g, { removed: name }, () => `removed key ${name}`);
      }),
    );

  // Enrollment: keys clients made themselves, held until an admin decides (store/enrollment.ts).
  keys
    .command('pending')
    .description('client keys held for approval, with the MAC and IP they pushed from')
    .action(
      act(async (s, g) => {
        const { Enrollment } = await import('../store/enrollment.ts');
        const all = new Enrollment(s).list();
        const line = (k: (typeof all)[number]) =>
          `${k.id}\t${k.fingerprint}\tmac ${k.mac ?? '-'}\tip ${k.ip ?? '-'}\t${k.hostname ?? '-'}\t${k.heldPushes} held push(es)`;
        out(g, all, () => (all.length ? all.map(line).join('\n') : 'no pending keys'));
      }),
    );
  keys
    .command('approve')
    .description('admit a pending client key; its held pushes are queued')
    .argument('<id>')
    .option('--profile <p...>', 'profiles this key may push to')
    .option('--admin', 'may push anywhere')
    .option('--name <name>', 'the key name (default client-<id>)')
    .action(
      act(async (s, g, id: string, o: { profile?: string[]; admin?: boolean; name?: string }) => {
        const { Enrollment } = await import('../store/enrollment.ts');
        const r = new Enrollment(s).approve(id, { admin: !!o.admin, profiles: o.profile ?? [], name: o.name });
        out(g, r, () => `key ${r.key.name} ${r.key.fingerprint} admitted; ${r.released.length} held push(es) queued`);
      }),
    );
  keys
    .command('reject')
    .description('drop a pending client key and delete its held pushes')
    .argument('<id>')
    .action(
      act(async (s, g, id: string) => {
        const { Enrollment } = await import('../store/enrollment.ts');
        const r = new Enrollment(s).reject(id);
        out(g, { rejected: id, ...r }, () => `rejected key ${id}; deleted ${r.deleted.length} held push(es)`);
      }),
    );

  const token = program.command('token').description('bearer tokens for the admin API and the web UI');
  token
    .command('create')
    .argument('<name>')
    .action(
      act((s, g, name: string) => {
        const t = s.createToken(name);
        out(g, t, () => `${t.token}\n(shown once; keep it: it logs in to the web UI and the API)`);
      }),
    );
  token.command('list').action(
    act((s, g) => {
      const all = s.listTokens();
      out(g, all, () => all.map((t) => `${t.name}\t${formatTime(t.createdAt)}`).join('\n'));
    }),
  );
  token
    .command('revoke')
    .argument('<name>')
    .action(
      act((s, g, name: string) => {
        s.revokeToken(name);
        out(g, { revoked: name }, () => `revoked ${name}`);
      }),
    );

  const clients = program
    .command('clients')
    .description(
      "who booted what, and when; each machine's last heartbeat and hardware; clients held back on their last good commit say why",
    )
    .action(
      act(async (s, g) => {
        // With the last heartbeat (commit, uptime, inventory) of each machine that sent one.
        const { clientReports } = await import('../store/heartbeats.ts');
        const health = new Map(s.listClients().map((c) => [c.mac, c.health.heldBack]));
        const all = clientReports(s).map((c) => ({ ...c, heldBack: health.get(c.mac) ?? null }));
        out(g, all, () => formatClients(all));
      }),
    );
  clients
    .command('clear')
    .description("forget a client's failed boots: a client held back on its last good commit tries its assigned commit again")
    .argument('<mac>')
    .action(
      act((s, g, mac: string) => {
        const r = s.clearClientHealth(mac);
        out(g, r, () => (r.cleared ? `${r.mac}: cleared; its next boot tries its assigned commit again` : `${r.mac}: nothing to clear`));
      }),
    );

  program
    .command('gc')
    .description('remove commits and blobs nothing keeps (refs, tags, recent reflog, pins, leases)')
    .option('--dry-run', 'only list what would go')
    .action(
      act(async (s, g, o: { dryRun?: boolean }) => {
        const r = await s.gc({ dryRun: o.dryRun });
        out(
          g,
          r,
          () =>
            `${o.dryRun ? 'would remove' : 'removed'} ${r.commits.length} commit(s), ${r.objects.length} object(s), ${(r.bytes / 1048576).toFixed(1)} MiB` +
            (r.incoming.length ? `, ${r.incoming.length} dead file(s) of incoming/` : '') +
            (o.dryRun
              ? `\n${[...r.commits.map((c) => `commit ${c}`), ...r.objects.map((d) => `object ${d}`), ...r.incoming.map((f) => `incoming ${f}`)].join('\n')}`
              : '') +
            (o.dryRun && r.staleBranches.length
              ? `\n${r.staleBranches.map((b) => `stale branch ${b.name} (delete with: strata branch -d ${b.name})`).join('\n')}`
              : ''),
        );
      }),
    );

  program
    .command('fsck')
    .description('re-hash every blob, check every manifest and chain')
    .action(
      act(async (s, g) => {
        const r = await s.fsck();
        out(g, r, () => (r.ok ? `ok: ${r.objects} objects, ${r.commits} commits` : r.problems.join('\n')));
        if (!r.ok) process.exitCode = 3;
      }),
    );
}
