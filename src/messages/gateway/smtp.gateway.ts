/**
 * The SMTP provider (EMAIL_GATEWAY=smtp): e-mail through a relay over a pooled nodemailer transport.
 *
 * The Message-ID is `<idempotency key@From domain>`: the same on every attempt of a message, and it is the provider
 * message id. A 4xx reply (and 503) is transient, any other 5xx permanent; a connection that fails, drops or stalls is
 * transient, and so are a refused login and a TLS failure (the relay's or our configuration, not the message's fault:
 * the message fails, refunded, once DELIVERY_ATTEMPTS are used up). The pool never re-sends on its own
 * (`maxRequeues: 0`): every send that did not get its 250 comes back to the delivery use case, which retries it with
 * backoff under the same Message-ID. What that means for "exactly once" is in docs/messages.md (SMTP).
 */
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { createTransport } from 'nodemailer';
import { isPermanentResponseCode, type NodemailerError } from 'nodemailer/lib/errors';
import type { SmtpConfig } from '../../../config/gateways.js';
import { PermanentGatewayError, TransientGatewayError, type Gateway, type OutgoingMessage } from './gateway.js';

/** Longest error text kept from the relay's reply. */
const TEXT_MAX = 500;

/** `{org}` in a template → the org's name (or its id when the provider was not told the name). */
const fill = (template: string, org: OutgoingMessage['org']) => template.replaceAll('{org}', org?.name ?? `org ${org?.id ?? ''}`.trim());

/** The Message-ID of a message: stable per message, so receivers (and mailbox providers) can drop a repeat. */
export const smtpMessageId = (idempotencyKey: string, from: string) => `<${idempotencyKey}@${from.slice(from.lastIndexOf('@') + 1)}>`;

/** A nodemailer error → a gateway error: the reply class decides, then what failed (connection, TLS, login). */
export function classifySmtpError(err: NodemailerError): TransientGatewayError | PermanentGatewayError {
  const text = (err.message || String(err)).slice(0, TEXT_MAX);
  const tlsCode = /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO/.test(`${err.code ?? ''} ${err.originalCode ?? ''}`);
  if (err.code === 'EAUTH' || err.code === 'ENOAUTH') return new TransientGatewayError('SMTP_AUTH_FAILED', text);
  // Before the reply class: a relay refusing STARTTLS answers 5xx to it, which says nothing about the message.
  if (err.code === 'ETLS' || err.code === 'EREQUIRETLS' || tlsCode) return new TransientGatewayError('SMTP_TLS_FAILED', text);
  if (typeof err.responseCode === 'number' && err.responseCode >= 400) {
    const code = `SMTP_${err.responseCode}`;
    const permanent = err.permanent ?? isPermanentResponseCode(err.responseCode);
    return permanent ? new PermanentGatewayError(code, text) : new TransientGatewayError(code, text);
  }
  if (err.code === 'ETIMEDOUT' || err.code === 'EABORT') return new TransientGatewayError('SMTP_TIMEOUT', text);
  // A malformed address the relay never saw: retrying cannot fix it.
  if (err.code === 'EENVELOPE') return new PermanentGatewayError('SMTP_INVALID_ENVELOPE', text);
  if (err.code === 'ECONNECTION' || err.code === 'ESOCKET' || err.code === 'EDNS' || err.code === 'EPROTOCOL')
    return new TransientGatewayError('SMTP_CONNECTION_FAILED', text);
  return new TransientGatewayError('SMTP_ERROR', text);
}

/** The transport options of a config: URL for host, port, TLS mode and (unless given apart) the login. */
function transportOptions(smtp: SmtpConfig) {
  const url = new URL(smtp.url);
  const implicitTls = url.protocol === 'smtps:';
  const user = smtp.user ?? (url.username ? decodeURIComponent(url.username) : undefined);
  const pass = smtp.password ?? (url.password ? decodeURIComponent(url.password) : undefined);
  const ca = smtp.caFile ? [...rootCertificates, readFileSync(smtp.caFile, 'utf8')] : undefined;
  return {
    pool: true as const,
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port ? Number(url.port) : implicitTls ? 465 : 587,
    secure: implicitTls,
    // smtp://: STARTTLS is required unless SMTP_REQUIRE_TLS=false (then used when the relay offers it).
    requireTLS: !implicitTls && smtp.requireTls,
    ...(user !== undefined ? { auth: { user, pass } } : {}),
    tls: { rejectUnauthorized: smtp.tlsRejectUnauthorized, ...(ca ? { ca } : {}) },
    maxConnections: smtp.poolMax,
    maxRequeues: 0,
    connectionTimeout: smtp.timeoutMs,
    greetingTimeout: smtp.timeoutMs,
    socketTimeout: smtp.timeoutMs,
    // Never log: the log would carry the login exchange and the recipients.
    logger: false,
    debug: false,
  };
}

/** Creates the SMTP gateway; its pool opens connections on the first send. */
export function createSmtpGateway(smtp: SmtpConfig): Gateway {
  const transport = createTransport(transportOptions(smtp));
  return {
    async send(m) {
      const messageId = smtpMessageId(m.idempotencyKey, smtp.from);
      try {
        const info = await transport.sendMail({
          from: smtp.fromName ? { name: fill(smtp.fromName, m.org), address: smtp.from } : smtp.from,
          to: m.to,
          subject: fill(smtp.subject, m.org),
          text: m.body,
          messageId,
          // The whole send, queueing in the pool included: a relay that trickles its replies is not waited for forever.
          signal: AbortSignal.timeout(2 * smtp.timeoutMs),
        });
        return { providerMessageId: info.messageId || messageId };
      } catch (err) {
        throw classifySmtpError(err as NodemailerError);
      }
    },
    close() {
      transport.close();
      return Promise.resolve();
    },
  };
}
