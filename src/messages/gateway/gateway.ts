/** The provider interface every gateway implements, and the two kinds of failure it may report. */
import type { Channel } from '../domain/channels/index.js';

export interface OutgoingMessage {
  /** Stable per message: the provider's idempotency key, so a retried send is never delivered twice. */
  idempotencyKey: string;
  to: string;
  channel: Channel;
  body: string;
  /** The sending org, for providers that show it (the SMTP From name and subject). */
  org?: { id: number; name: string };
}

export interface Gateway {
  /** Sends the message; resolves with the provider's message id. */
  send(message: OutgoingMessage): Promise<{ providerMessageId: string }>;
  /** Releases what the provider holds open (the SMTP connection pool). */
  close?(): Promise<void>;
}

/** A failure worth retrying (timeouts, 5xx, provider hiccups). */
export class TransientGatewayError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'TransientGatewayError';
  }
}

/** A failure that retrying cannot fix (invalid recipient, 4xx). */
export class PermanentGatewayError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'PermanentGatewayError';
  }
}

/**
 * The provider is still handling an earlier request with this idempotency key (HTTP 409, "request in progress"): an
 * overlapping run's send of this very message. Not an answer about the message: neither a rejection nor an attempt.
 */
export class InProgressGatewayError extends Error {
  readonly code = 'PROVIDER_IN_PROGRESS';
  constructor(message: string) {
    super(message);
    this.name = 'InProgressGatewayError';
  }
}
