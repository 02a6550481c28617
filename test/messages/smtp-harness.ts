/**
 * A real SMTP relay for the tests (the `smtp-server` package, what arrived read by `mailparser`), a TCP proxy in front
 * of it that can drop a connection in the middle of DATA or swallow the relay's reply to it, and a self-signed
 * certificate made at test time.
 */
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleParser, type ParsedMail } from 'mailparser';
import { generate } from 'selfsigned';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';

export interface ReceivedMail {
  from: string;
  to: string[];
  /** True when the session was encrypted (STARTTLS or implicit TLS). */
  secure: boolean;
  /** The user the client logged in as, if it did. */
  user?: string;
  mail: ParsedMail;
}

/** What the relay answers a recipient: undefined accepts it; `attempt` counts this recipient's RCPTs from 1. */
export type RcptRule = (address: string, attempt: number) => { code: number; text: string } | undefined;

export interface TestRelay {
  port: number;
  received: ReceivedMail[];
  /** Resolves once `n` mails have arrived in all. */
  waitFor(n: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts a relay on 127.0.0.1 (port 0). `tls`: offers STARTTLS (or, with `implicitTls`, TLS from the first byte). */
export async function startRelay(
  opts: {
    tls?: { key: string; cert: string };
    implicitTls?: boolean;
    /** Required login; without it no login is offered. */
    login?: { user: string; pass: string };
    rcpt?: RcptRule;
  } = {},
): Promise<TestRelay> {
  const received: ReceivedMail[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const attempts = new Map<string, number>();
  const options: SMTPServerOptions = {
    secure: Boolean(opts.implicitTls),
    ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : { disabledCommands: ['STARTTLS'] }),
    ...(opts.login ? { authMethods: ['PLAIN', 'LOGIN'] } : { authOptional: true }),
    ...(opts.login && !opts.tls ? { allowInsecureAuth: true } : {}),
    logger: false,
    onAuth(auth, _session, callback) {
      if (opts.login && auth.username === opts.login.user && auth.password === opts.login.pass) callback(null, { user: auth.username });
      else callback(Object.assign(new Error('Authentication failed'), { responseCode: 535 }));
    },
    onRcptTo(address, _session, callback) {
      const attempt = (attempts.get(address.address) ?? 0) + 1;
      attempts.set(address.address, attempt);
      const refusal = opts.rcpt?.(address.address, attempt);
      callback(refusal ? Object.assign(new Error(refusal.text), { responseCode: refusal.code }) : undefined);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      // A connection dropped in the middle destroys the stream: an incomplete message is never "received".
      stream.on('error', () => undefined);
      stream.on('end', () => {
        void simpleParser(Buffer.concat(chunks)).then((mail) => {
          received.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            secure: session.secure,
            ...(typeof session.user === 'string' ? { user: session.user } : {}),
            mail,
          });
          for (const w of [...waiters])
            if (received.length >= w.n) {
              waiters.splice(waiters.indexOf(w), 1);
              w.resolve();
            }
          callback();
        }, callback);
      });
    },
  };
  const server = new SMTPServer(options);
  server.on('error', () => undefined);
  server.listen(0, '127.0.0.1');
  await once(server.server, 'listening');
  return {
    port: (server.server.address() as AddressInfo).port,
    received,
    waitFor: (n) => new Promise<void>((resolve) => (received.length >= n ? resolve() : waiters.push({ n, resolve }))),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** How the proxy breaks the next DATA it sees. */
export type DropMode = 'mid-data' | 'before-reply';

export interface DroppingProxy {
  port: number;
  /** The next DATA on any connection is broken this way (once per call). */
  dropNext(mode: DropMode): void;
  /** Connections broken so far. */
  drops(): number;
  close(): Promise<void>;
}

/**
 * A plain TCP proxy to the relay. `mid-data`: cuts both sides after half of the message's first bytes (the relay never
 * sees its end). `before-reply`: passes the whole message, lets the relay accept it, then cuts both sides instead of
 * passing on the relay's 250: the client never learns that the relay has the mail. Plain text only (no STARTTLS).
 */
export async function startDroppingProxy(targetPort: number): Promise<DroppingProxy> {
  const pending: DropMode[] = [];
  let dropped = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const relay = net.connect(targetPort, '127.0.0.1');
    sockets.add(client).add(relay);
    let phase: 'commands' | 'await-354' | 'data' | 'await-reply' = 'commands';
    let mode: DropMode | undefined;
    let tail = '';
    const cut = () => {
      dropped++;
      client.destroy();
      relay.destroy();
    };
    client.on('data', (chunk: Buffer) => {
      if (phase === 'commands' && /(^|\r\n)DATA\r\n/i.test(chunk.toString('latin1')) && pending.length) {
        mode = pending.shift();
        phase = 'await-354';
      } else if (phase === 'data' && mode === 'mid-data') {
        relay.write(chunk.subarray(0, Math.max(1, Math.floor(chunk.length / 2))), () => setTimeout(cut, 20));
        return;
      } else if (phase === 'data') {
        tail = (tail + chunk.toString('latin1')).slice(-5);
        if (tail === '\r\n.\r\n') phase = 'await-reply';
      }
      relay.write(chunk);
    });
    relay.on('data', (chunk: Buffer) => {
      // With PIPELINING the 354 comes after the replies to MAIL FROM and RCPT TO, in the same chunk.
      if (phase === 'await-354' && /(^|\r\n)354[ -]/.test(chunk.toString('latin1'))) phase = 'data';
      else if (phase === 'await-reply') return cut();
      client.write(chunk);
    });
    for (const s of [client, relay]) {
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        relay.destroy();
      });
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    dropNext: (m) => void pending.push(m),
    drops: () => dropped,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A self-signed certificate for 127.0.0.1 and localhost, with its PEM written to a file (to trust with SMTP_CA_FILE). */
export async function selfSignedCertificate(): Promise<{ key: string; cert: string; certFile: string }> {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  const certFile = join(mkdtempSync(join(tmpdir(), 'smtp-ca-')), 'relay.pem');
  writeFileSync(certFile, pems.cert);
  return { key: pems.private, cert: pems.cert, certFile };
}
