/** The error catalogue is complete (every code thrown in src/ is in it, nothing else is) and the docs show it as it is. */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { ERROR_CATALOGUE } from '../../../src/app/error-catalogue.js';
import { ERRORS_DOC, withCatalogue } from '../../../scripts/write-error-docs.js';

const SRC = fileURLToPath(new URL('../../../src/', import.meta.url));
/**
 * Not part of the HTTP catalogue: message error codes (stored on a message by the gateways) and the CLI's own process
 * errors (`INVALID_CONFIGURATION`, documented in docs/operations.md).
 */
const NOT_HTTP = ['gateway', 'cli'];
const FACTORY = /\b(badRequest|unauthorized|paymentRequired|forbidden|notFound|conflict|unprocessable|unavailable)\(\s*'([A-Z][A-Z_]+)'/g;
const CODE_FIELD = /\bcode:\s*'([A-Z][A-Z_]+)'/g;
const STATUS_MAP = /^\s*\d{3}: '([A-Z][A-Z_]+)'/gm;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return NOT_HTTP.includes(name) ? [] : sources(full);
    return name.endsWith('.ts') && name !== 'error-catalogue.ts' ? [full] : [];
  });
}

/** Every error code the source answers with: factory calls, `code:` fields, the status → code map of the edge. */
function thrownCodes(): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(FACTORY)) found.set(m[2]!, path.relative(SRC, file));
    for (const m of text.matchAll(CODE_FIELD)) found.set(m[1]!, path.relative(SRC, file));
    for (const m of text.matchAll(STATUS_MAP)) found.set(m[1]!, path.relative(SRC, file));
  }
  return found;
}

describe('error catalogue (unit)', () => {
  it('lists every code thrown in src/ (the scan finds the codes it should)', () => {
    const thrown = thrownCodes();
    expect(thrown.size).to.be.above(30);
    const missing = [...thrown.keys()].filter((c) => !(c in ERROR_CATALOGUE)).map((c) => `${c} (${thrown.get(c)})`);
    expect(missing, 'codes thrown but not in src/app/error-catalogue.ts').to.deep.equal([]);
  });

  it('lists no code that nothing throws', () => {
    const thrown = thrownCodes();
    expect(
      Object.keys(ERROR_CATALOGUE).filter((c) => !thrown.has(c)),
      'stale catalogue entries',
    ).to.deep.equal([]);
  });

  it("gives each code thrown by a status factory that factory's status", () => {
    const STATUS: Record<string, number> = {
      badRequest: 400,
      unauthorized: 401,
      paymentRequired: 402,
      forbidden: 403,
      notFound: 404,
      conflict: 409,
      unprocessable: 422,
      unavailable: 503,
    };
    for (const file of sources(SRC))
      for (const m of readFileSync(file, 'utf8').matchAll(FACTORY))
        expect(ERROR_CATALOGUE[m[2]!]?.status, `${m[2]} in ${file}`).to.equal(STATUS[m[1]!]);
  });

  it('gives each code one status, a 4xx or 5xx, and a meaning', () => {
    for (const [code, e] of Object.entries(ERROR_CATALOGUE)) {
      expect(e.status, code).to.be.within(400, 599);
      expect(e.meaning, code).to.be.a('string').with.length.above(5);
    }
  });

  it('docs/architecture.md shows the catalogue as it is (npm run docs:errors)', () => {
    const doc = readFileSync(ERRORS_DOC, 'utf8');
    expect(doc).to.equal(withCatalogue(doc));
  });
});
