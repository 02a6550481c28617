/**
 * The HTTP provider: POSTs the message as JSON to GATEWAY_URL, signed with HMAC-SHA256 over
 * `<timestamp>.<body>` (headers `X-Gateway-Timestamp`, `X-Gateway-Signature: v1=<hex>`, `Idempotency-Key`).
 * Timeouts, network errors and 5xx/429 are transient; other 4xx are permanent. The answer must carry `{id}`.
 */
import { createHmac } from 'node:crypto';
import { PermanentGatewayError, TransientGatewayError, type Gateway } from './gateway.js';

/** The signature a receiver recomputes to trust a request. */
export function gatewaySignature(secret: string, timestamp: string, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** Creates the HTTP gateway. */
export function createHttpGateway(opts: { url: string; secret: string; timeoutMs: number }): Gateway {
  return {
    async send(m) {
      const body = JSON.stringify({ id: m.idempotencyKey, to: m.to, channel: m.channel, body: m.body });
      const timestamp = String(Math.floor(Date.now() / 1000));
      let res: Response;
      try {
        res = await fetch(opts.url, {
          method: 'POST',
          headers: {
            'Content-Type': 'application/json',
            'Idempotency-Key': m.idempotencyKey,
            'X-Gateway-Timestamp': timestamp,
            'X-Gateway-Signature': gatewaySignature(opts.secret, timestamp, body),
          },
          body,
          signal: AbortSignal.timeout(opts.timeoutMs),
        });
      } catch (err) {
        const timedOut = (err as Error).name === 'TimeoutError';
        throw new TransientGatewayError(
          timedOut ? 'PROVIDER_TIMEOUT' : 'PROVIDER_UNREACHABLE',
          timedOut ? `no answer within ${opts.timeoutMs}ms` : 'the provider could not be reached',
        );
      }
      const text = await res.text().catch(() => '');
      if (res.status >= 500 || res.status === 429)
        throw new TransientGatewayError(`PROVIDER_HTTP_${res.status}`, `provider answered ${res.status}`);
      if (res.status >= 400)
        throw new PermanentGatewayError(
          `PROVIDER_HTTP_${res.status}`,
          `provider refused the message (${res.status}): ${text.slice(0, 200)}`,
        );
      let id: unknown;
      try {
        id = (JSON.parse(text) as { id?: unknown }).id;
      } catch {
        id = undefined;
      }
      if (typeof id !== 'string' || !id) throw new TransientGatewayError('PROVIDER_BAD_RESPONSE', 'provider answered without a message id');
      return { providerMessageId: id };
    },
  };
}
