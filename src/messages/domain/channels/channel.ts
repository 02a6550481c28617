/** What a channel is, in one place: how its recipient and body are checked, and what a message on it costs. */
import type Joi from 'joi';

/** The `messages.channel` column is VARCHAR(8): a channel's name must fit it. */
export const CHANNEL_NAME_MAX = 8;

export interface ChannelSpec<Name extends string = string> {
  /** The `channel` of POST /messages and of the stored row. */
  name: Name;
  /** The rule for `to` on this channel (required and a string are checked for every channel). */
  recipient: Joi.StringSchema;
  /** The rule for `body` on this channel, on top of every channel's "required, not blank". */
  body: Joi.StringSchema;
  /**
   * Optional, for the fast path of POST /messages: a plain check that answers true only where `recipient` and `body`
   * accept the values (the rules every channel shares, required and not blank, are checked by the caller). Without it
   * the fast path runs the Joi rules themselves.
   */
  accepts?: (to: string, body: string) => boolean;
  /** Credits a message with this body costs. */
  cost(body: string): number;
  /** The most a message on this channel can cost (its longest body at its dearest encoding). */
  maxCost: number;
}
