/** Picks each channel's gateway: SMS_GATEWAY / EMAIL_GATEWAY, else GATEWAY. */
import type { Config } from '../../../config/config.js';
import type { GatewayKind } from '../../../config/gateways.js';
import { tracing } from '../../platform/telemetry/tracing.js';
import type { Gateway } from './gateway.js';
import { createHttpGateway } from './http.gateway.js';
import { createSimulatedGateway } from './simulated.gateway.js';
import { createSmtpGateway } from './smtp.gateway.js';

/** Creates the configured gateway: one provider per kind in use, each channel's messages sent through its own. */
export function createGateway(config: Config): Gateway {
  const o = config.gatewayOptions;
  const providers = new Map<GatewayKind, Gateway>();
  const provider = (kind: GatewayKind): Gateway => {
    let g = providers.get(kind);
    if (!g) {
      if (kind === 'http') g = createHttpGateway({ url: o.url!, secret: o.secret, timeoutMs: o.timeoutMs });
      else if (kind === 'smtp') g = createSmtpGateway(config.smtp!);
      else g = createSimulatedGateway(o);
      providers.set(kind, g);
    }
    return g;
  };
  const sms = provider(config.channelGateways.sms);
  const email = provider(config.channelGateways.email);
  return {
    // With tracing on, each send is a `gateway.send` span (channel, then the provider's id; never the body or recipient).
    send: tracing.traced('gateway.send', (m) => (m.channel === 'email' ? email : sms).send(m), {
      of: (m) => ({ 'message.channel': m.channel }),
      result: (r) => ({ 'gateway.provider_message_id': r.providerMessageId }),
    }),
    async close() {
      await Promise.all([...providers.values()].map((g) => (g.close ? g.close() : Promise.resolve())));
    },
  };
}
