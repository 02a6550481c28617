/**
 * The tenant lifecycle (issue 21, items 2-5) through the CLI as a child process and the HTTP API: backup and restore
 * (a snapshot given back, bad files refused with nothing changed, an older schema migrated forward), clone, export,
 * and offboarding (drop keeps the database for the retention period, undrop, purge).
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { Deps } from '../../src/deps.js';
import { RUN, cli, rootDb, rows, startApi, uniqueName, type CliResult, type TestApi } from '../helpers.js';

const SHARED = `${RUN}_shared`;
/** The CLI's processes: a short org cache (the old copy's grace follows it) and backups in a directory of this run. */
const BACKUP_DIR = mkdtempSync(path.join(tmpdir(), `${RUN}-backups-`));
const ENV = { ORG_CACHE_TTL_MS: '300', BACKUP_DIR };

type Tenant = { id: number; apiKey: string; dbName: string };

/** The error of a failed `--json` command: its last stdout line. */
const errorOf = (r: CliResult) =>
  (JSON.parse(r.stdout.trimEnd().split('\n').at(-1)!) as { error: { code: string; message: string } }).error;

describe('tenant lifecycle: backup, restore, clone, export, offboarding', function () {
  this.timeout(120_000);
  let api: TestApi;
  let admin: Deps;
  const root = rootDb();

  const run = (args: string[]) => cli(args, ENV);
  const orgRow = async (id: number) =>
    (await rows(root, `SELECT * FROM \`${SHARED}\`.orgs WHERE id = :id`, { id }))[0] as Record<string, unknown>;
  const databases = async (like: string) =>
    (
      await rows<{ name: string }>(root, 'SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE :like', {
        like,
      })
    ).map((r) => r.name);
  const users = async (like: string) =>
    await rows<{ user: string; locked: string }>(
      root,
      "SELECT User AS user, JSON_VALUE(Priv, '$.account_locked') AS locked FROM mysql.global_priv WHERE User LIKE :like",
      { like },
    );

  /** A tenant with messages sent through the API, alternating sms and email. */
  async function tenantWithMessages(n: number, credits = 1000): Promise<Tenant> {
    const { org, apiKey } = await admin.orgs.create({ name: uniqueName('life'), credits });
    const t = { id: org.id, apiKey: apiKey!, dbName: org.dbName! };
    for (let i = 0; i < n; i++) await send(t, i);
    return t;
  }
  async function send(t: Tenant, i: number) {
    const body =
      i % 2 === 0
        ? { to: '+15551230000', channel: 'sms', body: `sms ${i} ✓` }
        : { to: 'someone@example.com', channel: 'email', body: `email ${i}\nline two "quoted"` };
    const r = await api.request('POST', '/messages', { org: t, body });
    expect(r.status, JSON.stringify(r.body)).to.equal(202);
    return r.body.message.id as number;
  }
  const list = async (t: Tenant) => {
    const r = await api.request('GET', '/messages?limit=100', { org: t });
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    return r.body as { id: number; channel: string; body: string; status: string }[];
  };
  const balance = async (t: Tenant) => (await api.request('GET', '/org', { org: t })).body.org.creditBalance as number;

  before(async () => {
    api = await startApi({ ORG_CACHE_TTL_MS: '300' });
    admin = api.deps;
  });
  after(async () => {
    await api.stop();
    await root.close();
    rmSync(BACKUP_DIR, { recursive: true, force: true });
  });

  describe('backup and restore', () => {
    it('backup → change → restore gives back the snapshot: the same rows through the API, the same key and balance, new ids past the old ones, the old copy dropped', async () => {
      const t = await tenantWithMessages(6);
      const snapshot = await list(t);
      const b = await run(['backup', String(t.id), '--json']);
      expect(b.code, b.stderr).to.equal(0);
      expect(b.json.rows).to.deep.equal({ messages: 6 });
      expect(b.json.file.startsWith(BACKUP_DIR)).to.equal(true);
      expect(b.json.schemaVersion).to.match(/^\d{8}-\d{4}-/);

      // Changes after the snapshot: two more messages, a grant.
      await send(t, 6);
      await send(t, 7);
      expect((await run(['credits', String(t.id), '50'])).code).to.equal(0);
      const balanceBefore = await balance(t);
      const oldDb = String((await orgRow(t.id)).db_name);

      const r = await run(['restore', String(t.id), '--from', path.basename(b.json.file as string), '--json']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.json).to.include({ orgId: t.id, backupOrgId: t.id, server: 'default', oldCopyDropped: true });
      expect(r.json.rows).to.deep.equal({ messages: 6 });

      const restored = await list(t); // the same API key
      expect(restored).to.deep.equal(snapshot);
      expect(new Set(restored.map((m) => m.channel))).to.deep.equal(new Set(['sms', 'email']));
      expect(await balance(t), 'the balance lives in the shared DB and is kept').to.equal(balanceBefore);
      const row = await orgRow(t.id);
      expect(row.db_name).to.not.equal(oldDb);
      expect(await databases(oldDb), 'old copy dropped after the grace').to.deep.equal([]);
      expect((await users(oldDb)).length, 'old user dropped').to.equal(0);
      // The tenant works, and an id is never given twice (the two messages sent after the snapshot had ids 7 and 8).
      const id = await send(t, 8);
      expect(id).to.be.above(8);
      expect((await list(t)).length).to.equal(7);
    });

    it('a backup of an older schema version is migrated forward on restore', async () => {
      const t = await tenantWithMessages(2);
      const rb = await run(['rollback', '--tenant', String(t.id), '--json']);
      expect(rb.code, rb.stderr).to.equal(0);
      const b = await run(['backup', String(t.id), '--to', 'older.jsonl.gz', '--json']);
      expect(b.code, b.stderr).to.equal(0);
      expect(b.json.schemaVersion).to.equal('20261122-0001-messages');
      const r = await run(['restore', String(t.id), '--from', 'older.jsonl.gz', '--json']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.json.schemaVersion).to.deep.equal({ backup: '20261122-0001-messages', now: '20261123-0001-pending-index' });
      const db = String((await orgRow(t.id)).db_name);
      const index = await rows(root, 'SELECT 1 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = :db AND INDEX_NAME = :i', {
        db,
        i: 'messages_status_updated_at',
      });
      expect(index.length).to.be.above(0);
      expect((await list(t)).length).to.equal(2);
    });

    it('a corrupted, truncated, altered, foreign or non-backup file is refused with its code and exit 1, and changes nothing', async () => {
      const a = await tenantWithMessages(4);
      const t = await tenantWithMessages(4);
      const before = { org: await orgRow(t.id), messages: await list(t) };
      const good = await run(['backup', String(t.id), '--to', 'good.jsonl.gz', '--json']);
      const other = await run(['backup', String(a.id), '--to', 'other.jsonl.gz', '--json']);
      expect([good.code, other.code]).to.deep.equal([0, 0]);
      const bytes = readFileSync(good.json.file as string);
      const file = (name: string, data: Buffer | string) => writeFileSync(path.join(BACKUP_DIR, name), data);
      const flipped = Buffer.from(bytes);
      flipped[Math.floor(flipped.length / 2)]! ^= 0xff;
      file('flipped.gz', flipped);
      file('half.gz', bytes.subarray(0, Math.floor(bytes.length / 2)));
      const text = gunzipSync(bytes).toString();
      file('altered.gz', gzipSync(text.replace('sms 0', 'sms X')));
      file('no-trailer.gz', gzipSync(text.split('\n').slice(0, -2).join('\n') + '\n'));
      file('text.txt', 'hello, I am not a backup\n');
      file('json.gz', gzipSync('{"some":"json"}\n'));

      const cases: [string, string][] = [
        ['flipped.gz', 'BACKUP_CORRUPT'],
        ['half.gz', 'BACKUP_TRUNCATED'],
        ['altered.gz', 'BACKUP_CORRUPT'],
        ['no-trailer.gz', 'BACKUP_TRUNCATED'],
        ['text.txt', 'BACKUP_INVALID'],
        ['json.gz', 'BACKUP_INVALID'],
        ['other.jsonl.gz', 'BACKUP_FOREIGN'],
        ['missing.gz', 'BACKUP_NOT_FOUND'],
      ];
      for (const [name, code] of cases) {
        const r = await run(['restore', String(t.id), '--from', name, '--json']);
        expect([r.code, errorOf(r).code], `${name}: ${r.stderr}`).to.deep.equal([1, code]);
      }
      expect(await orgRow(t.id)).to.deep.equal(before.org);
      expect(await list(t)).to.deep.equal(before.messages);
      expect(await databases(`${t.dbName}\\_r%`), 'no fresh database left').to.deep.equal([]);
      expect(await users(`${t.dbName}\\_r%`), 'no fresh user left').to.deep.equal([]);
    });
  });
});
