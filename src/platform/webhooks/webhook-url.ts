/**
 * SSRF rules for webhook URLs: which addresses a webhook may never reach (unless WEBHOOK_ALLOW_PRIVATE), checked on
 * the URL when it is set and on every resolved address when it is posted to (webhook-post.ts).
 */
import { BlockList, isIP } from 'node:net';

const forbidden = new BlockList();
// IPv4 rules also match the IPv4-mapped IPv6 forms (::ffff:a.b.c.d): BlockList compares them as IPv4.
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network", includes the unspecified 0.0.0.0
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local (cloud metadata endpoints live here)
  ['172.16.0.0', 12], // private
  ['192.168.0.0', 16], // private
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, includes the broadcast 255.255.255.255
] as const)
  forbidden.addSubnet(network, prefix, 'ipv4');
for (const [network, prefix] of [
  ['::', 96], // unspecified ::, loopback ::1 and the deprecated IPv4-compatible ::a.b.c.d
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
] as const)
  forbidden.addSubnet(network, prefix, 'ipv6');

/** True when a webhook must not connect to this IP address (also for anything that is not an IP address). */
export function isForbiddenAddress(ip: string): boolean {
  const address = ip.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, ''); // brackets of a URL host, an IPv6 zone id
  const family = isIP(address);
  if (family === 0) return true;
  return forbidden.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Why a webhook URL is refused, or undefined when it is acceptable: it must parse, be http(s), and — unless
 * allowPrivate — not name `localhost` (or `*.localhost`) nor a forbidden IP literal. WHATWG URL parsing has already
 * turned decimal, octal and hex IPv4 spellings (http://2130706433/, http://0x7f.1/) into dotted quads.
 * Host names are only resolved when posting: see postWebhook.
 */
export function checkWebhookUrl(url: string, opts: { allowPrivate: boolean }): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'the webhook URL is not a valid URL';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'the webhook URL must be http or https';
  if (opts.allowPrivate) return undefined;
  const host = parsed.hostname.replace(/\.$/, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return `the webhook URL may not point at ${host}`;
  if (isIP(host.replace(/^\[(.*)\]$/, '$1')) !== 0 && isForbiddenAddress(host)) {
    return `the webhook URL may not point at a loopback, private, link-local or otherwise internal address (${host})`;
  }
  return undefined;
}
