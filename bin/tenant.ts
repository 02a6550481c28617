/** Entry point of bin/tenant (the tenant CLI); src/app/cli/run-cli.ts does the work. */
import { runCli } from '../src/app/cli/run-cli.js';

process.exitCode = await runCli(process.argv.slice(2));
