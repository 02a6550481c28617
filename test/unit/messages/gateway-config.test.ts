import { expect } from 'chai';
import { ConfigError, DEV_GATEWAY_SECRET, loadConfig } from '../../../config/config.js';
import { classifySmtpError, smtpMessageId } from '../../../src/messages/gateway/smtp.gateway.js';
import { PermanentGatewayError, TransientGatewayError } from '../../../src/messages/gateway/gateway.js';

/** The problem lines of an environment that must be refused. */
function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

const SMTP = { EMAIL_GATEWAY: 'smtp', SMTP_URL: 'smtp://relay.example.test', SMTP_FROM: 'no-reply@example.test' };

describe('gateway configuration', () => {
  it('GATEWAY is every channel default; SMS_GATEWAY and EMAIL_GATEWAY override it per channel', () => {
    expect(loadConfig({}).channelGateways).to.deep.equal({ sms: 'simulated', email: 'simulated' });
    expect(loadConfig({ GATEWAY: 'http', GATEWAY_URL: 'https://p.example.test' }).channelGateways).to.deep.equal({
      sms: 'http',
      email: 'http',
    });
    const c = loadConfig({ ...SMTP, SMS_GATEWAY: 'http', GATEWAY_URL: 'https://p.example.test' });
    expect(c.channelGateways).to.deep.equal({ sms: 'http', email: 'smtp' });
    expect(c.gateway).to.equal('simulated');
  });

  it('EMAIL_GATEWAY=smtp: defaults for the pool, timeouts, STARTTLS and certificate checks', () => {
    expect(loadConfig(SMTP).smtp).to.deep.equal({
      url: 'smtp://relay.example.test',
      from: 'no-reply@example.test',
      subject: 'Message from {org}',
      poolMax: 5,
      timeoutMs: 30_000,
      requireTls: true,
      tlsRejectUnauthorized: true,
    });
    expect(loadConfig({}).smtp).to.equal(undefined);
  });

  it('EMAIL_GATEWAY=smtp without SMTP_URL or SMTP_FROM: one line each', () => {
    expect(problems({ EMAIL_GATEWAY: 'smtp' })).to.deep.equal([
      'SMTP_URL: is required when EMAIL_GATEWAY=smtp',
      'SMTP_FROM: is required when EMAIL_GATEWAY=smtp',
    ]);
  });

  it('GATEWAY=smtp is refused with a pointer to EMAIL_GATEWAY (SMS cannot go over SMTP), and SMS_GATEWAY=smtp too', () => {
    expect(problems({ GATEWAY: 'smtp' })).to.deep.equal([
      'GATEWAY: must be simulated or http (smtp carries e-mail only: set EMAIL_GATEWAY=smtp)',
    ]);
    expect(problems({ SMS_GATEWAY: 'smtp' })[0]).to.match(/^SMS_GATEWAY: /);
  });

  it('a bad SMTP_URL is refused without echoing it (it may hold a password)', () => {
    const lines = problems({ ...SMTP, SMTP_URL: 'http://user:hunter2-secret@relay.example.test' });
    expect(lines).to.have.length(1);
    expect(lines[0]).to.match(/^SMTP_URL: /);
    expect(lines[0]).not.to.contain('hunter2');
  });

  it('SMTP_FROM must be an address; SMTP_CA_FILE must exist', () => {
    expect(problems({ ...SMTP, SMTP_FROM: 'not an address' })[0]).to.match(/^SMTP_FROM: /);
    expect(problems({ ...SMTP, SMTP_CA_FILE: '/nonexistent/ca.pem' })).to.deep.equal(['SMTP_CA_FILE: the file does not exist']);
  });

  it('a channel on the http provider needs GATEWAY_URL, and in production its own GATEWAY_SECRET', () => {
    expect(problems({ SMS_GATEWAY: 'http' })).to.deep.equal(['GATEWAY_URL: is required when SMS_GATEWAY or EMAIL_GATEWAY is http']);
    const prod = { NODE_ENV: 'production', ADMIN_TOKEN: 'a'.repeat(20), SECRET_KEY: 'b'.repeat(40), GATEWAY_URL: 'https://p.example.test' };
    expect(problems({ ...prod, HOST: '127.0.0.1', EMAIL_GATEWAY: 'http' })).to.deep.equal([
      'GATEWAY_SECRET: is required (not the development default) when SMS_GATEWAY or EMAIL_GATEWAY is http in production',
    ]);
    // On a public interface the development secret is named once, by the rule about exposed secrets.
    expect(problems({ ...prod, EMAIL_GATEWAY: 'http' })).to.have.length(1);
    expect(problems({ ...prod, EMAIL_GATEWAY: 'http' })[0]).to.match(/^GATEWAY_SECRET: is the public development default/);
    expect(loadConfig({ ...prod, EMAIL_GATEWAY: 'http', GATEWAY_SECRET: 'c'.repeat(20) }).gatewayOptions.secret).not.to.equal(
      DEV_GATEWAY_SECRET,
    );
  });
});

describe('SMTP replies → gateway errors', () => {
  const err = (props: Record<string, unknown>) => Object.assign(new Error('relay said no'), props);

  it('4xx and 503 are transient, other 5xx permanent, each with its reply code', () => {
    for (const [responseCode, permanent] of [
      [421, false],
      [451, false],
      [452, false],
      [503, false],
      [550, true],
      [554, true],
    ] as const) {
      const e = classifySmtpError(err({ code: 'EENVELOPE', responseCode }));
      expect([e.code, e instanceof PermanentGatewayError]).to.deep.equal([`SMTP_${responseCode}`, permanent]);
    }
  });

  it('a lost connection, a timeout, a refused login or a TLS failure is transient; a malformed envelope is permanent', () => {
    const cases: [Record<string, unknown>, string, boolean][] = [
      [{ code: 'ECONNECTION' }, 'SMTP_CONNECTION_FAILED', false],
      [{ code: 'ESOCKET', originalCode: 'ECONNREFUSED' }, 'SMTP_CONNECTION_FAILED', false],
      [{ code: 'ETIMEDOUT' }, 'SMTP_TIMEOUT', false],
      [{ code: 'EABORT' }, 'SMTP_TIMEOUT', false],
      [{ code: 'EAUTH', responseCode: 535 }, 'SMTP_AUTH_FAILED', false],
      [{ code: 'ETLS', responseCode: 500 }, 'SMTP_TLS_FAILED', false],
      [{ code: 'ESOCKET', originalCode: 'DEPTH_ZERO_SELF_SIGNED_CERT' }, 'SMTP_TLS_FAILED', false],
      [{ code: 'EENVELOPE' }, 'SMTP_INVALID_ENVELOPE', true],
      [{}, 'SMTP_ERROR', false],
    ];
    for (const [props, code, permanent] of cases) {
      const e = classifySmtpError(err(props));
      expect([e.code, e instanceof PermanentGatewayError, e instanceof TransientGatewayError]).to.deep.equal([code, permanent, !permanent]);
    }
  });

  it('the Message-ID is the idempotency key at the From domain: the same on every attempt', () => {
    expect(smtpMessageId('0f3c-7', 'no-reply@mail.example.test')).to.equal('<0f3c-7@mail.example.test>');
  });
});
