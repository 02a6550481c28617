/** The edge validation's rules that no route shows on its own: queries remembered by their string, failures never. */
import { expect } from 'chai';
import Joi from 'joi';
import { validated } from '../../../src/platform/http/validate.js';
import type { AppContext } from '../../../src/platform/http/types.js';

const schema = Joi.object<{ limit: number }>({ limit: Joi.number().integer().min(1).max(100).default(20) });

/** The parts of a Koa context validated() reads. */
const ctxWith = (querystring: string): AppContext =>
  ({ querystring, query: Object.fromEntries(new URLSearchParams(querystring)), request: {}, params: {} }) as unknown as AppContext;

async function run(querystring: string): Promise<{ limit: number } | { status: number; code: string }> {
  let seen: { limit: number } | undefined;
  const handler = validated({ query: schema }, (_ctx, { query }) => {
    seen = query;
  });
  try {
    await handler(ctxWith(querystring));
    return seen!;
  } catch (err) {
    const e = err as { status: number; code: string };
    return { status: e.status, code: e.code };
  }
}

describe('validated (unit)', () => {
  it('answers a query string seen before with the same converted value, frozen', async () => {
    const first = await run('limit=50');
    const again = await run('limit=50');
    expect(first).to.deep.equal({ limit: 50 });
    expect(again).to.equal(first);
    expect(Object.isFrozen(again)).to.equal(true);
    expect(await run('')).to.deep.equal({ limit: 20 });
  });

  it('refuses a bad query every time it comes (a failure is not remembered as a value)', async () => {
    for (let i = 0; i < 3; i++) expect(await run('limit=0')).to.deep.equal({ status: 400, code: 'VALIDATION_FAILED' });
    expect(await run('limit=7&extra=1')).to.deep.equal({ status: 400, code: 'VALIDATION_FAILED' });
  });

  it('keeps at most 256 query strings per schema, oldest out (a client sending new ones forever grows nothing)', async () => {
    const first = await run('limit=1');
    for (let k = 1; k <= 256; k++) await run(`limit=${'0'.repeat(k)}5`); // 256 other strings, all valid
    const again = await run('limit=1');
    expect(again).to.deep.equal(first);
    expect(again, 'validated again: it was pushed out').not.to.equal(first);
  });
});
