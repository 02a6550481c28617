/** Picks the gateway named by GATEWAY. */
import type { Config } from '../../../config/config.js';
import type { Gateway } from './gateway.js';
import { createHttpGateway } from './http.gateway.js';
import { createSimulatedGateway } from './simulated.gateway.js';

export function createGateway(config: Config): Gateway {
  const o = config.gatewayOptions;
  if (config.gateway === 'http') return createHttpGateway({ url: o.url!, secret: o.secret, timeoutMs: o.timeoutMs });
  return createSimulatedGateway(o);
}
