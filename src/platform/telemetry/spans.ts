/**
 * The tracing hooks' implementations, installed by otel-sdk.ts only when tracing is on: a span around a step that no
 * library instrumentation names (the ledger change, the provider send — SMTP has no instrumentation —, the status
 * webhook), and the job's org on BullMQ's job span.
 */
import { SpanStatusCode, trace } from '@opentelemetry/api';
import type { Processor } from 'bullmq';
import { ORG_ID_ATTRIBUTE, type Tracing } from './tracing.js';

const tracer = trace.getTracer('tenancy-messaging');

/** Each call of `fn` in a new active span; an error is recorded on it (its code as the status message) and thrown on. */
export const tracedFunction: Tracing['traced'] =
  (name, fn, attributes = {}) =>
  (...args) =>
    tracer.startActiveSpan(name, { attributes: attributes.of?.(...args) }, async (span) => {
      try {
        const result = await fn(...args);
        if (attributes.result) span.setAttributes(attributes.result(result));
        return result;
      } catch (err) {
        const e = err as Error & { code?: string | number };
        span.recordException(e);
        span.setStatus({ code: SpanStatusCode.ERROR, message: typeof e.code === 'string' ? e.code : e.name });
        throw err;
      } finally {
        span.end();
      }
    });

/** Sets the job's org on BullMQ's job span (active when the processor is called), before the job's first step. */
export function tracedProcessor<T, R>(processor: Processor<T, R>): Processor<T, R> {
  return (job, token, signal) => {
    const orgId = (job.data as { orgId?: unknown } | undefined)?.orgId;
    if (typeof orgId === 'number') trace.getActiveSpan()?.setAttribute(ORG_ID_ATTRIBUTE, orgId);
    return processor(job, token, signal);
  };
}
