/** bin/tenant entry: config → deps → one command → print → exit code (0 ok, 1 failed, 2 usage). */
import { ConfigError, loadConfig, loadDotEnv } from '../config/config.js';
import { commands, USAGE } from '../src/cli/commands.js';
import { UsageError } from '../src/cli/args.js';
import { prepareSharedDb } from '../src/db/shared-db.js';
import { createDeps, type Deps } from '../src/deps.js';
import { AppError } from '../src/lib/errors.js';
import { createLogger } from '../src/lib/logger.js';

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const json = rest.includes('--json');
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) return fail(new UsageError(`unknown command ${JSON.stringify(name)}; see bin/tenant --help`));

  let deps: Deps | undefined;
  try {
    loadDotEnv();
    const config = loadConfig();
    // Logs go to stderr (warnings only), so stdout stays the command's own output.
    deps = createDeps(config, {
      subscribe: false,
      logger: createLogger({ level: config.logLevel === 'silent' ? 'silent' : 'warn', stream: process.stderr }),
    });
    await prepareSharedDb(config, deps.sharedDb);
    await deps.servers.ensureDefault();
    const progress = (line: string) => {
      if (process.stderr.isTTY && !json) process.stderr.write(`${line}\n`);
    };
    const result = await command({ deps, argv: rest, progress });
    process.stdout.write(`${json ? JSON.stringify(result.json) : result.text}\n`);
    if (result.exitCode) process.stderr.write(`error: ${result.reason ?? 'the command failed'}\n`);
    return result.exitCode ?? 0;
  } catch (err) {
    return fail(err);
  } finally {
    await deps?.close();
  }
}

function fail(err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    return 2;
  }
  const message = err instanceof AppError ? `${err.code}: ${err.message}` : ((err as Error).message ?? String(err));
  process.stderr.write(`error: ${message.split('\n')[0]}\n`);
  return err instanceof UsageError ? 2 : 1;
}

process.exitCode = await main(process.argv.slice(2));
