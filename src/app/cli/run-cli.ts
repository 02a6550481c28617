/**
 * The CLI (bin/tenant): help (before anything connects) → config → deps → one command → print → exit code
 * (0 ok, 1 failed, 2 usage). Read-only commands never migrate or write the shared DB; they say when it is behind.
 * With --json, stdout is the result as one JSON line, preceded by one JSON line per event for commands that report
 * progress (migrate, rollout resume|retry).
 */
import { styleText } from 'node:util';
import { ConfigError, loadConfig, loadDotEnv } from '../../../config/config.js';
import { UsageError } from '../../platform/cli/args.js';
import { buildCommands } from './commands.js';
import { createProgressBar } from '../../platform/cli/progress-bar.js';
import { HELP, commandHelp, globalHelp, isReadOnly } from './help.js';
import { SHARED_MIGRATIONS_DIR, createMigrator } from '../../platform/db/migrator.js';
import { prepareSharedDb } from '../../platform/db/shared-db.js';
import { createDeps, type Deps } from '../../deps.js';
import { AppError, describeError } from '../../platform/lib/errors.js';
import { createLogger } from '../../platform/lib/logger.js';

/** Colour only for a person at a terminal, and never when NO_COLOR is set (https://no-color.org). */
const colour = (stream: NodeJS.WriteStream, style: Parameters<typeof styleText>[0], text: string) =>
  stream.isTTY && !process.env.NO_COLOR ? styleText(style, text) : text;

/** Runs one command line; answers the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const json = rest.includes('--json');
  if (!name || name === '--help' || name === '-h' || (name === 'help' && !rest[0])) {
    process.stdout.write(`${globalHelp()}\n`);
    return name ? 0 : 2;
  }
  if (name === 'help' && HELP[rest[0]!]) {
    process.stdout.write(`${commandHelp(rest[0]!)}\n`);
    return 0;
  }
  if (!HELP[name]) return fail(new UsageError(`unknown command ${JSON.stringify(name)}; see bin/tenant --help`), json);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${commandHelp(name)}\n`);
    return 0;
  }

  let deps: Deps | undefined;
  try {
    loadDotEnv();
    const config = loadConfig();
    // Logs go to stderr (warnings only), so stdout stays the command's own output.
    deps = createDeps(config, {
      subscribe: false,
      logger: createLogger({ level: config.logLevel === 'silent' ? 'silent' : 'warn', stream: process.stderr }),
    });
    if (isReadOnly(name, rest)) {
      const pending = await createMigrator({ sequelize: deps.sharedDb, dir: SHARED_MIGRATIONS_DIR })
        .pending()
        .catch((err: unknown) => {
          throw new Error(
            `cannot read the shared DB ${config.db.name} (${describeError(err)}); create it with: bin/tenant migrate --shared-only`,
          );
        });
      if (pending.length)
        process.stderr.write(
          colour(
            process.stderr,
            'yellow',
            `warning: the shared DB is behind (${pending.length} pending migration(s)); run: bin/tenant migrate --shared-only`,
          ) + '\n',
        );
    } else {
      await prepareSharedDb(config, deps.sharedDb);
      await deps.servers.ensureDefault();
    }
    const tty = process.stderr.isTTY && !json;
    // A progress bar redraws its line; other progress lines clear it first and it is drawn again on the next tick.
    const progress = (line: string) => {
      if (tty) process.stderr.write(`\r\x1b[2K${line}\n`);
    };
    const emit = json ? (event: object) => process.stdout.write(`${JSON.stringify(event)}\n`) : undefined;
    const progressBar = tty
      ? (total: number) => createProgressBar(total, (line, final) => process.stderr.write(`\r\x1b[2K${line}${final ? '\n' : ''}`))
      : undefined;
    const result = await buildCommands(deps)[name]!({ argv: rest, progress, emit, progressBar });
    if (!result.quiet) process.stdout.write(`${json ? JSON.stringify(result.json) : result.text}\n`);
    if (result.exitCode) process.stderr.write(colour(process.stderr, 'red', `error: ${result.reason ?? 'the command failed'}`) + '\n');
    return result.exitCode ?? 0;
  } catch (err) {
    return fail(err, json);
  } finally {
    await deps?.close();
  }
}

/** One line on stderr, always; with --json also `{"error":{code,message}}` on stdout for scripts. */
function fail(err: unknown, json: boolean): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    if (json)
      process.stdout.write(
        `${JSON.stringify({ error: { code: 'INVALID_CONFIGURATION', message: err.message, problems: err.problems } })}\n`,
      );
    return 2;
  }
  const code = err instanceof AppError ? err.code : err instanceof UsageError ? 'USAGE' : 'FAILED';
  const message = ((err as Error).message ?? String(err)).split('\n')[0]!;
  process.stderr.write(colour(process.stderr, 'red', `error: ${err instanceof AppError ? `${code}: ${message}` : message}`) + '\n');
  if (json) process.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
  return err instanceof UsageError ? 2 : 1;
}
