// npm run build [-- OUTDIR]: bundles the three programs (strata, strata-agent, the HTTP
// worker) into dist/ as ES modules, one file each plus shared chunks, so a
// command loads a few files instead of transpiling ~60 TypeScript sources
// (docs/decisions.md, "Built package": esbuild over tsc). dist/ sits one directory below the
// package root like cli/ and server/, so paths such as ../web/ still resolve.
import { rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url);
const outdir = process.argv[2] ? `${resolve(process.argv[2])}/` : new URL('dist/', root).pathname;
rmSync(outdir, { recursive: true, force: true });
await build({
  absWorkingDir: root.pathname,
  entryPoints: { strata: 'cli/main.ts', 'strata-agent': 'client-agent/main.ts', 'http-worker': 'server/http-worker-main.ts' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Pure-JS packages are bundled (execa alone is ~100 module files to resolve
  // at start-up). These stay imports from node_modules: native addons, and
  // packages that load files or worker threads from their own folder.
  external: ['better-sqlite3', 'ssh2', 'cpu-features', 'fastify', '@fastify/*', 'pino', 'playwright-core', '@dagrejs/dagre', 'chokidar'],
  outdir,
  // Bundled CommonJS packages (commander, tar-stream) call require() for Node's own modules.
  banner: { js: "import { createRequire as __strataRequire } from 'node:module'; const require = __strataRequire(import.meta.url);" },
  logLevel: 'warning',
});
// bin/strata runs dist/ only while it is newer than every source; this file's time is the build's.
writeFileSync(`${outdir}BUILT`, `${new Date().toISOString()}\n`);
