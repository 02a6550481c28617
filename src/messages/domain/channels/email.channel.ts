/** E-mail: an address, a body of at most 100 KiB of UTF-8, one credit per message. */
import Joi from 'joi';
import { maxChars } from '../../../platform/lib/text-rules.js';
import type { ChannelSpec } from './channel.js';

/** Largest e-mail body, in UTF-8 bytes. */
export const EMAIL_BODY_MAX_BYTES = 100 * 1024;

/** The email channel. */
export const emailChannel: ChannelSpec<'email'> = {
  name: 'email',
  recipient: maxChars(Joi.string().email({ tlds: { allow: false } }), 320),
  body: Joi.string().custom((value: string, helpers) =>
    Buffer.byteLength(value, 'utf8') > EMAIL_BODY_MAX_BYTES
      ? helpers.message({ custom: `"body" must be at most ${EMAIL_BODY_MAX_BYTES} bytes for email` })
      : value,
  ),
  cost: () => 1,
  maxCost: 1,
};
