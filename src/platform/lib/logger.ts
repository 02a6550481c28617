/** winston logger: JSON lines, enriched with the async context (request id, org id, job id). */
import winston from 'winston';
import { currentContext } from './context.js';

export type Logger = winston.Logger;

const withContext = winston.format((info) => {
  const ctx = currentContext();
  if (ctx) for (const [k, v] of Object.entries(ctx)) if (v !== undefined && info[k] === undefined) info[k] = v;
  return info;
});

/** Human-friendly lines for a developer's terminal: time, coloured level, message, then the fields. */
const pretty = winston.format.printf((info) => {
  const { level, message, timestamp, ...fields } = info;
  const rest = Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : '';
  return `${String(timestamp).slice(11, 23)} ${level} ${String(message)}${rest}`;
});

/**
 * Creates a logger: JSON lines (or pretty, coloured lines when `pretty`) to stdout, or to the given stream.
 * `role` (api, worker, all…) is added to every line, so the lines of several kinds of process can be told apart.
 */
export function createLogger(opts: {
  level: string;
  stream?: NodeJS.WritableStream;
  service?: string;
  role?: string;
  pretty?: boolean;
}): Logger {
  const silent = opts.level === 'silent';
  const transport = opts.stream ? new winston.transports.Stream({ stream: opts.stream }) : new winston.transports.Console();
  const meta = { ...(opts.service ? { service: opts.service } : {}), ...(opts.role ? { role: opts.role } : {}) };
  return winston.createLogger({
    level: silent ? 'error' : opts.level,
    silent,
    defaultMeta: Object.keys(meta).length ? meta : undefined,
    format: opts.pretty
      ? winston.format.combine(withContext(), winston.format.timestamp(), winston.format.colorize(), pretty)
      : winston.format.combine(withContext(), winston.format.timestamp(), winston.format.json()),
    transports: [transport],
  });
}
