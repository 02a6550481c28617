/**
 * The tenant lifecycle (issue 21, items 2-5) through the CLI as a child process and the HTTP API: backup and restore
 * (a snapshot given back, bad files refused with nothing changed, an older schema migrated forward), clone, export,
 * and offboarding (drop keeps the database for the retention period, undrop, purge).
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { Deps } from '../../src/deps.js';
import {
  ROOT,
  RUN,
  TEST_ENV,
  cli,
  eventually,
  rootDb,
  rows,
  startApi,
  startApiWithWorkers,
  uniqueName,
  type CliResult,
  type TestApi,
} from '../helpers.js';

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

    it('a backup taken while the tenant writes: every write is accepted meanwhile, and the file is one snapshot (messages 1..N, no gap)', async () => {
      const t = await tenantWithMessages(20);
      let writing = true;
      const statuses: number[] = [];
      // One writer, one message at a time: ids are committed in order, so any snapshot holds a prefix of them.
      const writer = (async () => {
        for (let i = 20; writing; i++)
          statuses.push(
            (await api.request('POST', '/messages', { org: t, body: { to: '+15551230000', channel: 'sms', body: `w${i}` } })).status,
          );
      })();
      const b = await run(['backup', String(t.id), '--to', `writing-${t.id}.jsonl.gz`, '--json']);
      writing = false;
      await writer;
      expect(b.code, b.stderr).to.equal(0);
      expect(new Set(statuses)).to.deep.equal(new Set([202]));
      const ids = gunzipSync(readFileSync(b.json.file as string))
        .toString()
        .split('\n')
        .filter((l) => l.startsWith('["messages"'))
        .map((l) => (JSON.parse(l) as number[])[1]);
      expect(ids.length).to.equal(b.json.rows.messages).and.at.least(20);
      expect(ids).to.deep.equal(Array.from({ length: ids.length }, (_, i) => i + 1));
    });

    it('a restore whose process is killed after its switch: the tenant works on the restored copy, and the reconciler’s sweep drops the old copy once its grace period is over', async () => {
      const t = await tenantWithMessages(3);
      const b = await run(['backup', String(t.id), '--to', `killed-${t.id}.jsonl.gz`, '--json']);
      expect(b.code, b.stderr).to.equal(0);
      const old = await orgRow(t.id);
      // A grace of a minute: the process is killed while it waits to drop the old copy.
      const child = spawn(`${ROOT}bin/tenant`, ['restore', String(t.id), '--from', `killed-${t.id}.jsonl.gz`], {
        cwd: ROOT,
        env: { ...process.env, ...TEST_ENV, ...ENV, ORG_CACHE_TTL_MS: '60000' },
        stdio: 'ignore',
      });
      const exited = new Promise((resolve) => child.on('close', resolve));
      try {
        expect(await eventually(async () => (await orgRow(t.id)).db_name !== old.db_name, 60_000, 100)).to.equal(true);
      } finally {
        child.kill('SIGKILL');
        await exited;
      }
      expect((await orgRow(t.id)).retired_db_name).to.equal(old.db_name);
      expect(await databases(String(old.db_name)), 'the old copy is still there').to.deep.equal([old.db_name]);
      expect(await eventually(async () => (await api.request('GET', '/messages?limit=10', { org: t })).body?.length === 3)).to.equal(true);

      const stack = await startApiWithWorkers({ RECONCILE_INTERVAL_MS: '200', ORG_CACHE_TTL_MS: '300' });
      try {
        expect(await eventually(async () => (await orgRow(t.id)).retired_at === null, 30_000, 100)).to.equal(true);
      } finally {
        await stack.stop();
      }
      expect(await databases(String(old.db_name)), 'old copy dropped').to.deep.equal([]);
      expect(await users(String(old.db_user)), 'old user dropped').to.deep.equal([]);
      expect((await list(t)).length).to.equal(3);
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
      const [good, other] = await Promise.all([
        run(['backup', String(t.id), '--to', 'good.jsonl.gz', '--json']),
        run(['backup', String(a.id), '--to', 'other.jsonl.gz', '--json']),
      ]);
      expect([good.code, other.code]).to.deep.equal([0, 0]);
      const listed = await run(['backup', '--list', String(t.id), '--json']);
      expect(listed.json.backups.map((b: { name: string }) => b.name)).to.deep.equal([]); // named by --to, not org-<id>-…
      const named = await run(['backup', String(t.id), '--json']);
      expect((await run(['backup', '--list', String(t.id), '--json'])).json.backups.map((b: { name: string }) => b.name)).to.deep.equal([
        path.basename(named.json.file as string),
      ]);
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
      // Refused before anything is touched (no lock taken): run side by side, with the other bad inputs of these commands.
      const results = await Promise.all(cases.map(([name]) => run(['restore', String(t.id), '--from', name, '--json'])));
      results.forEach((r, i) => expect([r.code, errorOf(r).code], `${cases[i]![0]}: ${r.stderr}`).to.deep.equal([1, cases[i]![1]]));
      const bad: [string[], number, string][] = [
        [['restore', String(t.id), '--from', 'good.jsonl.gz', '--to-server', 'nosuch'], 1, 'SERVER_NOT_FOUND'],
        [['restore', String(t.id)], 2, 'USAGE'],
        [['restore', '999999', '--from', 'good.jsonl.gz'], 1, 'ORG_NOT_FOUND'],
        [['backup', '999999'], 1, 'ORG_NOT_FOUND'],
        [['backup'], 2, 'USAGE'],
      ];
      const refusals = await Promise.all(bad.map(([args]) => run([...args, '--json'])));
      refusals.forEach((r, i) => expect([r.code, errorOf(r).code], bad[i]![0].join(' ')).to.deep.equal([bad[i]![1], bad[i]![2]]));
      expect(await orgRow(t.id)).to.deep.equal(before.org);
      expect(await list(t)).to.deep.equal(before.messages);
      expect(await databases(`${t.dbName}\\_r%`), 'no fresh database left').to.deep.equal([]);
      expect(await users(`${t.dbName}\\_r%`), 'no fresh user left').to.deep.equal([]);
    });
  });

  describe('clone and export', () => {
    let source: Tenant;
    before(async () => {
      source = await tenantWithMessages(6);
      // Two of them were delivered (as a worker would have): the rest are still queued at the source.
      await root.query(`UPDATE \`${source.dbName}\`.messages SET status = 'SENT', sent_at = CURRENT_TIMESTAMP(3) WHERE id <= 2`);
    });

    it('clone makes a new org with a copy of the database (sms and email), its own user, key and balance; unsent messages stay the source’s; the source is untouched', async () => {
      const before = { org: await orgRow(source.id), messages: await list(source) };
      const r = await run(['clone', String(source.id), '--name', uniqueName('clone'), '--credits', '7', '--json']);
      expect(r.code, r.stderr).to.equal(0);
      const clone: Tenant = { id: r.json.org.id as number, apiKey: r.json.apiKey as string, dbName: '' };
      expect(clone.id).to.not.equal(source.id);
      expect(r.json.rows).to.deep.equal({ messages: 6 });

      const copied = await list(clone);
      expect(copied.map((m) => [m.id, m.channel, m.body])).to.deep.equal(before.messages.map((m) => [m.id, m.channel, m.body]));
      expect(new Set(copied.map((m) => m.channel))).to.deep.equal(new Set(['sms', 'email']));
      expect(copied.filter((m) => m.status === 'SENT').map((m) => m.id)).to.have.members([1, 2]);
      const unsent = copied.filter((m) => m.status !== 'SENT') as unknown as { status: string; errorCode: string }[];
      expect(unsent.map((m) => [m.status, m.errorCode])).to.deep.equal(Array(4).fill(['FAILED', 'CLONED_UNSENT']));
      expect(await balance(clone)).to.equal(7);
      const row = await orgRow(clone.id);
      expect(row.db_user).to.not.equal(before.org.db_user);
      expect(row.db_name).to.not.equal(before.org.db_name);
      // Its own key only: the clone's key is not the source's.
      expect((await api.request('GET', '/org', { org: { id: source.id, apiKey: clone.apiKey } })).status).to.equal(403);
      expect(await send(clone, 6)).to.be.above(6);

      expect(await orgRow(source.id)).to.deep.equal(before.org);
      expect(await list(source)).to.deep.equal(before.messages);
    });

    it('clone of an unknown org: exit 1, ORG_NOT_FOUND, no org made; without --name: exit 2', async () => {
      const n = (await rows<{ n: number }>(root, `SELECT COUNT(*) AS n FROM \`${SHARED}\`.orgs`))[0]!.n;
      const r = await run(['clone', '999999', '--name', uniqueName('clone'), '--json']);
      expect([r.code, errorOf(r).code]).to.deep.equal([1, 'ORG_NOT_FOUND']);
      expect((await run(['clone', String(source.id)])).code).to.equal(2);
      expect((await rows<{ n: number }>(root, `SELECT COUNT(*) AS n FROM \`${SHARED}\`.orgs`))[0]!.n).to.equal(n);
    });

    it('export writes the org, its messages (sms and email) and its ledger as JSON Lines, to a file or stdout', async () => {
      const file = path.join(BACKUP_DIR, 'export.jsonl');
      const r = await run(['export', String(source.id), '--to', file, '--json']);
      expect(r.code, r.stderr).to.equal(0);
      const lines = readFileSync(file, 'utf8')
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines[0]).to.include({ type: 'org', format: 'tenancy-tenant-export', version: 1, id: source.id });
      const messages = lines.filter((l) => l.type === 'message');
      const ledger = lines.filter((l) => l.type === 'ledger');
      expect(messages.map((m) => [m.id, m.channel, m.body])).to.deep.equal(
        (await list(source)).reverse().map((m) => [m.id, m.channel, m.body]),
      );
      expect(messages[1]).to.include({ channel: 'email', to: 'someone@example.com', body: 'email 1\nline two "quoted"' });
      expect(messages[0]).to.not.have.property('requestHash');
      const entries = await rows<{ id: number }>(root, `SELECT id FROM \`${SHARED}\`.credit_ledger WHERE org_id = :id ORDER BY id`, {
        id: source.id,
      });
      expect(ledger.map((e) => e.id)).to.deep.equal(entries.map((e) => Number(e.id)));
      expect(ledger[0]).to.include({ kind: 'grant', amount: 1000, reference: 'initial-grant' });
      expect(lines.at(-1)).to.deep.equal({ type: 'end', counts: { messages: 6, ledger: entries.length } });
      expect(r.json.counts).to.deep.equal({ messages: 6, ledger: entries.length });

      const out = await run(['export', String(source.id)]);
      expect(out.code, out.stderr).to.equal(0);
      expect(out.stdout.trimEnd().split('\n').slice(1)).to.deep.equal(readFileSync(file, 'utf8').trimEnd().split('\n').slice(1));
      const missing = await run(['export', '999999', '--json']);
      expect([missing.code, errorOf(missing).code]).to.deep.equal([1, 'ORG_NOT_FOUND']);
    });
  });

  describe('offboarding', () => {
    const locked = async (user: string) => (await users(user)).map((u) => String(u.locked));
    const keys = async (id: number) =>
      Number((await rows<{ n: number }>(root, `SELECT COUNT(*) AS n FROM \`${SHARED}\`.api_keys WHERE org_id = :id`, { id }))[0]!.n);
    const ledgerEntries = async (id: number) =>
      Number((await rows<{ n: number }>(root, `SELECT COUNT(*) AS n FROM \`${SHARED}\`.credit_ledger WHERE org_id = :id`, { id }))[0]!.n);
    const refused = async (t: Tenant) => {
      const r = await api.request('GET', '/org', { org: t });
      return r.status === 404 && r.body.error.code === 'ORG_NOT_FOUND';
    };

    it('drop keeps the database and locks the user (the API refuses the org like an unknown one); undrop brings it back as it was; purge removes the database, the user and the keys, and keeps the ledger', async () => {
      const t = await tenantWithMessages(2);
      const messages = await list(t);
      const user = String((await orgRow(t.id)).db_user);
      await run(['suspend', String(t.id)]);

      const d = await run(['drop', String(t.id), '--force', '--json']);
      expect(d.code, d.stderr).to.equal(0);
      expect(await eventually(() => refused(t))).to.equal(true);
      expect(await databases(t.dbName), 'database kept').to.deep.equal([t.dbName]);
      expect(await locked(user), 'user kept, locked').to.deep.equal(['1']);
      const exported = await run(['export', String(t.id), '--to', path.join(BACKUP_DIR, `dropped-${t.id}.jsonl`), '--json']);
      expect(exported.json?.counts, 'exported during the retention period').to.deep.equal({ messages: 2, ledger: 1 });

      const u = await run(['undrop', String(t.id), '--json']);
      expect(u.code, u.stderr).to.equal(0);
      expect(u.json.org).to.include({ status: 'SUSPENDED', droppedAt: null }); // as it was before the drop
      expect(await locked(user), 'user unlocked').to.deep.equal(['0']);
      await run(['resume', String(t.id)]);
      expect(await eventually(async () => (await api.request('GET', '/messages?limit=100', { org: t })).status === 200)).to.equal(true);
      expect(await list(t), 'the same key, the same messages').to.deep.equal(messages);

      expect((await run(['drop', String(t.id), '--force'])).code).to.equal(0);
      const ledgerBefore = await ledgerEntries(t.id);
      const p = await run(['purge', String(t.id), '--json']);
      expect(p.code, p.stderr).to.equal(0);
      expect(p.json.org.purgedAt).to.be.a('string');
      expect(await databases(t.dbName), 'database removed').to.deep.equal([]);
      expect(await users(user), 'user removed').to.deep.equal([]);
      expect(await keys(t.id), 'keys removed').to.equal(0);
      expect(await ledgerEntries(t.id), 'the ledger stays')
        .to.equal(ledgerBefore)
        .and.above(0);
      expect(await refused(t)).to.equal(true);

      const again = await run(['undrop', String(t.id), '--json']);
      expect([again.code, errorOf(again).code]).to.deep.equal([1, 'ORG_PURGED']);
    });

    it('undrop or purge of an org that is not dropped, or unknown: exit 1 with ORG_NOT_DROPPED / ORG_NOT_FOUND, nothing changed', async () => {
      const t = await tenantWithMessages(0);
      const before = await orgRow(t.id);
      const results = await Promise.all([
        run(['undrop', String(t.id), '--json']),
        run(['purge', String(t.id), '--json']),
        run(['purge', '999999', '--json']),
      ]);
      expect(results.map((r) => [r.code, errorOf(r).code])).to.deep.equal([
        [1, 'ORG_NOT_DROPPED'],
        [1, 'ORG_NOT_DROPPED'],
        [1, 'ORG_NOT_FOUND'],
      ]);
      expect(await orgRow(t.id)).to.deep.equal(before);
      expect(await databases(t.dbName)).to.deep.equal([t.dbName]);
    });

    it('the reconciler’s sweep purges a dropped tenant once TENANT_RETENTION_DAYS have passed, and not before', async () => {
      const stack = await startApiWithWorkers({ RECONCILE_INTERVAL_MS: '200', TENANT_RETENTION_DAYS: '30' });
      try {
        const due = await tenantWithMessages(1);
        const recent = await tenantWithMessages(1);
        expect((await run(['drop', String(due.id), '--force'])).code).to.equal(0);
        expect((await run(['drop', String(recent.id), '--force'])).code).to.equal(0);
        await root.query(`UPDATE \`${SHARED}\`.orgs SET dropped_at = CURRENT_TIMESTAMP(3) - INTERVAL 31 DAY WHERE id = :id`, {
          replacements: { id: due.id },
        });
        expect(await eventually(async () => (await orgRow(due.id)).purged_at !== null, 20_000, 100)).to.equal(true);
        expect(await databases(due.dbName)).to.deep.equal([]);
        expect(await keys(due.id)).to.equal(0);
        expect((await orgRow(recent.id)).purged_at, 'dropped now: kept').to.equal(null);
        expect(await databases(recent.dbName)).to.deep.equal([recent.dbName]);
      } finally {
        await stack.stop();
      }
    });
  });
});
