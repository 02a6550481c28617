/** winston logger: JSON lines, enriched with the async context (request id, org id, job id). */
import winston from 'winston';
import { currentContext } from './context.js';

export type Logger = winston.Logger;

const withContext = winston.format((info) => {
  const ctx = currentContext();
  if (ctx) for (const [k, v] of Object.entries(ctx)) if (v !== undefined && info[k] === undefined) info[k] = v;
  return info;
});

/** Creates a logger writing JSON to stdout (or to the given stream, for tests). */
export function createLogger(opts: { level: string; stream?: NodeJS.WritableStream; service?: string }): Logger {
  const silent = opts.level === 'silent';
  const transport = opts.stream
    ? new winston.transports.Stream({ stream: opts.stream })
    : new winston.transports.Console();
  return winston.createLogger({
    level: silent ? 'error' : opts.level,
    silent,
    defaultMeta: opts.service ? { service: opts.service } : undefined,
    format: winston.format.combine(withContext(), winston.format.timestamp(), winston.format.json()),
    transports: [transport],
  });
}
