/**
 * Text lengths in characters (Unicode code points), as JSON Schema's maxLength counts them and as MySQL's VARCHAR(n)
 * stores them, not in UTF-16 units as joi's `max()` does: "😀" is one character, not two.
 */
import type Joi from 'joi';

/** Number of code points of `s`. */
export const charCount = (s: string): number => {
  let n = 0;
  for (const _ of s) n++;
  return n;
};

/**
 * `schema` limited to `max` characters. The limit is also in the schema's meta (`maxLength`), from which the OpenAPI
 * converter states it (src/platform/http/json-schema.ts).
 */
export function maxChars<T extends Joi.StringSchema>(schema: T, max: number): T {
  return schema
    .custom(
      (value: string, helpers) =>
        charCount(value) > max ? helpers.message({ custom: `{{#label}} must be at most ${max} characters long` }) : value,
      MAX_CHARS_RULE,
    )
    .meta({ maxLength: max });
}

/** The description of maxChars' custom rule, by which the OpenAPI converter knows it. */
export const MAX_CHARS_RULE = 'maxChars';
