/**
 * The tracing preload: `node --import ./src/platform/telemetry/preload.ts src/main.ts` (npm start does it; compiled:
 * `--import ./dist/src/platform/telemetry/preload.js`). It runs before the application is loaded, as instrumentations must be
 * registered before the modules they patch (http, koa, mysql2, ioredis, winston) are imported. With tracing off (the
 * default: no OTEL_* variable set) it loads nothing; on, it starts the SDK (otel-sdk.ts).
 */
import { existsSync } from 'node:fs';
import { tracingWanted } from './tracing.js';

// The entry points read .env later; the OTEL_* variables may be there too (loadEnvFile never overrides).
if (existsSync('.env')) process.loadEnvFile('.env');
if (tracingWanted(process.env)) {
  const { startTracing } = await import('./otel-sdk.js');
  await startTracing();
}
