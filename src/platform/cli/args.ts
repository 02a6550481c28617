/** Argument parsing for bin/tenant: node's parseArgs, plus negative numbers as positionals (`credits 7 -5`). */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type Joi from 'joi';

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

/**
 * An integer argument checked by a joi rule, the one the HTTP API applies to the same value: digits only (no `1e3`,
 * no spaces), then the rule's bounds, with the rule's own words in the UsageError.
 */
export function intArg(value: unknown, name: string, rule: Joi.NumberSchema): number {
  if (typeof value !== 'string' || !/^-?[0-9]{1,16}$/.test(value))
    throw new UsageError(`${name} must be an integer, got ${JSON.stringify(value ?? '')}`);
  return checkArg(Number(value), name, rule);
}

/** A string argument checked by a joi rule; answers the rule's value (e.g. trimmed). */
export function stringArg<T extends string>(value: unknown, name: string, rule: Joi.StringSchema<T>): T {
  if (typeof value !== 'string') throw new UsageError(`${name} is required`);
  return checkArg(value, name, rule);
}

function checkArg<T>(value: unknown, name: string, rule: Joi.Schema<T>): T {
  const result = rule.validate(value, { convert: true });
  if (result.error) throw new UsageError(`${name} ${result.error.message.replace(/^"value" /, '')}`);
  return result.value;
}
