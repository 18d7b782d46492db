/**
 * The web UI: a handful of static files from web/ at `/` (and from its fixed
 * sub-folders, e.g. web/views/ at /views/), the .js files of protocol/ at
 * /protocol/ (the assignment matcher the server runs), plus dagre from
 * node_modules at /vendor/dagre.min.js. Deliberately tiny: no directory walking, one name per
 * path segment, each checked against a strict pattern (so no `..`, no `/`).
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { StrataError } from '../store/errors.ts';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
};

const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/** Sub-folders of web/ served one level deep, like web/ itself (the page's ES modules import from them). */
const SUBDIRS = ['views'];

/** protocol/ of this checkout: served at /protocol/, only its .js files (plain, import-free browser modules). */
export const PROTOCOL_DIR = fileURLToPath(new URL('../protocol/', import.meta.url));

// Resolved like an import (a checkout, dist/ and an npm install lay node_modules out differently).
export const DAGRE_PATH = path.join(
  path.dirname(createRequire(import.meta.url).resolve('@dagrejs/dagre/package.json')),
  'dist/dagre.min.js',
);

async function sendFile(reply: FastifyReply, file: string): Promise<FastifyReply> {
  const body = await fs.promises.readFile(file).catch(() => {
    throw new StrataError('E_NOT_FOUND', `no such file: ${path.basename(file)}`);
  });
  const type = TYPES[path.extname(file)] ?? 'application/octet-stream';
  // The UI changes with the checkout: revalidate rather than cache for long.
  return reply.type(type).header('Cache-Control', 'no-cache').send(body);
}

export function registerWebRoutes(app: FastifyInstance, webDir: string): void {
  app.get('/', async (_req, reply) => sendFile(reply, path.join(webDir, 'index.html')));
  app.get('/vendor/dagre.min.js', async (_req, reply) => sendFile(reply, DAGRE_PATH));
  const serveFrom =
    (dir: string) =>
    async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
      const { file } = req.params as { file: string };
      if (!SAFE_NAME.test(file) || !(path.extname(file) in TYPES))
        throw new StrataError('E_NOT_FOUND', `no such file: ${file.slice(0, 80)}`);
      return sendFile(reply, path.join(dir, file));
    };
  app.get('/:file', serveFrom(webDir));
  for (const sub of SUBDIRS) app.get(`/${sub}/:file`, serveFrom(path.join(webDir, sub)));
  // protocol/'s browser-safe modules (the assignment matcher): the page imports the very file the server runs.
  app.get('/protocol/:file', async (req, reply) => {
    const { file } = req.params as { file: string };
    if (!SAFE_NAME.test(file) || path.extname(file) !== '.js') throw new StrataError('E_NOT_FOUND', `no such file: ${file.slice(0, 80)}`);
    return sendFile(reply, path.join(PROTOCOL_DIR, file));
  });
}
