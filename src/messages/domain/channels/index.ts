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

/** Every channel's rules for `to` and `body`, on which each channel's own are added. */
const TO_RULE = Joi.string().required();
const NOT_BLANK = /\S/;
const BODY_RULE = Joi.string().required().pattern(NOT_BLANK, 'non-blank text');

/**
 * `POST /messages`: a known channel, a recipient and a non-blank body by that channel's rules, nothing else. One
 * `when` per channel and no `otherwise`: a channel's rules never apply to another.
 */
export const sendSchema = Joi.object<SendInput>({
  channel: Joi.string()
    .valid(...CHANNELS)
    .required(),
  to: SPECS.reduce((rule, c) => rule.when('channel', { is: c.name, then: c.recipient }), TO_RULE),
  body: SPECS.reduce((rule, c) => rule.when('channel', { is: c.name, then: c.body }), BODY_RULE),
}).required();

/** What `sendSchema` applies to `to` and `body` once `channel` names a channel: the same rules, resolved once. */
const ACCEPT = { abortEarly: true, convert: false } as const;
// The preferences are the rules' own (joi merges options passed to validate() on every call; its own, once).
const FIELD_RULES = new Map(
  SPECS.map((c) => [
    c.name as string,
    { to: TO_RULE.concat(c.recipient).prefs(ACCEPT), body: BODY_RULE.concat(c.body).prefs(ACCEPT), accepts: c.accepts },
  ]),
);
const SEND_KEYS = ['channel', 'to', 'body'];

/**
 * The common case of `sendSchema` without its object and `when`s (which cost a POST more than its INSERT, measured
 * in docs/benchmarks.md): a plain object of exactly `channel`, `to` and `body`, a known channel, and each field
 * passing that channel's rules (its plain `accepts` check where it has one, else the same Joi rules, resolved once). Answers the input itself, which is what
 * `sendSchema` answers for it (its rules convert nothing); anything else answers undefined, and the caller validates
 * with `sendSchema` for the exact errors. test/unit/messages/channels.test.ts checks the two agree.
 */
export function acceptSend(value: unknown): SendInput | undefined {
  if (typeof value !== 'object' || value === null || Object.getPrototypeOf(value) !== Object.prototype) return undefined;
  const keys = Object.keys(value);
  if (keys.length !== SEND_KEYS.length || !SEND_KEYS.every((k) => keys.includes(k))) return undefined;
  const { channel, to, body } = value as Record<string, unknown>;
  const rules = typeof channel === 'string' ? FIELD_RULES.get(channel) : undefined;
  if (!rules || typeof to !== 'string' || typeof body !== 'string') return undefined;
  const ok = rules.accepts
    ? NOT_BLANK.test(body) && rules.accepts(to, body)
    : !(rules.to.validate(to).error || rules.body.validate(body).error);
  if (!ok) return undefined;
  return value as SendInput;
}
