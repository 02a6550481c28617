/**
 * A local OTLP/HTTP trace receiver for the tests (OTEL_EXPORTER_OTLP_PROTOCOL=http/json): collects every span it is
 * sent, flattened with its resource's attributes, and lets a test await a condition on what arrived.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One span as it arrived, its attribute values made plain (ints as numbers). */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** OTLP span kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, unknown>;
  resource: Record<string, unknown>;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}
type OtlpAttributes = { key: string; value: OtlpValue }[] | undefined;
interface OtlpRequest {
  resourceSpans?: {
    resource?: { attributes?: OtlpAttributes };
    scopeSpans?: {
      spans?: { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; attributes?: OtlpAttributes }[];
    }[];
  }[];
}

const plain = (v: OtlpValue) => (v.intValue !== undefined ? Number(v.intValue) : (v.stringValue ?? v.doubleValue ?? v.boolValue));
const attributesOf = (list: OtlpAttributes) => Object.fromEntries((list ?? []).map((a) => [a.key, plain(a.value)]));

export interface OtlpReceiver {
  /** The base URL, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  url: string;
  spans: ReceivedSpan[];
  /** Resolves once `check` holds for the spans received (checked on each export). */
  until(check: (spans: ReceivedSpan[]) => boolean): Promise<void>;
  close(): Promise<void>;
}

/** Starts the receiver on 127.0.0.1, port 0. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const waiters: { check: (s: ReceivedSpan[]) => boolean; resolve: () => void }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        const payload = JSON.parse(body) as OtlpRequest;
        for (const rs of payload.resourceSpans ?? []) {
          const resource = attributesOf(rs.resource?.attributes);
          for (const ss of rs.scopeSpans ?? [])
            for (const s of ss.spans ?? [])
              spans.push({
                traceId: s.traceId,
                spanId: s.spanId,
                ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
                name: s.name,
                kind: s.kind,
                attributes: attributesOf(s.attributes),
                resource,
              });
        }
        for (const w of [...waiters])
          if (w.check(spans)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve();
          }
      }
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    until: (check) => new Promise<void>((resolve) => (check(spans) ? resolve() : waiters.push({ check, resolve }))),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
