/**
 * The API reference, public (it describes the public surface, no secrets): `GET /openapi.json`, and `GET /docs`, a
 * Swagger UI page whose script and styles come from the swagger-ui-dist package and are served here. The page loads
 * nothing from another host: no CDN, no fonts, the online validator badge off, and a Content-Security-Policy to hold it.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import Router from '@koa/router';
import { notFound } from '../platform/lib/errors.js';
import { buildOpenApi } from './openapi.js';
import type { AppContext, AppState } from '../platform/http/types.js';

const require = createRequire(import.meta.url);
const DIST = path.dirname(require.resolve('swagger-ui-dist/package.json'));
/** In asset URLs, so they can be cached for good and change with an upgrade. */
const VERSION = (require('swagger-ui-dist/package.json') as { version: string }).version;

/** The package's files the page uses, by name, and their media types; nothing else under DIST is served. */
const ASSETS: Record<string, string> = {
  'swagger-ui-bundle.js': 'application/javascript; charset=utf-8',
  'swagger-ui.css': 'text/css; charset=utf-8',
};

/** Starts Swagger UI on the document; `validatorUrl: null` keeps it from calling validator.swagger.io. */
const INIT_SCRIPT = `window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  validatorUrl: null,
  deepLinking: true,
  defaultModelsExpandDepth: 0,
  displayRequestDuration: true,
});
`;

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'", // Swagger UI sets style attributes
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Builds the router; the document is built once, here. */
export function docsRouter(): Router<AppState> {
  const router = new Router<AppState>();
  const document = JSON.stringify(buildOpenApi());
  const files = new Map<string, Promise<Buffer>>();

  router.get('/openapi.json', (ctx: AppContext) => {
    ctx.type = 'application/json';
    ctx.body = document;
  });

  router.get('/docs', (ctx: AppContext) => {
    const assets = `/docs/assets/${VERSION}`;
    ctx.type = 'text/html; charset=utf-8';
    ctx.set('Content-Security-Policy', CSP);
    ctx.body = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tenancy messaging API reference</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="${assets}/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`;
  });

  router.get('/docs/init.js', (ctx: AppContext) => {
    ctx.type = 'application/javascript; charset=utf-8';
    ctx.set('Cache-Control', 'no-cache');
    ctx.body = INIT_SCRIPT;
  });

  router.get('/docs/assets/:version/:file', async (ctx: AppContext) => {
    const { version: asked, file } = ctx.params as { version: string; file: string };
    const type = Object.hasOwn(ASSETS, file) ? ASSETS[file] : undefined;
    if (!type || asked !== VERSION) throw notFound('NOT_FOUND', `no asset ${ctx.path}`);
    if (!files.has(file)) {
      const read = readFile(path.join(DIST, file));
      files.set(file, read);
      read.catch(() => files.delete(file)); // read again next time
    }
    ctx.type = type;
    ctx.set('Cache-Control', 'public, max-age=31536000, immutable');
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.body = await files.get(file)!;
  });

  return router;
}
