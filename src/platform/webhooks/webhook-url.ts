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
  ['198.18.0.0', 15], // benchmarking (RFC 2544): routed inside labs and some internal networks
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation (TEST-NET-1)
  ['198.51.100.0', 24], // documentation (TEST-NET-2)
  ['203.0.113.0', 24], // documentation (TEST-NET-3)
  ['192.88.99.0', 24], // the deprecated 6to4 relay anycast
] as const)
  forbidden.addSubnet(network, prefix, 'ipv4');
for (const [network, prefix] of [
  ['::', 96], // unspecified ::, loopback ::1 and the deprecated IPv4-compatible ::a.b.c.d
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
  ['64:ff9b:1::', 48], // local-use NAT64 (RFC 8215): translates to the local network's own IPv4, at any prefix length
  ['2001:db8::', 32], // documentation
  ['100::', 64], // discard-only
] as const)
  forbidden.addSubnet(network, prefix, 'ipv6');

/** True when a webhook must not connect to this IP address (also for anything that is not an IP address). */
export function isForbiddenAddress(ip: string): boolean {
  const address = ip.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, ''); // brackets of a URL host, an IPv6 zone id
  const family = isIP(address);
  if (family === 0) return true;
  if (forbidden.check(address, family === 4 ? 'ipv4' : 'ipv6')) return true;
  // An IPv6 address that carries an IPv4 one reaches that IPv4 host (DNS64 + NAT64, SIIT, 6to4, Teredo): check it too.
  return family === 6 && embeddedIpv4(address).some((v4) => forbidden.check(v4, 'ipv4'));
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

/**
 * The IPv4 addresses an IPv6 address stands for: the last 32 bits of the NAT64 well-known prefix 64:ff9b::/96
 * (RFC 6052) and of IPv4-translated ::ffff:0:0:0/96 (RFC 2765); bits 16–47 of 6to4 2002::/16 (RFC 3056); the server
 * (bits 32–63) and the inverted client (last 32 bits) of Teredo 2001::/32 (RFC 4380). IPv4-mapped ::ffff:0:0/96 needs
 * nothing here: BlockList compares it as IPv4.
 */
export function embeddedIpv4(address: string): string[] {
  const b = ipv6Bytes(address);
  const v4 = (at: number, invert = 0) => Array.from(b.subarray(at, at + 4), (x) => x ^ invert).join('.');
  const zeros = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(4, 12)) return [v4(12)];
  if (zeros(0, 8) && b[8] === 0xff && b[9] === 0xff && b[10] === 0 && b[11] === 0) return [v4(12)];
  if (b[0] === 0x20 && b[1] === 0x02) return [v4(2)];
  if (b[0] === 0x20 && b[1] === 0x01 && b[2] === 0 && b[3] === 0) return [v4(4), v4(12, 0xff)];
  return [];
}

/** The 16 bytes of a valid IPv6 address (as `isIP` accepts it: `::` shorthand, a dotted IPv4 tail, no zone). */
function ipv6Bytes(address: string): Uint8Array {
  let text = address;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const groups = (part: string | undefined) => (part ? part.split(':') : []);
  const left = groups(head);
  const right = groups(tail);
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    const n = parseInt(g, 16);
    bytes[i * 2] = n >> 8;
    bytes[i * 2 + 1] = n & 0xff;
  });
  return bytes;
}
