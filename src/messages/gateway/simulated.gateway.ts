/**
 * The default, simulated provider: configurable latency and transient-failure rate (seeded, so runs repeat),
 * and documented test recipients that always fail.
 */
import { createHash } from 'node:crypto';
import { PermanentGatewayError, TransientGatewayError, type Gateway } from './gateway.js';

/** Recipients with a fixed outcome, for tests and demos. */
export const TEST_RECIPIENTS = {
  transient: '+15005550001',
  permanent: '+15005550002',
  permanentEmail: 'fail@example.com',
} as const;

/** A small deterministic PRNG (mulberry32). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Creates the simulated gateway. The provider id is derived from the idempotency key, as a real provider would dedupe. */
export function createSimulatedGateway(opts: { latencyMs: number; failureRate: number; seed: number }): Gateway & { sent: number } {
  const random = seeded(opts.seed);
  const state = {
    sent: 0,
    async send(m: Parameters<Gateway['send']>[0]) {
      if (opts.latencyMs > 0) await new Promise((r) => setTimeout(r, opts.latencyMs));
      if (m.to === TEST_RECIPIENTS.transient) throw new TransientGatewayError('PROVIDER_UNAVAILABLE', 'simulated transient failure');
      if (m.to === TEST_RECIPIENTS.permanent || m.to.toLowerCase() === TEST_RECIPIENTS.permanentEmail) {
        throw new PermanentGatewayError('RECIPIENT_REJECTED', 'simulated permanent failure: recipient rejected');
      }
      if (opts.failureRate > 0 && random() < opts.failureRate)
        throw new TransientGatewayError('PROVIDER_UNAVAILABLE', 'simulated random transient failure');
      state.sent++;
      return { providerMessageId: `sim_${createHash('sha256').update(m.idempotencyKey).digest('hex').slice(0, 24)}` };
    },
  };
  return state;
}
