/**
 * SMS: an E.164 recipient, a body of at most 1,600 characters, one credit per segment — GSM-7 text fits 160 characters
 * in one segment and 153 per segment when split (extension characters such as `€ [ ] { }` take two); anything outside
 * GSM-7 is sent as UCS-2: 70 in one segment, 67 per segment when split (counted in UTF-16 units).
 */
import Joi from 'joi';
import { charCount, maxChars } from '../../../platform/lib/text-rules.js';
import type { ChannelSpec } from './channel.js';

/** GSM 03.38's basic character set (one septet each) and its extension table (two: the escape and the character). */
export const GSM_BASIC_CHARS =
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
export const GSM_EXTENSION_CHARS = '^{}\\[~]|€\f';

const GSM_BASIC = new Set(GSM_BASIC_CHARS);
const GSM_EXTENSION = new Set(GSM_EXTENSION_CHARS);

export interface SmsEncoding {
  encoding: 'GSM-7' | 'UCS-2';
  /** Septets (GSM-7) or UTF-16 code units (UCS-2). */
  units: number;
  segments: number;
}

/** How an SMS body is encoded and how many segments it needs. */
export function smsEncoding(body: string): SmsEncoding {
  let septets = 0;
  for (const ch of body) {
    if (GSM_BASIC.has(ch)) septets += 1;
    else if (GSM_EXTENSION.has(ch)) septets += 2;
    else return { encoding: 'UCS-2', units: body.length, segments: segmentsOf(body.length, 70, 67) };
  }
  return { encoding: 'GSM-7', units: septets, segments: segmentsOf(septets, 160, 153) };
}

function segmentsOf(units: number, single: number, multi: number): number {
  return units <= single ? 1 : Math.ceil(units / multi);
}

/** Longest SMS body, in characters. */
const SMS_BODY_MAX_CHARS = 1600;

const E164 = /^\+[1-9][0-9]{6,14}$/;

/** The sms channel. */
export const smsChannel: ChannelSpec<'sms'> = {
  name: 'sms',
  recipient: Joi.string().pattern(E164, 'E.164 phone number'),
  body: maxChars(Joi.string(), SMS_BODY_MAX_CHARS),
  // The two rules above, without Joi (a POST's Joi rules cost more than its cost count): no string has more characters than UTF-16 units.
  accepts: (to, body) => E164.test(to) && (body.length <= SMS_BODY_MAX_CHARS || charCount(body) <= SMS_BODY_MAX_CHARS),
  cost: (body) => smsEncoding(body).segments,
  // 1,600 characters outside the BMP: 3,200 UTF-16 units of UCS-2.
  maxCost: segmentsOf(2 * SMS_BODY_MAX_CHARS, 70, 67),
};
