/**
 * The channels, derived from one list of ChannelSpecs: the Channel type, the send schema (and through it the OpenAPI
 * document), the cost. Adding a channel is one file and one entry here.
 */
import Joi from 'joi';
import { CHANNEL_NAME_MAX, type ChannelSpec } from './channel.js';
import { emailChannel } from './email.channel.js';
import { smsChannel } from './sms.channel.js';

const SPECS = [smsChannel, emailChannel] as const;

export type Channel = (typeof SPECS)[number]['name'];
/** Every channel's name. */
export const CHANNELS: readonly Channel[] = SPECS.map((c) => c.name);

const byName = new Map<string, ChannelSpec>(SPECS.map((c) => [c.name, c]));
for (const name of CHANNELS) if (name.length > CHANNEL_NAME_MAX) throw new Error(`channel name ${name} is longer than its column`);

/** The most any message can cost: a balance below it may not cover the next message. */
export const MAX_MESSAGE_COST = Math.max(...SPECS.map((c) => c.maxCost));

/** Credits a message costs. */
export function messageCost(channel: Channel, body: string): number {
  return byName.get(channel)!.cost(body);
}

/** What POST /messages takes. */
export interface SendInput {
  to: string;
  channel: Channel;
  body: string;
}

/**
 * `POST /messages`: a known channel, a recipient and a non-blank body by that channel's rules, nothing else. One
 * `when` per channel and no `otherwise`: a channel's rules never apply to another.
 */
export const sendSchema = Joi.object<SendInput>({
  channel: Joi.string()
    .valid(...CHANNELS)
    .required(),
  to: SPECS.reduce((rule, c) => rule.when('channel', { is: c.name, then: c.recipient }), Joi.string().required()),
  body: SPECS.reduce(
    (rule, c) => rule.when('channel', { is: c.name, then: c.body }),
    Joi.string().required().pattern(/\S/, 'non-blank text'),
  ),
}).required();
