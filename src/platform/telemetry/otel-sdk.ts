/**
 * The OpenTelemetry SDK, loaded only when tracing is on (preload.ts). Configured by the standard
 * variables, read by the SDK and its exporters themselves: OTEL_SERVICE_NAME (default `tenancy-messaging`),
 * OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_EXPORTER (otlp, console), OTEL_EXPORTER_OTLP_ENDPOINT /
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL (http/protobuf, http/json, grpc),
 * OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*, OTEL_PROPAGATORS, OTEL_LOG_LEVEL. Traces only:
 * metrics stay Prometheus (/metrics) and logs stay winston's lines, which get `trace_id` and `span_id`.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import { register } from 'node:module';
import { createAddHookMessageChannel } from 'import-in-the-middle';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { KoaInstrumentation } from '@opentelemetry/instrumentation-koa';
import { MySQL2Instrumentation } from '@opentelemetry/instrumentation-mysql2';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { WinstonInstrumentation } from '@opentelemetry/instrumentation-winston';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
import {
  BatchSpanProcessor,
  ConsoleSpanExporter,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import { BullMQOtel } from 'bullmq-otel';
import { HousekeepingFilter, OrgSpanProcessor } from './span-processors.js';
import { tracedFunction, tracedProcessor } from './spans.js';
import { ORG_ID_ATTRIBUTE, tracing } from './tracing.js';

const env = process.env;
const list = (value: string | undefined) => (value ?? '').split(',').map((s) => s.trim()).filter(Boolean); // prettier-ignore
const num = (value: string | undefined) => (value && /^\d+$/.test(value) ? Number(value) : undefined);

/** The OTLP exporter of the configured protocol (each reads its endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*). */
async function otlpExporter(): Promise<SpanExporter> {
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf';
  if (protocol === 'http/json') return new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter();
  if (protocol === 'grpc') return new (await import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter();
  return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter();
}

/** The exporting processors named by OTEL_TRACES_EXPORTER (default otlp), batched as OTEL_BSP_* say. */
async function exportingProcessors(): Promise<SpanProcessor[]> {
  const processors: SpanProcessor[] = [];
  for (const name of list(env.OTEL_TRACES_EXPORTER).length ? list(env.OTEL_TRACES_EXPORTER) : ['otlp']) {
    if (name === 'console') processors.push(new SimpleSpanProcessor({ exporter: new ConsoleSpanExporter() }));
    else if (name === 'otlp')
      processors.push(
        new BatchSpanProcessor({
          exporter: await otlpExporter(),
          maxQueueSize: num(env.OTEL_BSP_MAX_QUEUE_SIZE),
          scheduledDelayMillis: num(env.OTEL_BSP_SCHEDULE_DELAY),
          exportTimeoutMillis: num(env.OTEL_BSP_EXPORT_TIMEOUT),
          maxExportBatchSize: num(env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE),
        }),
      );
    else if (name !== 'none') process.stderr.write(`tracing: OTEL_TRACES_EXPORTER=${name} is not supported here (otlp, console)\n`);
  }
  return processors;
}

/** A request this process serves (node:http is not imported here: it must be loaded after the hooks). */
const isIncoming = (req: ClientRequest | IncomingMessage): req is IncomingMessage => !('getHeader' in req);

/** The org a request names: X-Org-Id for tenant routes, /orgs/:id for admin routes (authenticated or not). */
function claimedOrg(req: IncomingMessage): number | undefined {
  const header = req.headers['x-org-id'];
  if (typeof header === 'string' && /^[1-9]\d{0,9}$/.test(header.trim())) return Number(header.trim());
  const path = /^\/orgs\/([1-9]\d{0,9})(?:[/?]|$)/.exec(req.url ?? '');
  return path ? Number(path[1]) : undefined;
}

/** `--role` of src/main.ts (api, worker, all), `worker` for workers/worker.ts, `cli` for bin/tenant: a resource attribute of every span. */
function role(): string {
  const argv = process.argv;
  const i = argv.indexOf('--role');
  if (i >= 0 && argv[i + 1]) return argv[i + 1]!;
  const inline = argv.find((a) => a.startsWith('--role='));
  if (inline) return inline.slice('--role='.length);
  const entry = argv[1] ?? '';
  if (/workers[/\\]worker\.[jt]s$/.test(entry)) return 'worker';
  return /bin[/\\]tenant(\.[jt]s)?$/.test(entry) ? 'cli' : 'all';
}

/** Registers the instrumentations (before the application loads), starts the SDK and installs the tracing hooks. */
export async function startTracing(): Promise<void> {
  // ESM imports are patched through import-in-the-middle's loader hook; only the instrumented modules are wrapped.
  const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel();
  register('import-in-the-middle/hook.mjs', import.meta.url, registerOptions);

  const sdk = new NodeSDK({
    ...(env.OTEL_SERVICE_NAME ? {} : { serviceName: 'tenancy-messaging' }),
    resource: resourceFromAttributes({ 'tenancy.role': role() }),
    // Traces only: no OTLP metrics or logs unless configured in code (the SDK would default both to OTLP).
    metricReaders: [],
    logRecordProcessors: [],
    spanProcessors: [new OrgSpanProcessor(), new HousekeepingFilter(await exportingProcessors())],
    instrumentations: [
      new HttpInstrumentation({
        // Probes and scrapes are not work: no trace for them.
        ignoreIncomingRequestHook: (req) => /^\/(health|ready|metrics)(?:\?|$)/.test(req.url ?? ''),
        requestHook: (span, req) => {
          const org = isIncoming(req) ? claimedOrg(req) : undefined;
          if (org !== undefined) span.setAttribute(ORG_ID_ATTRIBUTE, org);
        },
      }),
      new KoaInstrumentation(),
      // Literals masked (numbers and quoted strings → ?): CREATE USER … IDENTIFIED BY '<password>' must never be exported.
      new MySQL2Instrumentation({ maskStatement: true }),
      // Commands outside any span (subscriptions, timers) would each be a trace of their own; the statement is the
      // command's name only (BullMQ's arguments are whole jobs).
      new IORedisInstrumentation({ requireParentSpan: true, dbStatementSerializer: (command) => command }),
      new UndiciInstrumentation({ requireParentforSpans: true }),
      new WinstonInstrumentation({ disableLogSending: true }),
    ],
  });
  sdk.start();
  await waitForAllMessagesAcknowledged();

  Object.assign(tracing, {
    enabled: true,
    bullmq: new BullMQOtel({ tracerName: 'bullmq' }),
    traced: tracedFunction,
    processor: tracedProcessor,
    async shutdown() {
      // What is buffered is exported, for at most 5 s: a collector that is down never holds up an exit.
      await Promise.race([sdk.shutdown().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    },
  });
}
