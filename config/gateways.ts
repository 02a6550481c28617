/**
 * The gateway part of the environment: which provider each channel uses (GATEWAY for every channel, SMS_GATEWAY and
 * EMAIL_GATEWAY per channel) and the SMTP provider's settings. Merged into config/config.ts's schema.
 */
import { existsSync } from 'node:fs';
import Joi from 'joi';

/** A provider kind: `smtp` carries e-mail only. */
export type GatewayKind = 'simulated' | 'http' | 'smtp';

/** The SMTP provider's settings (EMAIL_GATEWAY=smtp). */
export interface SmtpConfig {
  /** smtp:// (STARTTLS) or smtps:// (TLS from the first byte); may carry the user and password. */
  readonly url: string;
  readonly user?: string;
  readonly password?: string;
  /** Envelope sender and the From address of every message. */
  readonly from: string;
  /** Display name of From; `{org}` is replaced by the org's name. */
  readonly fromName?: string;
  /** Subject of every message; `{org}` is replaced by the org's name. */
  readonly subject: string;
  /** Connections of the pooled transport. */
  readonly poolMax: number;
  readonly timeoutMs: number;
  /** smtp:// only: refuse to send unless the server upgrades the connection with STARTTLS. */
  readonly requireTls: boolean;
  readonly tlsRejectUnauthorized: boolean;
  /** A PEM file of CA certificates trusted besides Node's bundled ones. */
  readonly caFile?: string;
}

/** The gateway variables of the environment schema. */
export const gatewaySchemaKeys = {
  SMS_GATEWAY: Joi.string().valid('simulated', 'http'),
  EMAIL_GATEWAY: Joi.string().valid('simulated', 'http', 'smtp'),
  SMTP_URL: Joi.string().uri({ scheme: ['smtp', 'smtps'] }),
  SMTP_USER: Joi.string(),
  SMTP_PASS: Joi.string(),
  SMTP_FROM: Joi.string().email({ tlds: false }),
  SMTP_FROM_NAME: Joi.string()
    .max(200)
    .pattern(/^[^\p{Cc}]+$/u, 'no control characters'),
  SMTP_SUBJECT: Joi.string()
    .max(400)
    .pattern(/^[^\p{Cc}]+$/u, 'no control characters')
    .default('Message from {org}'),
  SMTP_POOL_MAX: Joi.number().integer().min(1).max(100).default(5),
  SMTP_TIMEOUT_MS: Joi.number().integer().min(100).default(30_000),
  SMTP_REQUIRE_TLS: Joi.boolean().default(true),
  SMTP_TLS_REJECT_UNAUTHORIZED: Joi.boolean().default(true),
  SMTP_CA_FILE: Joi.string(),
};

/** The provider of each channel: its own variable, else GATEWAY. */
export function channelGateways(v: Record<string, unknown>): { sms: GatewayKind; email: GatewayKind } {
  const all = v.GATEWAY as GatewayKind;
  return { sms: (v.SMS_GATEWAY as GatewayKind | undefined) ?? all, email: (v.EMAIL_GATEWAY as GatewayKind | undefined) ?? all };
}

/** True when some channel posts to the HTTP provider (GATEWAY_URL and GATEWAY_SECRET then matter). */
export const usesHttpGateway = (v: Record<string, unknown>) => Object.values(channelGateways(v)).includes('http');

/**
 * What the schema alone cannot say, one line per problem (never a value: SMTP_URL may hold a password). Variables that
 * already failed validation (`skip`) are not named twice.
 */
export function gatewayProblems(v: Record<string, unknown>, skip: Set<string | undefined>, devGatewaySecret: string): string[] {
  // A provider variable that is itself invalid says nothing about what else is needed.
  if (['GATEWAY', 'SMS_GATEWAY', 'EMAIL_GATEWAY'].some((variable) => skip.has(variable))) return [];
  const problems: string[] = [];
  const channels = channelGateways(v);
  const needs = (variable: string, why: string) => {
    if (v[variable] === undefined && !skip.has(variable)) problems.push(`${variable}: is required when ${why}`);
  };
  // GATEWAY=http already requires it through the schema; a channel's own variable does so here.
  if (v.GATEWAY !== 'http' && usesHttpGateway(v)) {
    needs('GATEWAY_URL', 'SMS_GATEWAY or EMAIL_GATEWAY is http');
    if (v.NODE_ENV === 'production' && v.GATEWAY_SECRET === devGatewaySecret && !skip.has('GATEWAY_SECRET'))
      problems.push('GATEWAY_SECRET: is required (not the development default) when SMS_GATEWAY or EMAIL_GATEWAY is http in production');
  }
  if (channels.email === 'smtp') {
    needs('SMTP_URL', 'EMAIL_GATEWAY=smtp');
    needs('SMTP_FROM', 'EMAIL_GATEWAY=smtp');
    if (typeof v.SMTP_CA_FILE === 'string' && !existsSync(v.SMTP_CA_FILE)) problems.push('SMTP_CA_FILE: the file does not exist');
  }
  return problems;
}

/** The SMTP settings, when e-mail goes over SMTP. */
export function smtpConfig(v: Record<string, unknown>): SmtpConfig | undefined {
  if (channelGateways(v).email !== 'smtp') return undefined;
  return {
    url: v.SMTP_URL as string,
    ...(v.SMTP_USER === undefined ? {} : { user: v.SMTP_USER as string }),
    ...(v.SMTP_PASS === undefined ? {} : { password: v.SMTP_PASS as string }),
    from: v.SMTP_FROM as string,
    ...(v.SMTP_FROM_NAME === undefined ? {} : { fromName: v.SMTP_FROM_NAME as string }),
    subject: v.SMTP_SUBJECT as string,
    poolMax: v.SMTP_POOL_MAX as number,
    timeoutMs: v.SMTP_TIMEOUT_MS as number,
    requireTls: v.SMTP_REQUIRE_TLS as boolean,
    tlsRejectUnauthorized: v.SMTP_TLS_REJECT_UNAUTHORIZED as boolean,
    ...(v.SMTP_CA_FILE === undefined ? {} : { caFile: v.SMTP_CA_FILE as string }),
  };
}
