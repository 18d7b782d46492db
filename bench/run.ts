/**
 * `npm run bench`: every benchmark in bench/, one after the other. Each
 * prints ratios against the plain tool doing the same work in the same run.
 * Never fails on a slow machine: the goals are printed, not asserted.
 * `npm run bench -- bake history` runs only those.
 */
const all = ['startup', 'bake', 'history', 'serve', 'agent', 'boot', 'bake-metadata', 'build', 'delta'] as const;
const wanted = process.argv.slice(2).filter((a) => (all as readonly string[]).includes(a));
for (const name of wanted.length ? wanted : all) {
  console.log(`\n=== bench/${name}.ts ===`);
  try {
    const mod = (await import(`./${name}.ts`)) as { main: () => Promise<unknown> };
    await mod.main();
  } catch (e) {
    console.log(`bench ${name} could not run: ${(e as Error).message}`);
  }
}
