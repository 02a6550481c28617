import { ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { TracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import { expect } from 'chai';
import { runWithContext } from '../../../src/platform/lib/context.js';
import { HousekeepingFilter, OrgSpanProcessor } from '../../../src/platform/telemetry/span-processors.js';
import { tracingWanted } from '../../../src/platform/telemetry/tracing.js';

describe('tracing: when it is on', () => {
  it('is off unless an exporter or an OTLP endpoint is named, and OTEL_SDK_DISABLED=true wins', () => {
    expect(tracingWanted({})).to.equal(false);
    expect(tracingWanted({ OTEL_SERVICE_NAME: 'x' })).to.equal(false);
    expect(tracingWanted({ OTEL_TRACES_EXPORTER: 'none' })).to.equal(false);
    expect(tracingWanted({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).to.equal(false);
    expect(tracingWanted({ OTEL_TRACES_EXPORTER: 'otlp' })).to.equal(true);
    expect(tracingWanted({ OTEL_TRACES_EXPORTER: 'console,otlp' })).to.equal(true);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).to.equal(true);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' })).to.equal(true);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'TRUE' })).to.equal(false);
  });
});

describe('tracing: span processors', () => {
  /** A tracer whose finished spans land in `exporter`, through the project's processors. */
  function setup() {
    const exporter = new InMemorySpanExporter();
    const provider = new TracerProvider({
      spanProcessors: [new OrgSpanProcessor(), new HousekeepingFilter([new SimpleSpanProcessor({ exporter })])],
    });
    return { exporter, tracer: provider.getTracer('test') };
  }

  it('a span takes the org of the log context, else its parent’s; message.id comes from the log context', () => {
    const { exporter, tracer } = setup();
    const root = tracer.startSpan('POST /messages', { attributes: { 'org.id': 7 } });
    const child = tracer.startSpan('SELECT', {}, trace.setSpan(ROOT_CONTEXT, root));
    const grandchild = tracer.startSpan('SET', {}, trace.setSpan(ROOT_CONTEXT, child));
    const job = runWithContext({ orgId: 9, messageId: 3 }, () => tracer.startSpan('ledger.apply'));
    const orphan = tracer.startSpan('lonely');
    for (const s of [grandchild, child, root, job, orphan]) s.end();
    const attrs = Object.fromEntries(exporter.getFinishedSpans().map((s) => [s.name, s.attributes]));
    expect(attrs['SELECT']).to.deep.equal({ 'org.id': 7 });
    expect(attrs['SET']).to.deep.equal({ 'org.id': 7 });
    expect(attrs['ledger.apply']).to.deep.equal({ 'org.id': 9, 'message.id': 3 });
    expect(attrs['lonely']).to.deep.equal({});
  });

  it('traces rooted in BullMQ upkeep are dropped with everything under them; the same names under a job are kept', () => {
    const { exporter, tracer } = setup();
    const poll = tracer.startSpan('getNextJob deliveries');
    const redis = tracer.startSpan('bzpopmin', {}, trace.setSpan(ROOT_CONTEXT, poll));
    const process = tracer.startSpan('process deliveries');
    const closeUnderJob = tracer.startSpan('close deliveries', {}, trace.setSpan(ROOT_CONTEXT, process));
    for (const s of [redis, poll, closeUnderJob, process]) s.end();
    expect(exporter.getFinishedSpans().map((s) => s.name)).to.deep.equal(['close deliveries', 'process deliveries']);
  });
});
