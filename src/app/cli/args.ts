/** Argument parsing for bin/tenant: node's parseArgs, plus negative numbers as positionals (`credits 7 -5`). */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A mistake in how the command was called (exit code 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses argv with the given options; `-5` style arguments are kept as positionals. */
export function parse(argv: string[], options: Options) {
  const NEG = '\u0000neg:';
  const args = argv.map((a) => (/^-\d+$/.test(a) ? NEG + a : a));
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...options, json: { type: 'boolean' } },
      allowPositionals: true,
      strict: true,
    });
    return {
      values: values as Record<string, string | boolean | string[] | undefined>,
      positionals: positionals.map((p) => p.replace(NEG, '')),
    };
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]!);
  }
}

/** A positive integer argument (an org id, a count), or a UsageError naming it. */
export function positiveInt(value: unknown, name: string): number {
  if (typeof value !== 'string' || !/^[1-9][0-9]{0,9}$/.test(value))
    throw new UsageError(`${name} must be a positive integer, got ${JSON.stringify(value ?? '')}`);
  return Number(value);
}

/** A non-zero integer (credit amounts may be negative). */
export function nonZeroInt(value: unknown, name: string): number {
  if (typeof value !== 'string' || !/^-?[1-9][0-9]{0,9}$/.test(value))
    throw new UsageError(`${name} must be a non-zero integer, got ${JSON.stringify(value ?? '')}`);
  return Number(value);
}
