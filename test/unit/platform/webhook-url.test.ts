import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { ForbiddenWebhookTarget, postWebhook, type ResolvedAddress } from '../../../src/platform/webhooks/webhook-post.js';
import { checkWebhookUrl, isForbiddenAddress } from '../../../src/platform/webhooks/webhook-url.js';

/** Every address with the verdict it should get: a failing entry shows in the diff. */
function verdicts(addresses: string[]): [string, boolean][] {
  return addresses.map((a) => [a, isForbiddenAddress(a)]);
}
const all = (addresses: string[], forbidden: boolean): [string, boolean][] => addresses.map((a) => [a, forbidden]);

/** Awaits a promise that must reject; returns the error. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection, but the promise resolved');
}

const PRIVATE = { allowPrivate: false };
const INTERNAL = (host: string) =>
  `the webhook URL may not point at a loopback, private, link-local or otherwise internal address (${host})`;

describe('webhook URL rules (SSRF)', () => {
  describe('isForbiddenAddress', () => {
    const classes: Record<string, string[]> = {
      'loopback (127.0.0.0/8, ::1)': ['127.0.0.1', '127.255.255.254', '::1'],
      'private 10.0.0.0/8': ['10.0.0.1', '10.255.255.255'],
      'private 172.16.0.0/12': ['172.16.0.1', '172.31.255.254'],
      'private 192.168.0.0/16': ['192.168.0.1', '192.168.255.255'],
      'link-local (169.254.0.0/16, fe80::/10), cloud metadata included': [
        '169.254.169.254',
        '169.254.0.1',
        'fe80::1',
        'febf::1',
        'fe80::1%eth0',
      ],
      'carrier-grade NAT 100.64.0.0/10': ['100.64.0.1', '100.127.255.254'],
      'unique local IPv6 fc00::/7': ['fc00::1', 'fd12:3456:789a::1'],
      'multicast (224.0.0.0/4, ff00::/8)': ['224.0.0.1', '239.255.255.250', 'ff02::1', 'ff0e::1'],
      'unspecified (0.0.0.0, ::)': ['0.0.0.0', '::'],
      '"this network" 0.0.0.0/8': ['0.1.2.3', '0.255.255.255'],
      'broadcast and reserved 240.0.0.0/4': ['255.255.255.255', '240.0.0.1'],
      'IPv4-mapped IPv6 forms of all of these': [
        '::ffff:127.0.0.1',
        '::ffff:7f00:1',
        '::ffff:10.0.0.1',
        '::ffff:172.16.0.1',
        '::ffff:192.168.1.1',
        '::ffff:169.254.169.254',
        '::ffff:100.64.0.1',
        '::ffff:224.0.0.1',
        '::ffff:0.0.0.0',
        '::ffff:255.255.255.255',
      ],
      'deprecated IPv4-compatible IPv6 (::/96)': ['::127.0.0.1', '::10.0.0.1'],
      'anything that is not an IP address (fails closed)': ['', 'localhost', 'example.com', '1.2.3', '[::1'],
    };
    for (const [name, addresses] of Object.entries(classes)) {
      it(`forbids ${name}`, () => {
        expect(verdicts(addresses)).to.deep.equal(all(addresses, true));
      });
    }

    it('allows public addresses, including just outside each forbidden range and their IPv4-mapped forms', () => {
      const addresses = [
        '8.8.8.8',
        '1.1.1.1',
        '93.184.216.34',
        '9.255.255.255',
        '11.0.0.1',
        '172.15.255.255',
        '172.32.0.1',
        '192.167.255.255',
        '192.169.0.1',
        '100.63.255.255',
        '100.128.0.1',
        '169.253.255.255',
        '126.255.255.255',
        '128.0.0.1',
        '223.255.255.255',
        '2606:4700:4700::1111',
        '2001:4860:4860::8888',
        '::ffff:8.8.8.8',
        '[2606:4700:4700::1111]',
      ];
      expect(verdicts(addresses)).to.deep.equal(all(addresses, false));
    });
  });

  describe('checkWebhookUrl', () => {
    it('accepts public http and https URLs', () => {
      for (const url of [
        'https://hooks.example.com/status',
        'http://hooks.example.com:8080/a?b=c',
        'https://8.8.8.8/x',
        'http://[2606:4700:4700::1111]/',
      ]) {
        expect(checkWebhookUrl(url, PRIVATE), url).to.equal(undefined);
      }
    });

    it('refuses localhost and *.localhost names, whatever their case or a trailing dot', () => {
      expect(checkWebhookUrl('http://localhost:3000/hook', PRIVATE)).to.equal('the webhook URL may not point at localhost');
      expect(checkWebhookUrl('http://LOCALHOST./', PRIVATE)).to.equal('the webhook URL may not point at localhost');
      expect(checkWebhookUrl('https://api.Localhost/x', PRIVATE)).to.equal('the webhook URL may not point at api.localhost');
    });

    it('refuses IPv4 literals of internal addresses', () => {
      expect(checkWebhookUrl('http://127.0.0.1:8080/', PRIVATE)).to.equal(INTERNAL('127.0.0.1'));
      expect(checkWebhookUrl('http://10.1.2.3/', PRIVATE)).to.equal(INTERNAL('10.1.2.3'));
      expect(checkWebhookUrl('http://169.254.169.254/latest/meta-data/', PRIVATE)).to.equal(INTERNAL('169.254.169.254'));
      expect(checkWebhookUrl('http://100.64.0.1/', PRIVATE)).to.equal(INTERNAL('100.64.0.1'));
      expect(checkWebhookUrl('http://255.255.255.255/', PRIVATE)).to.equal(INTERNAL('255.255.255.255'));
    });

    it('refuses decimal, octal, hex and short IPv4 spellings, which URL parsing turns into dotted quads', () => {
      expect(checkWebhookUrl('http://2130706433/', PRIVATE)).to.equal(INTERNAL('127.0.0.1'));
      expect(checkWebhookUrl('http://0x7f.1/', PRIVATE)).to.equal(INTERNAL('127.0.0.1'));
      expect(checkWebhookUrl('http://017700000001/', PRIVATE)).to.equal(INTERNAL('127.0.0.1'));
      expect(checkWebhookUrl('http://127.1/', PRIVATE)).to.equal(INTERNAL('127.0.0.1'));
      expect(checkWebhookUrl('http://0/', PRIVATE)).to.equal(INTERNAL('0.0.0.0'));
      expect(checkWebhookUrl('http://0xa9fea9fe/', PRIVATE)).to.equal(INTERNAL('169.254.169.254'));
    });

    it('refuses IPv6 literals of internal addresses, IPv4-mapped ones included', () => {
      expect(checkWebhookUrl('http://[::1]:8080/', PRIVATE)).to.equal(INTERNAL('[::1]'));
      expect(checkWebhookUrl('http://[::]/', PRIVATE)).to.equal(INTERNAL('[::]'));
      expect(checkWebhookUrl('http://[fe80::1]/', PRIVATE)).to.equal(INTERNAL('[fe80::1]'));
      expect(checkWebhookUrl('http://[fd00::1]/', PRIVATE)).to.equal(INTERNAL('[fd00::1]'));
      expect(checkWebhookUrl('http://[ff02::1]/', PRIVATE)).to.equal(INTERNAL('[ff02::1]'));
      expect(checkWebhookUrl('http://[::ffff:127.0.0.1]/', PRIVATE)).to.equal(INTERNAL('[::ffff:7f00:1]'));
      expect(checkWebhookUrl('http://[0:0:0:0:0:ffff:a9fe:a9fe]/', PRIVATE)).to.equal(INTERNAL('[::ffff:a9fe:a9fe]'));
    });

    it('refuses what is not an http(s) URL, even with allowPrivate', () => {
      for (const opts of [{ allowPrivate: false }, { allowPrivate: true }]) {
        expect(checkWebhookUrl('not a url', opts)).to.equal('the webhook URL is not a valid URL');
        expect(checkWebhookUrl('ftp://hooks.example.com/', opts)).to.equal('the webhook URL must be http or https');
        expect(checkWebhookUrl('file:///etc/passwd', opts)).to.equal('the webhook URL must be http or https');
      }
    });

    it('with allowPrivate (WEBHOOK_ALLOW_PRIVATE=true) accepts internal targets', () => {
      for (const url of ['http://127.0.0.1:3000/', 'http://localhost/', 'http://[::1]/', 'http://10.0.0.5/', 'http://2130706433/']) {
        expect(checkWebhookUrl(url, { allowPrivate: true }), url).to.equal(undefined);
      }
    });
  });

  describe('postWebhook', () => {
    interface Received {
      method: string;
      url: string;
      host: string;
      headers: http.IncomingHttpHeaders;
      body: string;
    }
    let server: http.Server;
    let port: number;
    let received: Received[];
    let answer: (res: http.ServerResponse) => void;

    before(async () => {
      server = http.createServer((req, res) => {
        let body = '';
        req.on('data', (d: Buffer) => (body += d.toString()));
        req.on('end', () => {
          received.push({ method: req.method!, url: req.url!, host: req.headers.host!, headers: req.headers, body });
          answer(res);
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as AddressInfo).port;
    });
    beforeEach(() => {
      received = [];
      answer = (res) => res.writeHead(204).end();
    });
    after(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    const post = (url: string, extra: Partial<Parameters<typeof postWebhook>[0]> = {}) =>
      postWebhook({
        url,
        headers: { 'Content-Type': 'application/json', 'webhook-id': 'msg_1' },
        body: '{"ok":true}',
        timeoutMs: 2000,
        allowPrivate: false,
        ...extra,
      });

    it('with allowPrivate posts the body and headers to a local server and answers its status', async () => {
      expect(await post(`http://127.0.0.1:${port}/hook?x=1`, { allowPrivate: true })).to.deep.equal({ status: 204 });
      expect(received).to.have.length(1);
      expect(received[0]).to.deep.include({ method: 'POST', url: '/hook?x=1', host: `127.0.0.1:${port}`, body: '{"ok":true}' });
      expect(received[0]!.headers).to.deep.include({ 'content-type': 'application/json', 'webhook-id': 'msg_1', 'content-length': '11' });
    });

    it('refuses 127.0.0.1 with WEBHOOK_URL_FORBIDDEN, without connecting', async () => {
      const err = await rejection(post(`http://127.0.0.1:${port}/hook`));
      expect(err).to.be.instanceOf(ForbiddenWebhookTarget);
      expect(err).to.deep.include({ code: 'WEBHOOK_URL_FORBIDDEN', retryable: false, message: INTERNAL('127.0.0.1') });
      expect(received).to.deep.equal([]);
    });

    it('refuses localhost with WEBHOOK_URL_FORBIDDEN, without connecting', async () => {
      const err = await rejection(post(`http://localhost:${port}/hook`));
      expect(err).to.deep.include({ code: 'WEBHOOK_URL_FORBIDDEN', message: 'the webhook URL may not point at localhost' });
      expect(received).to.deep.equal([]);
    });

    it('refuses a host name that resolves to 127.0.0.1, without connecting', async () => {
      const err = await rejection(
        post(`http://hooks.example.test:${port}/hook`, { resolve: async () => [{ address: '127.0.0.1', family: 4 }] }),
      );
      expect(err).to.be.instanceOf(ForbiddenWebhookTarget);
      expect(err).to.deep.include({
        code: 'WEBHOOK_URL_FORBIDDEN',
        message: 'webhook host hooks.example.test resolves to an internal address (127.0.0.1)',
      });
      expect(received).to.deep.equal([]);
    });

    it('refuses a host name when ANY of its addresses is internal', async () => {
      const resolve = async (): Promise<ResolvedAddress[]> => [
        { address: '93.184.216.34', family: 4 },
        { address: '::ffff:10.0.0.1', family: 6 },
      ];
      const err = await rejection(post(`http://hooks.example.test:${port}/hook`, { resolve }));
      expect(err).to.deep.include({
        code: 'WEBHOOK_URL_FORBIDDEN',
        message: 'webhook host hooks.example.test resolves to an internal address (::ffff:10.0.0.1)',
      });
    });

    it('resolves once and connects to exactly the address it checked (DNS rebinding cannot redirect it)', async () => {
      const calls: string[] = [];
      // First answer: the local server; any later answer would be an unroutable address (TEST-NET-3) and time out.
      const resolve = async (host: string): Promise<ResolvedAddress[]> => {
        calls.push(host);
        return [{ address: calls.length === 1 ? '127.0.0.1' : '203.0.113.1', family: 4 }];
      };
      expect(await post(`http://hooks.example.test:${port}/hook`, { allowPrivate: true, resolve })).to.deep.equal({ status: 204 });
      expect(calls).to.deep.equal(['hooks.example.test']);
      expect(received.map((r) => r.host)).to.deep.equal([`hooks.example.test:${port}`]);
    });

    it('throws an ordinary error with the status on a non-2xx answer, and does not follow redirects', async () => {
      answer = (res) => res.writeHead(500).end('boom');
      const failed = await rejection(post(`http://127.0.0.1:${port}/hook`, { allowPrivate: true }));
      expect(failed).not.to.be.instanceOf(ForbiddenWebhookTarget);
      expect(failed).to.deep.include({ status: 500, message: 'webhook endpoint answered 500' });

      answer = (res) => res.writeHead(302, { Location: `http://127.0.0.1:${port}/elsewhere` }).end();
      const redirected = await rejection(post(`http://127.0.0.1:${port}/hook`, { allowPrivate: true }));
      expect(redirected).to.deep.include({ status: 302, message: 'webhook endpoint answered 302' });
      expect(received.map((r) => r.url)).to.deep.equal(['/hook', '/hook']);
    });

    it('aborts after timeoutMs when the endpoint does not answer', async () => {
      answer = () => undefined; // never answers
      const started = Date.now();
      const err = await rejection(post(`http://127.0.0.1:${port}/hook`, { allowPrivate: true, timeoutMs: 200 }));
      expect(err).to.deep.include({ message: 'webhook post timed out after 200ms' });
      expect(err).not.to.be.instanceOf(ForbiddenWebhookTarget);
      expect(Date.now() - started).to.be.within(150, 1500);
    });

    it('throws an ordinary error when the connection fails', async () => {
      const closed = http.createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const closedPort = (closed.address() as AddressInfo).port;
      await new Promise<void>((resolve) => closed.close(() => resolve()));
      const err = await rejection(post(`http://127.0.0.1:${closedPort}/hook`, { allowPrivate: true }));
      expect(err).not.to.be.instanceOf(ForbiddenWebhookTarget);
      expect(err).to.have.property('code', 'ECONNREFUSED');
    });
  });
});
