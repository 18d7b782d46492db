/**
 * The repository stands alone: a newcomer with a clone can read every
 * document a file points to. The contracts live in docs/design.md; no tracked
 * file may send the reader to notes kept outside the repository (the design
 * and fact sheets the project started from, or a sibling `shared/` folder).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

// Spelled in pieces so this file does not match itself.
const OUTSIDE = [
  ['DESIGN', 'md'].join('.'),
  ['SECURITY', 'FACTS'].join('-'),
  ['BOOT', 'FACTS'].join('-'),
  ['EXAMPLES', 'md'].join('.'),
  ['..', 'shared'].join('/'),
  ['/work', 'shared'].join('/'),
];

function trackedFiles(): string[] {
  return execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8' }).split('\0').filter(Boolean);
}

/** Every `file:line: text` where a tracked file names something outside the repository. */
function outsideReferences(files: string[], read: (f: string) => string): string[] {
  const hits: string[] = [];
  for (const f of files) {
    const lines = read(f).split('\n');
    lines.forEach((line, i) => {
      // Case matters: docs/design.md, the repository's own design, must not match.
      for (const word of OUTSIDE) if (line.includes(word)) hits.push(`${f}:${i + 1}: ${line.trim()}`);
    });
  }
  return hits;
}

describe('the repository refers to nothing outside it', () => {
  it('the checker catches each outside name and lets docs/design.md through', () => {
    const [design, security, boot, examples, shared] = OUTSIDE;
    const files: Record<string, string> = {
      'a.md': `see ${design}\n`,
      'b.ts': `// (${security}: x)\n`,
      'c.sh': `# see ${boot}.md\n`,
      'd.md': `${examples}\n`,
      'e.md': `cat ${shared}/notes\n`,
      'f.md': 'the contracts: docs/design.md and [design](design.md)\n',
    };
    const hits = outsideReferences(Object.keys(files), (f) => files[f]!);
    expect(hits.map((h) => h.split(':')[0])).toEqual(['a.md', 'b.ts', 'c.sh', 'd.md', 'e.md']);
  });

  it('no tracked file names the design notes, fact sheets or shared folder kept outside the repository', () => {
    const files = trackedFiles();
    expect(files).toContain('docs/design.md');
    const hits = outsideReferences(files, (f) => {
      try {
        return readFileSync(join(root, f), 'utf8');
      } catch {
        return ''; // deleted in the work tree but still in the index
      }
    });
    expect(hits, 'point these at docs/design.md (or the right section of docs/) instead').toEqual([]);
  });
});
