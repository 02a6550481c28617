/**
 * E-mail over SMTP (EMAIL_GATEWAY=smtp) against a real relay started here (smtp-server; what arrived read by
 * mailparser): the message as it arrives, the three reply classes (4xx, 5xx, a connection dropped in DATA), TLS.
 */
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { debitReference, refundReference } from '../../src/messages/domain/deliver-message.js';
import { createLogger } from '../../src/platform/lib/logger.js';
import { createTenant, rows, startApiWithWorkers, type ApiWithWorkers } from '../helpers.js';
import { selfSignedCertificate, startDroppingProxy, startRelay, type DroppingProxy, type TestRelay } from './smtp-harness.js';

type Org = { id: number; apiKey: string };

const BASE_ENV = {
  EMAIL_GATEWAY: 'smtp',
  SMTP_FROM: 'no-reply@mail.example.test',
  DELIVERY_ATTEMPTS: '3',
  DELIVERY_BACKOFF_MS: '20',
  SMTP_TIMEOUT_MS: '5000',
};

/** Sends, awaits the job's end, answers the message as GET /messages/:id shows it and the org's ledger. */
async function sendAndSettle(h: ApiWithWorkers, org: Org, to: string, body = 'Hello from the test') {
  const res = await h.api.request('POST', '/messages', { org, body: { to, channel: to.includes('@') ? 'email' : 'sms', body } });
  expect(res.status).to.equal(202);
  const id = res.body.message.id as number;
  await h.delivered(org.id, id);
  const message = (await h.api.request('GET', `/messages/${id}`, { org })).body.message;
  const ledger = await rows<{ kind: string; amount: number; reference: string }>(
    h.api.deps.sharedDb,
    'SELECT kind, amount, reference FROM credit_ledger WHERE org_id = :orgId AND message_id = :id ORDER BY id',
    { orgId: org.id, id },
  );
  return { id, message, ledger: ledger.map((r) => [r.kind, Number(r.amount), r.reference]) };
}

describe('e-mail over SMTP (EMAIL_GATEWAY=smtp)', function () {
  this.timeout(60_000);

  describe('a plain relay behind a proxy that can drop DATA', () => {
    let relay: TestRelay;
    let proxy: DroppingProxy;
    let h: ApiWithWorkers;
    before(async () => {
      relay = await startRelay({
        rcpt: (address, attempt) => {
          if (address.startsWith('busy-once@')) return attempt === 1 ? { code: 451, text: '4.7.1 Try again later' } : undefined;
          if (address.startsWith('busy@')) return { code: 452, text: '4.2.2 Mailbox full' };
          if (address.startsWith('nobody@')) return { code: 550, text: '5.1.1 No such user' };
          return undefined;
        },
      });
      proxy = await startDroppingProxy(relay.port);
      h = await startApiWithWorkers({
        ...BASE_ENV,
        SMTP_URL: `smtp://127.0.0.1:${proxy.port}`,
        SMTP_REQUIRE_TLS: 'false',
        SMTP_FROM_NAME: '{org} via Tenancy',
        SMTP_SUBJECT: 'A message from {org}',
      });
    });
    after(async () => {
      await h?.stop();
      await proxy?.close();
      await relay?.close();
    });

    it('delivers the message to its recipient with the subject, body, From and a Message-ID that is the provider id; SMS stays on GATEWAY', async () => {
      const org = await createTenant(h.api.deps, { name: `Acme SMTP ${Date.now()}`, credits: 10 });
      const before = relay.received.length;
      const body = 'Your code is 4242.\nSee you soon — ñ ü 🎉';
      const r = await sendAndSettle(h, org, 'alice@example.test', body);
      expect(r.message).to.include({ status: 'SENT', attempts: 1, errorCode: null });
      expect(r.message.providerMessageId).to.match(/^<[0-9a-f-]+-\d+@mail\.example\.test>$/);
      expect(r.ledger).to.deep.equal([['debit', -1, debitReference(r.id)]]);

      expect(relay.received).to.have.length(before + 1);
      const got = relay.received.at(-1)!;
      expect(got.from).to.equal('no-reply@mail.example.test');
      expect(got.to).to.deep.equal(['alice@example.test']);
      const orgName = (await h.api.deps.repo.get(org.id))!.name;
      expect(got.mail.subject).to.equal(`A message from ${orgName}`);
      expect(got.mail.text?.trimEnd()).to.equal(body);
      expect(got.mail.from?.value).to.deep.equal([{ address: 'no-reply@mail.example.test', name: `${orgName} via Tenancy` }]);
      expect(got.mail.to && !Array.isArray(got.mail.to) ? got.mail.to.value.map((a) => a.address) : []).to.deep.equal([
        'alice@example.test',
      ]);
      expect(got.mail.messageId).to.equal(r.message.providerMessageId);
      expect(got.mail.date).to.be.instanceOf(Date);

      const sms = await sendAndSettle(h, org, '+15551234567');
      expect(sms.message.status).to.equal('SENT');
      expect(sms.message.providerMessageId).to.match(/^sim_/);
      expect(relay.received).to.have.length(before + 1);
    });

    it('a 4xx reply is transient: retried with backoff under the same Message-ID, SENT on the next attempt, charged once', async () => {
      const org = await createTenant(h.api.deps, { credits: 10 });
      const before = relay.received.length;
      const r = await sendAndSettle(h, org, `busy-once@example.test`);
      expect(r.message).to.include({ status: 'SENT', attempts: 2 });
      expect(r.ledger).to.deep.equal([['debit', -1, debitReference(r.id)]]);
      expect(relay.received.slice(before).map((m) => m.mail.messageId)).to.deep.equal([r.message.providerMessageId]);
    });

    it('a 4xx on every attempt ends FAILED after DELIVERY_ATTEMPTS with the reply code, refunded', async () => {
      const org = await createTenant(h.api.deps, { credits: 10 });
      const r = await sendAndSettle(h, org, 'busy@example.test');
      expect(r.message).to.include({ status: 'FAILED', attempts: 3, errorCode: 'SMTP_452' });
      expect(r.message.errorText).to.contain('Mailbox full');
      expect(r.ledger).to.deep.equal([
        ['debit', -1, debitReference(r.id)],
        ['refund', 1, refundReference(r.id)],
      ]);
      expect(await h.api.deps.repo.balance(org.id)).to.equal(10);
    });

    it('a 5xx reply is permanent: FAILED at the first attempt with the reply code, refunded, nothing delivered', async () => {
      const org = await createTenant(h.api.deps, { credits: 10 });
      const before = relay.received.length;
      const r = await sendAndSettle(h, org, 'nobody@example.test');
      expect(r.message).to.include({ status: 'FAILED', attempts: 1, errorCode: 'SMTP_550' });
      expect(r.message.errorText).to.contain('No such user');
      expect(r.ledger).to.deep.equal([
        ['debit', -1, debitReference(r.id)],
        ['refund', 1, refundReference(r.id)],
      ]);
      expect(relay.received).to.have.length(before);
    });

    it('a connection dropped in the middle of DATA: transient, sent again, the mail arrives once and is charged once', async () => {
      const org = await createTenant(h.api.deps, { credits: 10 });
      const before = relay.received.length;
      const drops = proxy.drops();
      proxy.dropNext('mid-data');
      const r = await sendAndSettle(h, org, 'carol@example.test');
      expect(proxy.drops()).to.equal(drops + 1);
      expect(r.message).to.include({ status: 'SENT', attempts: 2 });
      expect(r.ledger).to.deep.equal([['debit', -1, debitReference(r.id)]]);
      expect(relay.received.slice(before).map((m) => m.mail.messageId)).to.deep.equal([r.message.providerMessageId]);
    });

    it('the relay accepted DATA but its reply was lost: sent again (SMTP cannot tell), charged once; both copies carry the same Message-ID', async () => {
      const org = await createTenant(h.api.deps, { credits: 10 });
      const before = relay.received.length;
      proxy.dropNext('before-reply');
      const r = await sendAndSettle(h, org, 'dave@example.test');
      expect(r.message).to.include({ status: 'SENT', attempts: 2 });
      expect(r.ledger).to.deep.equal([['debit', -1, debitReference(r.id)]]);
      const copies = relay.received.slice(before);
      expect(copies.map((m) => m.mail.messageId)).to.deep.equal([r.message.providerMessageId, r.message.providerMessageId]);
      expect(await h.api.deps.repo.balance(org.id)).to.equal(9);
    });
  });

  describe('TLS and login', () => {
    let tls: Awaited<ReturnType<typeof selfSignedCertificate>>;
    before(async () => {
      tls = await selfSignedCertificate();
    });

    /** One relay, one API with workers on `env`, one message to `to`; everything closed after. */
    async function sendThrough(
      relayOpts: Parameters<typeof startRelay>[0],
      env: Record<string, string>,
      logger?: ReturnType<typeof createLogger>,
    ) {
      const relay = await startRelay(relayOpts);
      const h = await startApiWithWorkers({ ...BASE_ENV, ...env, SMTP_URL: env.SMTP_URL!.replace('PORT', String(relay.port)) }, { logger });
      try {
        const org = await createTenant(h.api.deps, { credits: 10 });
        const r = await sendAndSettle(h, org, 'erin@example.test');
        return { ...r, received: relay.received };
      } finally {
        await h.stop();
        await relay.close();
      }
    }

    it('STARTTLS to a relay with a self-signed certificate is refused (SMTP_TLS_FAILED, nothing sent) until it is trusted with SMTP_CA_FILE', async () => {
      const refused = await sendThrough({ tls }, { SMTP_URL: 'smtp://127.0.0.1:PORT', DELIVERY_ATTEMPTS: '1' });
      expect(refused.message).to.include({ status: 'FAILED', errorCode: 'SMTP_TLS_FAILED' });
      expect(refused.received).to.have.length(0);

      const trusted = await sendThrough({ tls }, { SMTP_URL: 'smtp://127.0.0.1:PORT', SMTP_CA_FILE: tls.certFile });
      expect(trusted.message).to.include({ status: 'SENT', attempts: 1 });
      expect(trusted.received.map((m) => m.secure)).to.deep.equal([true]);
    });

    it('SMTP_TLS_REJECT_UNAUTHORIZED=false sends over TLS without checking the certificate (development only)', async () => {
      const r = await sendThrough({ tls }, { SMTP_URL: 'smtp://127.0.0.1:PORT', SMTP_TLS_REJECT_UNAUTHORIZED: 'false' });
      expect(r.message).to.include({ status: 'SENT' });
      expect(r.received.map((m) => m.secure)).to.deep.equal([true]);
    });

    it('smtps:// speaks TLS from the first byte, with the login from the URL', async () => {
      const r = await sendThrough(
        { tls, implicitTls: true, login: { user: 'relay-user', pass: 's3cret/pass' } },
        { SMTP_URL: 'smtps://relay-user:s3cret%2Fpass@127.0.0.1:PORT', SMTP_CA_FILE: tls.certFile },
      );
      expect(r.message).to.include({ status: 'SENT' });
      expect(r.received.map((m) => [m.secure, m.user])).to.deep.equal([[true, 'relay-user']]);
    });

    it('smtp:// refuses a relay that offers no STARTTLS (nothing sent in the clear) unless SMTP_REQUIRE_TLS=false', async () => {
      const refused = await sendThrough({}, { SMTP_URL: 'smtp://127.0.0.1:PORT', DELIVERY_ATTEMPTS: '1' });
      expect(refused.message).to.include({ status: 'FAILED', errorCode: 'SMTP_TLS_FAILED' });
      expect(refused.received).to.have.length(0);

      const plain = await sendThrough({}, { SMTP_URL: 'smtp://127.0.0.1:PORT', SMTP_REQUIRE_TLS: 'false' });
      expect(plain.message).to.include({ status: 'SENT' });
      expect(plain.received.map((m) => m.secure)).to.deep.equal([false]);
    });

    it('a refused login is transient (SMTP_AUTH_FAILED), the separate SMTP_USER / SMTP_PASS are used, and no password reaches a log line', async () => {
      const stream = new PassThrough();
      let out = '';
      stream.on('data', (d: Buffer) => (out += d.toString()));
      const logger = createLogger({ level: 'debug', stream });
      const login = { user: 'relay-user', pass: 'right-password-123' };
      const refused = await sendThrough(
        { tls, login },
        {
          SMTP_URL: 'smtp://127.0.0.1:PORT',
          SMTP_CA_FILE: tls.certFile,
          SMTP_USER: 'relay-user',
          SMTP_PASS: 'wrong-password-456',
          DELIVERY_ATTEMPTS: '2',
        },
        logger,
      );
      expect(refused.message).to.include({ status: 'FAILED', errorCode: 'SMTP_AUTH_FAILED', attempts: 2 });
      expect(refused.ledger.map((l) => l[0])).to.deep.equal(['debit', 'refund']);

      const accepted = await sendThrough(
        { tls, login },
        { SMTP_URL: 'smtp://127.0.0.1:PORT', SMTP_CA_FILE: tls.certFile, SMTP_USER: login.user, SMTP_PASS: login.pass },
        logger,
      );
      expect(accepted.message).to.include({ status: 'SENT' });
      expect(accepted.received.map((m) => m.user)).to.deep.equal(['relay-user']);
      expect(out).to.contain('message will be retried');
      for (const secret of ['wrong-password-456', 'right-password-123']) expect(out).not.to.contain(secret);
    });
  });
});
