/**
 * The web page's modules import one way: views import the loaders, never
 * the reverse (loaders reach views through web/wiring.js). A cycle among
 * ES modules runs a module before its imports are initialised, and ties
 * every file of the cycle to every other; this fails when one comes back.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const WEB = resolve(import.meta.dirname, '..', 'web');

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? jsFiles(join(dir, d.name)) : d.name.endsWith('.js') ? [join(dir, d.name)] : [],
  );
}

/** Relative imports of a module (static `import`/`export ... from` and dynamic `import('...')`), as absolute paths. */
function importsOf(file: string, text = readFileSync(file, 'utf8')): string[] {
  const specs = [
    ...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"`;]*?from\s*['"]([^'"]+)['"]/g),
    ...text.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g),
  ]
    .map((m) => m[1]!)
    .filter((s) => s.startsWith('.'));
  return specs.map((s) => resolve(dirname(file), s));
}

/** The cycles of a graph, each as the path that closes it (first node repeated at the end). */
function findCycles(graph: Map<string, string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string) => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === 'open') cycles.push([...stack.slice(stack.indexOf(m)), m]);
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n);
  return cycles;
}

describe('imports among web/ modules', () => {
  it('the cycle finder sees a cycle when there is one (and none in a chain)', () => {
    const text = "import { a } from './b.js';\nexport { c } from \"./c.js\";\nconst x = await import('./d.js');\nimport 'x';";
    expect(importsOf('/w/a.js', text)).toEqual(['/w/b.js', '/w/c.js', '/w/d.js']);
    expect(
      findCycles(
        new Map([
          ['a', ['b']],
          ['b', ['c']],
          ['c', ['a']],
        ]),
      ),
    ).toEqual([['a', 'b', 'c', 'a']]);
    expect(
      findCycles(
        new Map([
          ['a', ['b']],
          ['b', ['c']],
          ['c', []],
        ]),
      ),
    ).toEqual([]);
  });

  it('form no cycle', () => {
    const files = jsFiles(WEB);
    expect(files.length).toBeGreaterThan(10);
    const graph = new Map(files.map((f) => [f, importsOf(f)]));
    const cycles = findCycles(graph).map((c) => c.map((f) => relative(WEB, f)).join(' -> '));
    expect(cycles).toEqual([]);
  });

  it('no loader imports a view', () => {
    expect(importsOf(join(WEB, 'loaders.js')).filter((f) => f.includes('/views/'))).toEqual([]);
  });
});
