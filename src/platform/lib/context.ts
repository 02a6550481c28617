/** Request/job context carried through async calls, so every log line knows its request and org. */
import { AsyncLocalStorage } from 'node:async_hooks';

export interface LogContext {
  requestId?: string;
  orgId?: number;
  jobId?: string;
  messageId?: number;
}

const storage = new AsyncLocalStorage<LogContext>();

/** Runs fn with a fresh context (inheriting nothing). */
export function runWithContext<T>(ctx: LogContext, fn: () => T): T {
  return storage.run(ctx, fn);
}

/** The current context object (mutable, so middleware can add the org once resolved). */
export function currentContext(): LogContext | undefined {
  return storage.getStore();
}
