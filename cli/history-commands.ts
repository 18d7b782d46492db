/**
 * The history commands of `strata`: reading a profile's commits (log,
 * rev-parse, show, diff, reflog, export) and moving it (rollback, revert,
 * cherry-pick, flatten, tag, branch). Each action loads the store lazily
 * through act() (cli/command-kit.ts).
 */
import type { Command } from 'commander';
import { StrataError } from '../store/errors.ts';
import { act, out, warn } from './command-kit.ts';
import { formatCommit, formatDiff, formatLog, formatTime, shortId } from './format.ts';

export function registerHistoryCommands(program: Command): void {
  program
    .command('log')
    .description("a profile's history, newest first (merges shown)")
    .argument('<rev>')
    .option('-n, --limit <n>', 'at most N commits')
    .action(
      act((s, g, rev: string, o: { limit?: string }) => {
        const commits = s.log(rev, { limit: o.limit ? Number(o.limit) : undefined });
        out(g, commits, () => formatLog(commits, s.listRefs()));
      }),
    );

  program
    .command('rev-parse')
    .description('the full id of a commit named any way (id prefix, tag, profile, branch, NAME~N, NAME@{N})')
    .argument('<rev>')
    .action(act((s, g, rev: string) => out(g, { id: s.resolve(rev) }, () => s.resolve(rev))));

  program
    .command('show')
    .description('one commit: manifest, message, layers')
    .argument('<commit>')
    .action(
      act(async (s, g, rev: string) => {
        const c = s.getCommit(s.resolve(rev));
        const { bootLine } = await import('./kernel-commands.ts');
        // A commit a recipe build made carries the recipe: how the base was made.
        const recipe = s.commitRecipe(c.id);
        out(
          g,
          { ...c, manifestText: s.manifestText(c.id), boot: s.bootRecord(c.id), recipe },
          () =>
            `${formatCommit(c)}\n${bootLine(s, c.id)}\n${s.manifestText(c.id)}${recipe ? `\nrecipe (build ${recipe.buildId}):\n${recipe.recipe}` : ''}`,
        );
      }),
    );

  program
    .command('diff')
    .description('paths added / changed / deleted by a commit, or between two commits')
    .argument('<a>')
    .argument('[b]')
    .action(
      act((s, g, a: string, b?: string) => {
        const d = s.diff(a, b);
        out(g, d, () => formatDiff(d));
      }),
    );

  program
    .command('rollback')
    .description('move PROFILE back (default PROFILE~1); recorded in the reflog, undoable; brings back a deleted branch, tag or profile')
    .argument('<profile>')
    .argument('[commit]')
    .action(
      act((s, g, profile: string, rev?: string) => {
        const r = s.rollback(profile, rev);
        if (r.restored) {
          out(g, r, () => `restored ${r.restored!.join(', ')}`);
          return;
        }
        out(g, r, () => `${profile}: ${shortId(r.from)} -> ${shortId(r.to)} (undo with: strata rollback ${profile} ${shortId(r.from)})`);
      }),
    );

  program
    .command('revert')
    .description("new commit whose chain drops COMMIT's layer")
    .argument('<profile>')
    .argument('<commit>')
    .action(
      act(async (s, g, profile: string, rev: string) => {
        const r = await s.revert(profile, rev);
        warn(r.warnings);
        out(g, r.commit, () => `reverted: ${profile} is now ${r.commit.id}`);
      }),
    );

  program
    .command('cherry-pick')
    .description("stack COMMIT's layer (as is, no re-bake) onto PROFILE")
    .argument('<profile>')
    .argument('<commit>')
    .option('--force', 'stack even when PROFILE changed the same paths')
    .action(
      act(async (s, g, profile: string, rev: string, o: { force?: boolean }) => {
        const r = await s.cherryPick(profile, rev, { force: o.force });
        warn(r.warnings);
        out(g, r.commit, () => `cherry-picked: ${profile} is now ${r.commit.id}`);
      }),
    );

  program
    .command('flatten')
    .description('one layer for the whole chain, or the part above --from')
    .argument('<profile>')
    .option('--from <commit>')
    .action(
      act(async (s, g, profile: string, o: { from?: string }) => {
        // A progress line on a terminal only: scripts and --json get the result alone.
        const tty = process.stderr.isTTY === true && !g.json;
        const onProgress = tty
          ? (p: { done: number; total: number }) => {
              process.stderr.write(
                `\rflatten: ${Math.floor((100 * p.done) / p.total)}% (${(p.done / 1e6).toFixed(0)} of ${(p.total / 1e6).toFixed(0)} MB merged)`,
              );
            }
          : undefined;
        const r = await s.flatten(profile, { from: o.from, onProgress });
        if (tty) process.stderr.write('\n');
        warn(r.warnings);
        out(g, r.commit, () => `flattened: ${profile} is now ${r.commit.id} (${r.commit.manifest.layers.length} layer(s))`);
      }),
    );

  program
    .command('tag')
    .description('name a commit; -d deletes the tag (undo: strata rollback NAME)')
    .argument('<name>')
    .argument('[commit]')
    .option('-d, --delete', 'delete tag NAME')
    .action(
      act((s, g, name: string, rev: string | undefined, o: { delete?: boolean }) => {
        if (o.delete) {
          const r = s.deleteTag(name);
          out(g, r, () => `deleted tag ${name} (was ${shortId(r.commit)}; undo with: strata rollback ${name})`);
          return;
        }
        if (!rev) throw new StrataError('E_BAD_ARGUMENT', 'give the COMMIT to tag (or -d NAME to delete a tag)');
        const r = s.tag(name, rev);
        out(g, r, () => `tag ${name} -> ${r.commit}`);
      }),
    );

  program
    .command('branch')
    .description('a new branch at COMMIT (P/NAME belongs to profile P; a bare NAME is a new profile); -d deletes a side branch')
    .argument('<name>')
    .argument('[commit]')
    .option('-d, --delete', 'delete side branch NAME (undo: strata rollback NAME)')
    .action(
      act((s, g, name: string, rev: string | undefined, o: { delete?: boolean }) => {
        if (o.delete) {
          const r = s.deleteBranch(name);
          out(g, r, () => `deleted branch ${name} (was ${shortId(r.commit)}; undo with: strata rollback ${name})`);
          return;
        }
        if (!rev) throw new StrataError('E_BAD_ARGUMENT', 'give the COMMIT to branch from (or -d NAME to delete a branch)');
        const r = s.branch(name, rev);
        out(g, r, () => `branch ${name} -> ${r.commit}`);
      }),
    );

  program
    .command('rebase')
    .description("replay PROFILE's own layers (those above its base) onto BASE, reused as they are; one ref move, undo with rollback")
    .argument('<profile>')
    .requiredOption('--onto <base>', 'the new base (a commit, tag or profile)')
    .option('--force', 'stack the layers even where the new base changed the same paths (their version wins)')
    .action(
      act(async (s, g, profile: string, o: { onto: string; force?: boolean }) => {
        const r = await s.rebase(profile, o.onto, { force: o.force });
        warn(r.warnings);
        out(g, r, () => `rebased ${profile} onto ${shortId(s.resolve(o.onto))}: now ${r.commit.id} (${r.reused.length} layer(s) reused)`);
      }),
    );

  program
    .command('reflog')
    .description('every move of a branch or tag, newest first')
    .argument('<ref>')
    .action(
      act((s, g, ref: string) => {
        const entries = s.reflog(ref);
        out(g, entries, () =>
          entries.map((e, i) => `${ref}@{${i}} ${shortId(e.new ?? '-')} ${formatTime(e.time)} ${e.action}: ${e.message}`).join('\n'),
        );
      }),
    );

  program
    .command('export')
    .description('write manifest + kernel + initrd + layer files (named by digest) to DIR')
    .argument('<commit>')
    .argument('<dir>')
    .action(
      act(async (s, g, rev: string, dir: string) => {
        const r = await s.exportCommit(rev, dir);
        out(g, r, () => r.files.join('\n'));
      }),
    );
}
