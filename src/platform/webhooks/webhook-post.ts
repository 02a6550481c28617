/**
 * The SSRF-safe webhook sender: resolves the host once, refuses it if ANY address is internal (unless allowPrivate),
 * then connects to exactly the address it checked — so a DNS answer that changes between check and connect (DNS
 * rebinding) cannot redirect the post. TLS still verifies the certificate against the URL's host name.
 */
import http from 'node:http';
import https from 'node:https';
import { lookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { withTimeout } from '../lib/timeout.js';
import { checkWebhookUrl, isForbiddenAddress } from './webhook-url.js';

/** The webhook URL, or an address it resolves to, is refused by policy: retrying cannot help. */
export class ForbiddenWebhookTarget extends Error {
  readonly code = 'WEBHOOK_URL_FORBIDDEN';
  readonly retryable = false;
  constructor(message: string) {
    super(message);
    this.name = 'ForbiddenWebhookTarget';
  }
}

/** One resolved address, as dns.lookup gives it. */
export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Resolves a host name to all its addresses. */
export type ResolveHost = (hostname: string) => Promise<ResolvedAddress[]>;

const resolveWithDns: ResolveHost = (hostname) => lookup(hostname, { all: true });

export interface PostWebhookInput {
  url: string;
  headers: Record<string, string>;
  body: string;
  /** For the whole post: resolution, connection and the answer's status line. */
  timeoutMs: number;
  /** WEBHOOK_ALLOW_PRIVATE: allow loopback, private and other internal targets (development only). */
  allowPrivate: boolean;
  /** Test seam: how host names are resolved (dns.lookup, all addresses, by default). */
  resolve?: ResolveHost;
}

/**
 * POSTs the body and answers the status of a 2xx response (its body is discarded; redirects are not followed).
 * Throws ForbiddenWebhookTarget (code WEBHOOK_URL_FORBIDDEN) for a refused target, an ordinary Error otherwise
 * (network failure, timeout, non-2xx status — the latter with a `status` property).
 */
export async function postWebhook(input: PostWebhookInput): Promise<{ status: number }> {
  const problem = checkWebhookUrl(input.url, { allowPrivate: input.allowPrivate });
  if (problem) throw new ForbiddenWebhookTarget(problem);
  const started = Date.now();
  const url = new URL(input.url);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const addresses = isIP(host)
    ? [{ address: host, family: isIP(host) }]
    : await withTimeout((input.resolve ?? resolveWithDns)(host), input.timeoutMs, `resolving webhook host ${host}`);
  if (!addresses.length) throw new Error(`webhook host ${host} did not resolve`);
  const internal = input.allowPrivate ? undefined : addresses.find((a) => isForbiddenAddress(a.address));
  if (internal) throw new ForbiddenWebhookTarget(`webhook host ${host} resolves to an internal address (${internal.address})`);
  const status = await send(url, addresses[0]!, input, Math.max(1, input.timeoutMs - (Date.now() - started)));
  return { status };
}

function send(url: URL, target: ResolvedAddress, input: PostWebhookInput, timeoutMs: number): Promise<number> {
  // Whatever the connection asks for (one address, or all of them with autoSelectFamily), it gets the checked one.
  const pinned: LookupFunction = (_hostname, options, callback) => {
    if (options.all) callback(null, [{ address: target.address, family: target.family }]);
    else callback(null, target.address, target.family);
  };
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(
      url,
      {
        method: 'POST',
        headers: { ...input.headers, 'Content-Length': String(Buffer.byteLength(input.body)) },
        lookup: pinned,
        agent: false, // no pooled socket: each post connects to the address it just checked
      },
      (res) => {
        const status = res.statusCode ?? 0;
        res.destroy(); // the answer's body is not needed
        if (status >= 200 && status < 300) resolve(status);
        else reject(Object.assign(new Error(`webhook endpoint answered ${status}`), { status }));
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`webhook post timed out after ${input.timeoutMs}ms`)), timeoutMs);
    req.once('close', () => clearTimeout(timer));
    req.on('error', reject); // 'on': a late error (after the answer) must not go unhandled
    req.end(input.body);
  });
}
