/**
 * The project's span processors: the org id on every span of a tenant's work, and upkeep (an idle worker's polling,
 * stalled-job checks, lone statements of timers) kept out of the export, so that a trace is a piece of work.
 */
import { trace, type Context, type Span as ApiSpan } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { currentContext } from '../lib/context.js';
import { ORG_ID_ATTRIBUTE } from './tracing.js';

/** The org id a span carries, if it is an SDK span of this process (a remote parent has no attributes). */
function orgOf(span: ApiSpan | undefined): number | undefined {
  const value = (span as Partial<ReadableSpan> | undefined)?.attributes?.[ORG_ID_ATTRIBUTE];
  return typeof value === 'number' ? value : undefined;
}

/**
 * Sets `org.id` on each span as it starts: the org of the request or job being served (the log context: an
 * authenticated request's org, a job's org), else its parent's. The roots get theirs from the HTTP instrumentation
 * (the org a request names) and from the worker (the job's org), so every span under them has it too. Also
 * `message.id` where the log context knows the message (deliveries and webhooks).
 */
export class OrgSpanProcessor implements SpanProcessor {
  onStart(span: Span, parentContext: Context): void {
    const log = currentContext();
    const org = log?.orgId ?? orgOf(trace.getSpan(parentContext));
    if (org !== undefined && span.attributes[ORG_ID_ATTRIBUTE] === undefined) span.setAttribute(ORG_ID_ATTRIBUTE, org);
    if (log?.messageId !== undefined) span.setAttribute('message.id', log.messageId);
  }
  onEnd(): void {}
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** BullMQ's spans that are a worker's own upkeep, not a job: as roots they start traces that carry no work. */
const HOUSEKEEPING = /^(getNextJob|moveStalledJobsToWait|startStalledCheckTimer|rateLimit|close|pause|resume)\b/;

/** A statement outside any request or job (migrations at start-up, the reconciler's sweep) is a fragment, not work. */
const MYSQL2_SCOPE = '@opentelemetry/instrumentation-mysql2';

/**
 * Passes finished spans on to `inner` (the exporting processors), except the traces rooted in BullMQ housekeeping or
 * in a lone database statement: such a root and everything started under it are dropped.
 */
export class HousekeepingFilter implements SpanProcessor {
  private readonly dropped = new Set<string>();
  constructor(private readonly inner: SpanProcessor[]) {}

  onStart(span: Span, parentContext: Context): void {
    const parent = trace.getSpan(parentContext)?.spanContext();
    const root = !parent || !trace.isSpanContextValid(parent);
    const upkeep = root && (HOUSEKEEPING.test(span.name) || span.instrumentationScope.name === MYSQL2_SCOPE);
    if (upkeep || (parent && this.dropped.has(parent.spanId))) {
      this.dropped.add(span.spanContext().spanId);
      return;
    }
    for (const p of this.inner) p.onStart(span, parentContext);
  }
  onEnding(span: Span): void {
    if (!this.dropped.has(span.spanContext().spanId)) for (const p of this.inner) p.onEnding?.(span);
  }
  onEnd(span: ReadableSpan): void {
    if (this.dropped.delete(span.spanContext().spanId)) return;
    for (const p of this.inner) p.onEnd(span);
  }
  async forceFlush(): Promise<void> {
    await Promise.all(this.inner.map((p) => p.forceFlush()));
  }
  async shutdown(): Promise<void> {
    await Promise.all(this.inner.map((p) => p.shutdown()));
  }
}
