/** Entry point of bin/tenant (the tenant CLI); src/app/cli/run-cli.ts does the work. */
import { runCli } from '../src/app/cli/run-cli.js';
import { tracing } from '../src/platform/telemetry/tracing.js';

process.exitCode = await runCli(process.argv.slice(2));
// With tracing on (the preload in bin/tenant), what is buffered is exported before the process ends.
await tracing.shutdown();
