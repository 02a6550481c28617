/** SQL identifiers: checked against a strict pattern before any DDL (which cannot take placeholders for names). */

const IDENTIFIER = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

/** Throws unless `name` is a plain identifier; returns it. */
export function assertIdentifier(name: string): string {
  if (!IDENTIFIER.test(name)) throw new Error(`unsafe SQL identifier: ${JSON.stringify(name)}`);
  return name;
}

/** Back-quotes an identifier that passed assertIdentifier (DDL cannot take placeholders for names). */
export function quoteIdentifier(name: string): string {
  return `\`${assertIdentifier(name)}\``;
}
