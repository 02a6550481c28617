/** The channels come from one list of ChannelSpecs: the send schema, the cost and the type are derived from it. */
import { expect } from 'chai';
import { CHANNELS, messageCost, sendSchema } from '../../../src/messages/domain/channels/index.js';
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
});
