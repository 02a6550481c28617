/** The channels come from one list of ChannelSpecs: the send schema, the cost and the type are derived from it. */
import { expect } from 'chai';
import { acceptSend, CHANNELS, messageCost, sendSchema } from '../../../src/messages/domain/channels/index.js';
import { CHANNEL_NAME_MAX } from '../../../src/messages/domain/channels/channel.js';

const valid = (v: unknown) => sendSchema.validate(v, { abortEarly: false }).error?.details.map((d) => d.path.join('.')) ?? [];

describe('channels (unit)', () => {
  it('lists sms and email, each name fitting the messages.channel column', () => {
    expect(CHANNELS).to.deep.equal(['sms', 'email']);
    for (const c of CHANNELS) expect(c.length).to.be.at.most(CHANNEL_NAME_MAX);
  });

  it("applies each channel's recipient and body rules to that channel only", () => {
    expect(valid({ channel: 'sms', to: '+15551234567', body: 'hi' })).to.deep.equal([]);
    expect(valid({ channel: 'email', to: 'a@example.com', body: 'x'.repeat(2000) })).to.deep.equal([]);
    expect(valid({ channel: 'sms', to: 'a@example.com', body: 'x'.repeat(1601) })).to.deep.equal(['to', 'body']);
    expect(valid({ channel: 'email', to: '+15551234567', body: ' ' })).to.deep.equal(['to', 'body']);
  });

  it('refuses a channel that is not in the list (no rule of another channel applies to it)', () => {
    expect(valid({ channel: 'fax', to: 'a@example.com', body: 'hi' })).to.deep.equal(['channel']);
  });

  it('costs come from the channel: sms by segment, email 1', () => {
    expect(messageCost('sms', 'x'.repeat(161))).to.equal(2);
    expect(messageCost('email', 'x'.repeat(161))).to.equal(1);
  });

  it('acceptSend (the fast path) accepts only what sendSchema accepts, answering what it answers, on 20,000 seeded bodies', () => {
    // Values at the rules' edges, combined at random with a fixed seed: every accepted body must pass sendSchema
    // unchanged; valid bodies must mostly take the fast path (else it buys nothing).
    let x = 20_261_206;
    const pick = <T>(a: readonly T[]): T => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return a[(x >>> 0) % a.length]!;
    };
    const strings = [
      '',
      ' ',
      '\n',
      'hi',
      '+15551234567',
      '+1555123',
      '+123456',
      '+1234567',
      '+123456789012345',
      '+1234567890123456',
      '+05551234567',
      '15551234567',
      ' +15551234567',
      '+15551234567 ',
      'a@example.com',
      'a@b',
      'a@@example.com',
      'A@EXAMPLE.COM ',
      `${'a'.repeat(310)}@example.com`,
      `${'a'.repeat(64)}@example.com`,
      'x'.repeat(1600),
      'x'.repeat(1601),
      '😀'.repeat(1600),
      '😀'.repeat(1601),
      '\ud800',
      'é'.repeat(160),
      `${'x'.repeat(1599)}😀`,
      '+1234567\n',
      '\u00a0',
      '\t',
    ];
    const values = [...strings, 1, null, true, ['+15551234567'], { a: 1 }, undefined];
    const channels = ['sms', 'email', 'fax', 'SMS', '__proto__', 'constructor', 1, null, undefined];
    let fast = 0;
    let validCount = 0;
    for (let i = 0; i < 20_000; i++) {
      const body: Record<string, unknown> = {};
      for (const [k, v] of [
        ['channel', pick(channels)],
        ['to', pick(values)],
        ['body', pick(values)],
      ] as const)
        if (pick([true, true, true, false])) body[k] = v;
      if (pick([false, false, false, false, false, false, false, true])) body[pick(['extra', 'id', 'Channel'])] = pick(values);
      const input = pick([true, true, true, true, false]) ? body : pick([null, 'text', [body], 42, Object.create(body) as object]);
      const joi = sendSchema.validate(input, { abortEarly: false, convert: true });
      const accepted = acceptSend(input);
      if (!joi.error) validCount++;
      if (accepted === undefined) continue;
      fast++;
      expect(joi.error, JSON.stringify(input)).to.equal(undefined);
      expect(accepted).to.deep.equal(joi.value);
    }
    expect(fast).to.be.greaterThan(0.95 * validCount);
    expect(validCount).to.be.greaterThan(50);
  });
});
