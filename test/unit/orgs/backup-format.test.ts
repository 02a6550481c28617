/** The tenant backup file (src/orgs/domain/backup-format.ts): what a reader accepts and what it refuses, with which code. */
import { expect } from 'chai';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { BACKUP_FORMAT, BACKUP_FORMAT_VERSION, lineHasher, readBackup } from '../../../src/orgs/domain/backup-format.js';

const header = {
  format: BACKUP_FORMAT,
  version: BACKUP_FORMAT_VERSION,
  orgId: 7,
  orgUid: '00000000-0000-4000-8000-000000000007',
  orgName: 'Acme',
  createdAt: '2026-12-06T16:00:00.000Z',
  schema: ['20261122-0001-messages'],
  tables: [{ name: 'messages', columns: ['id', 'body', 'raw'] }],
};

/** The text of a backup whose rows are `rows` (trailer computed unless overridden). */
function backupText(rows: unknown[][], trailer: Record<string, unknown> = {}): string {
  const h = lineHasher();
  let text = h.line(JSON.stringify(header));
  for (const r of rows) text += h.line(JSON.stringify(['messages', ...r]));
  const counts = { messages: rows.length };
  return `${text}${JSON.stringify({ end: true, counts, checksums: { messages: '0' }, sha256: h.digest(), ...trailer })}\n`;
}
const stream = (data: string | Buffer) => Readable.from([typeof data === 'string' ? gzipSync(data) : data]);
async function codeOf(data: string | Buffer): Promise<string> {
  try {
    await readBackup(stream(data));
  } catch (err) {
    return (err as { code: string }).code;
  }
  throw new Error('expected a refusal');
}

describe('tenant backup file (unit)', () => {
  it('reads header, rows (in batches, binary values decoded) and trailer', async () => {
    const batches: unknown[][] = [];
    const text = backupText([
      [1, 'a', null],
      [2, 'b\n"c"', { $b64: Buffer.from([0, 255]).toString('base64') }],
      [3, 'd', null],
    ]);
    const { header: h, trailer } = await readBackup(stream(text), {
      batchRows: 2,
      onRows: async (table, rows) => void batches.push([table.name, rows.map((r) => r.id)]),
    });
    expect(h.orgId).to.equal(7);
    expect(trailer.counts).to.deep.equal({ messages: 3 });
    expect(batches).to.deep.equal([
      ['messages', [1, 2]],
      ['messages', [3]],
    ]);
    let raw: unknown;
    await readBackup(stream(text), { onRows: async (_t, rows) => void (raw ??= rows[1]?.raw) });
    expect(raw).to.deep.equal(Buffer.from([0, 255]));
  });

  it('refuses what is not a backup, a damaged one and a cut one, each with its code', async () => {
    const good = backupText([[1, 'a', null]]);
    expect(await codeOf(Buffer.from('plain text'))).to.equal('BACKUP_INVALID');
    expect(await codeOf('{"format":"something else"}\n')).to.equal('BACKUP_INVALID');
    expect(await codeOf(good.replace(`"version":${BACKUP_FORMAT_VERSION}`, '"version":99'))).to.equal('BACKUP_INVALID');
    expect(await codeOf(good.replace('"a"', '"b"')), 'a changed value').to.equal('BACKUP_CORRUPT');
    expect(await codeOf(backupText([[1, 'a', null]], { counts: { messages: 2 } })), 'counts').to.equal('BACKUP_CORRUPT');
    expect(await codeOf(`${good}["messages",2,"x",null]\n`), 'after the trailer').to.equal('BACKUP_CORRUPT');
    expect(await codeOf(backupText([['only two']])), 'a short row').to.equal('BACKUP_CORRUPT');
    expect(await codeOf(good.split('\n').slice(0, 2).join('\n') + '\n'), 'no trailer').to.equal('BACKUP_TRUNCATED');
    expect(await codeOf(good.slice(0, good.length - 20)), 'a cut line').to.equal('BACKUP_TRUNCATED');
    const gz = gzipSync(good);
    expect(await codeOf(gz.subarray(0, gz.length - 10)), 'a cut gzip stream').to.equal('BACKUP_TRUNCATED');
  });
});
