/**
 * Spans around the steps of a delivery that no library instrumentation names: the ledger change, the provider send
 * (SMTP has no instrumentation; HTTP gets its client span under this one) and the status webhook. Installed by
 * otel-sdk.ts only when tracing is on.
 */
import { SpanStatusCode, trace, type Attributes, type Span } from '@opentelemetry/api';
import type { Processor } from 'bullmq';
import type { Ledger } from '../credits/ledger.js';
import type { Gateway } from '../gateway/gateway.js';
import type { NotifyWebhook } from '../webhooks/notify-webhook.js';
import { ORG_ID_ATTRIBUTE } from './tracing.js';

const tracer = trace.getTracer('tenancy-messaging');

/** Runs `fn` in a new active span; an error is recorded on it (and thrown on). */
function inSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      const e = err as Error & { code?: string | number };
      span.recordException(e);
      span.setStatus({ code: SpanStatusCode.ERROR, message: typeof e.code === 'string' ? e.code : e.name });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** `ledger.apply` spans: kind, reference (never an amount of another org) and outcome. */
export function tracedLedger(ledger: Ledger): Ledger {
  return {
    ...ledger,
    apply: (input) =>
      inSpan('ledger.apply', { 'ledger.kind': input.kind, 'ledger.reference': input.reference }, async (span) => {
        const result = await ledger.apply(input);
        span.setAttribute('ledger.outcome', result.outcome);
        return result;
      }),
  };
}

/** `gateway.send` spans: channel, then the provider's message id or the error code. Never the body or recipient. */
export function tracedGateway(gateway: Gateway): Gateway {
  return {
    ...gateway,
    send: (m) =>
      inSpan('gateway.send', { 'message.channel': m.channel }, async (span) => {
        const result = await gateway.send(m);
        span.setAttribute('gateway.provider_message_id', result.providerMessageId);
        return result;
      }),
  };
}

/** `webhook.notify` spans: the status notified and the outcome. */
export function tracedNotify(notify: NotifyWebhook): NotifyWebhook {
  return (input) =>
    inSpan('webhook.notify', { 'webhook.status': input.status }, async (span) => {
      const outcome = await notify(input);
      span.setAttribute('webhook.outcome', outcome);
      return outcome;
    });
}

/** Sets the job's org on BullMQ's job span (active when the processor is called), before the job's first step. */
export function tracedProcessor<T, R>(processor: Processor<T, R>): Processor<T, R> {
  return (job, token, signal) => {
    const orgId = (job.data as { orgId?: unknown } | undefined)?.orgId;
    if (typeof orgId === 'number') trace.getActiveSpan()?.setAttribute(ORG_ID_ATTRIBUTE, orgId);
    return processor(job, token, signal);
  };
}
