/**
 * joi → JSON Schema 2020-12 (OpenAPI 3.1): joi-to-json, plus the few joi features it cannot express, fixed from joi's
 * own `describe()`. Knows nothing of the API it describes.
 */
import Joi from 'joi';
import joiToJson from 'joi-to-json';
import { MAX_CHARS_RULE } from '../lib/text-rules.js';

/** A JSON Schema, as plain data. */
export type JsonSchema = { [keyword: string]: unknown };

// The package is `module.exports = parse`; its typings declare an ES default export instead.
const parse = joiToJson as unknown as (schema: Joi.Schema, mode: 'open-api-3.1') => JsonSchema;

/** What `describe()` tells of a joi schema, as far as the fixes below read it. */
interface Described {
  type?: string;
  flags?: { presence?: string };
  rules?: {
    name: string;
    args?: { regex?: string; limit?: number; description?: string; options?: { scheme?: string[]; allowUnicode?: boolean } };
  }[];
  metas?: { maxLength?: number }[];
  keys?: Record<string, Described>;
  whens?: { ref?: { path: string[]; ancestor?: number }; is?: unknown; then?: unknown; otherwise?: unknown; switch?: unknown }[];
}

/** A joi schema as JSON Schema 2020-12. Throws on a condition it cannot state (fail at start-up, not in the docs). */
export function toJsonSchema(schema: Joi.Schema): JsonSchema {
  const described = schema.describe() as Described;
  const json = parse(schema, 'open-api-3.1');
  fixPatterns(json, described);
  complete(json, described);
  return json;
}

/** joi-to-json keeps a regex's flags in the pattern (`^a$/u`): restore the source; JSON Schema regexes are unicode already. */
function fixPatterns(json: JsonSchema, described: Described): void {
  const sources = new Map<string, string>();
  JSON.stringify(described, (_key, value: unknown) => {
    const regex = (value as { name?: string; args?: { regex?: string } } | null)?.args?.regex;
    const m = regex === undefined ? null : /^\/(.*)\/([a-z]*)$/s.exec(regex);
    if (m && (value as { name?: string }).name === 'pattern') {
      if (m[2]!.replace('u', '') !== '') throw new Error(`openapi: regex flags "${m[2]}" of ${regex} have no JSON Schema form`);
      sources.set(`${m[1]}/${m[2]}`.replace(/\/$/, ''), m[1]!);
    }
    return value;
  });
  JSON.stringify(json, (_key, value: unknown) => {
    const node = value as JsonSchema | null;
    if (node && typeof node.pattern === 'string') node.pattern = sources.get(node.pattern) ?? node.pattern;
    return value;
  });
}

/** Adds what joi-to-json leaves out: conditions on a sibling key, key counts; trimming, URI schemes, custom rules as notes. */
function complete(json: JsonSchema, described: Described): void {
  const note = (text: string) => (json.description = [json.description, text].filter(Boolean).join(' '));
  for (const rule of described.rules ?? []) {
    if (described.type === 'object' && rule.name === 'min') json.minProperties = rule.args!.limit;
    if (described.type === 'object' && rule.name === 'max') json.maxProperties = rule.args!.limit;
    if (rule.name === 'trim') note('Surrounding whitespace is trimmed before the checks.');
    if (rule.name === 'uri' && rule.args?.options?.scheme) note(`Scheme: ${rule.args.options.scheme.join(' or ')}.`);
    // joi allows non-ASCII addresses unless told otherwise: JSON Schema's `email` is ASCII only.
    if (rule.name === 'email') json.format = rule.args?.options?.allowUnicode === false ? 'email' : 'idn-email';
    if (rule.name === 'custom' && rule.args?.description !== MAX_CHARS_RULE)
      note('The server also applies a rule JSON Schema cannot state (see the operation).');
  }
  // maxChars() (src/platform/lib/text-rules.ts): a length in characters, as JSON Schema counts them.
  for (const meta of described.metas ?? []) if (meta.maxLength !== undefined) json.maxLength = meta.maxLength;
  const properties = (json.properties ?? {}) as Record<string, JsonSchema>;
  const conditions: JsonSchema[] = [];
  for (const [key, child] of Object.entries(described.keys ?? {})) {
    complete(properties[key]!, child);
    if (!child.whens) continue;
    // A `when(sibling, {is, then, otherwise})` comes out as a oneOf of then/otherwise, which loses the condition
    // (and refuses values both branches accept): state it as if/then/else on the object instead.
    delete properties[key]!.oneOf;
    delete properties[key]!.allOf;
    for (const when of child.whens) {
      const sibling = when.ref?.path;
      if (!sibling || sibling.length !== 1 || (when.ref!.ancestor ?? 1) !== 1 || when.switch || !when.is)
        throw new Error(`openapi: the condition on "${key}" is not a when() on a sibling key`);
      const is = Joi.build(when.is) as Joi.Schema;
      const branch = (s: unknown) => ({ properties: { [key]: toJsonSchema(Joi.build(s) as Joi.Schema) } });
      conditions.push({
        if: {
          properties: { [sibling[0]!]: toJsonSchema(is) },
          ...((is.describe() as Described).flags?.presence === 'required' ? { required: sibling } : {}),
        },
        ...(when.then === undefined ? {} : { then: branch(when.then) }),
        ...(when.otherwise === undefined ? {} : { else: branch(when.otherwise) }),
      });
    }
  }
  if (conditions.length) json.allOf = [...((json.allOf as JsonSchema[] | undefined) ?? []), ...conditions];
}

/** Query or path parameters, one per key of a joi object schema. */
export function parametersOf(schema: Joi.Schema, where: 'query' | 'path'): JsonSchema[] {
  const json = toJsonSchema(schema);
  const required = (json.required as string[] | undefined) ?? [];
  return Object.entries(json.properties as Record<string, JsonSchema>).map(([name, s]) => ({
    name,
    in: where,
    required: where === 'path' || required.includes(name),
    schema: s,
  }));
}
