/**
 * What the rest of the code knows of tracing: hooks that are the identity (and `bullmq` undefined) unless the
 * OpenTelemetry SDK was started by the preload (preload.ts → otel-sdk.ts), which replaces them before the application
 * is loaded. This module imports nothing at run time, so with tracing off no OpenTelemetry code is loaded at all and
 * the hot path is the same as without it.
 */
import type { Processor, Telemetry } from 'bullmq';

/** The span attribute that carries the org id on every span of a tenant's work (never a metric label). */
export const ORG_ID_ATTRIBUTE = 'org.id';

/** Attributes of a span: plain values only (never a message body, a recipient or a secret). */
export type SpanAttributes = Record<string, string | number | boolean>;

export interface Tracing {
  /** True once the SDK is started. */
  enabled: boolean;
  /** BullMQ's telemetry (bullmq-otel), for every Queue and Worker: carries the trace from the enqueue to the job. */
  bullmq?: Telemetry;
  /**
   * `fn`, each call of which runs in a span `name` with attributes from its arguments and its result; an error is
   * recorded on the span. While tracing is off: `fn` itself.
   */
  traced<A extends unknown[], R>(
    name: string,
    fn: (...args: A) => Promise<R>,
    attributes?: { of?: (...args: A) => SpanAttributes; result?: (result: R) => SpanAttributes },
  ): (...args: A) => Promise<R>;
  /** Puts the job's org on BullMQ's job span before anything of the job runs (the org gate included). */
  processor<T, R>(processor: Processor<T, R>): Processor<T, R>;
  /** Exports what is buffered and stops the SDK (bounded): called last on shutdown. */
  shutdown(): Promise<void>;
}

/** The process's tracing hooks (one SDK per process, as OpenTelemetry's global API has). */
export const tracing: Tracing = {
  enabled: false,
  traced: (_name, fn) => fn,
  processor: (processor) => processor,
  shutdown: () => Promise.resolve(),
};

/**
 * Whether the standard OTEL_* variables ask for traces: not OTEL_SDK_DISABLED=true, and an exporter
 * (OTEL_TRACES_EXPORTER other than `none`) or an OTLP endpoint is named. Nothing set: off.
 */
export function tracingWanted(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (exporters.length) return !exporters.every((e) => e === 'none');
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}
