/**
 * Backup, restore and export of one tenant (issue 21): a tenant with MESSAGES messages (100,000 by default) is backed
 * up (`bin/tenant backup`'s code: one REPEATABLE READ snapshot, gzip), restored from that file (checked whole, loaded
 * into a fresh database, verified, switched, the old copy dropped after its grace period) and exported as JSON Lines.
 * The baseline, measured side by side in the same run on the same database: `mariadb-dump --single-transaction | gzip`
 * and `gunzip | mariadb` into an empty database (the standard tools, which check nothing and switch nothing).
 *
 *   flock /tmp/bench.lock npm run bench:lifecycle
 *
 * Tunables (defaults in brackets): MESSAGES [100000]. Everything it creates is removed at the end.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { createDeps } from '../src/deps.js';
import { createTenantExport } from '../src/messages/domain/tenant-export.js';
import { createSequelize } from '../src/platform/db/sequelize.js';
import {
  closeAndCleanUp,
  commandLine,
  describeMachine,
  loadRunConfig,
  markdownTable,
  positiveInt,
  prepareRun,
  runBenchFile,
  stopOnCtrlC,
  tunable,
  writeDocSection,
} from './bench-lib.js';

const DEFAULTS = { MESSAGES: '100000' } as const;
const MESSAGES = positiveInt(tunable('MESSAGES', DEFAULTS), 'MESSAGES');

/** Runs a command with stdin/stdout piped to the given streams; rejects on a non-zero exit. */
function tool(cmd: string, args: string[], io: { stdin?: NodeJS.ReadableStream; stdout?: NodeJS.WritableStream }): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [io.stdin ? 'pipe' : 'ignore', io.stdout ? 'pipe' : 'ignore', 'inherit'] });
    if (io.stdin) io.stdin.pipe(child.stdin!);
    if (io.stdout) child.stdout!.pipe(io.stdout);
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${code}`))));
  });
}

async function main(): Promise<void> {
  stopOnCtrlC();
  const run = `lc${randomBytes(3).toString('hex')}`;
  const dir = await mkdtemp(path.join(tmpdir(), `${run}-`));
  // A one-second grace for the old copy after the restore's switch (ORG_CACHE_TTL_MS + 1 s).
  const config = loadRunConfig(run, { BACKUP_DIR: dir, ORG_CACHE_TTL_MS: '0' });
  const deps = createDeps(config, { role: 'cli', subscribe: false });
  const log = (line: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
  const root = createSequelize({ ...config.db, database: undefined, poolMax: 1 });
  const mysqlArgs = [
    '-h',
    config.db.host,
    '-P',
    String(config.db.port),
    '-u',
    config.db.user,
    ...(config.db.password ? [`-p${config.db.password}`] : []),
  ];
  try {
    await prepareRun(config, deps, false);
    const { org } = await deps.orgs.create({ name: `${run}-big`, credits: 1_000_000, server: 'default' });
    const db = `\`${org.dbName!}\``;
    log(`filling tenant ${org.id} with ${MESSAGES} messages…`);
    for (let from = 1; from <= MESSAGES; from += 250_000) {
      const to = Math.min(MESSAGES, from + 249_999);
      await root.query(
        `INSERT INTO ${db}.messages (\`to\`, channel, body, status, cost, attempts, provider_message_id, created_at, updated_at, sent_at)
         SELECT IF(seq MOD 2, '+15551230000', 'someone@example.com'), IF(seq MOD 2, 'sms', 'email'),
                CONCAT('Your verification code is ', LPAD(seq MOD 1000000, 6, '0'), '. It expires in ten minutes; message ', seq, '.'),
                'SENT', 1, 1, CONCAT('sim-', seq), NOW(3), NOW(3), NOW(3) FROM ${db}.seq_${from}_to_${to}`,
      );
    }

    log('baseline: mariadb-dump --single-transaction | gzip …');
    const dumpFile = path.join(dir, 'dump.sql.gz');
    let t = performance.now();
    const gz = createGzip();
    const written = pipeline(gz, createWriteStream(dumpFile));
    await tool('mariadb-dump', [...mysqlArgs, '--single-transaction', org.dbName!], { stdout: gz });
    await written;
    const dumpMs = performance.now() - t;
    const dumpBytes = (await stat(dumpFile)).size;
    log('baseline: gunzip | mariadb into an empty database …');
    await root.query(`CREATE DATABASE \`${run}_dumpcopy\``);
    t = performance.now();
    await tool('mariadb', [...mysqlArgs, `${run}_dumpcopy`], { stdin: createReadStream(dumpFile).pipe(createGunzip()) });
    const loadMs = performance.now() - t;

    log('backup …');
    const b = await deps.backups.backup(org.id, 'bench.jsonl.gz');
    log('restore …');
    const r = await deps.backups.restore(org.id, 'bench.jsonl.gz');
    const graceMs = config.orgCacheTtlMs + 1000;
    log('export …');
    t = performance.now();
    const exp = await createTenantExport(deps).exportTo(org.id, createWriteStream(path.join(dir, 'export.jsonl')));
    const exportMs = performance.now() - t;
    const exportBytes = (await stat(path.join(dir, 'export.jsonl'))).size;

    const rate = (ms: number) => Math.round(MESSAGES / (ms / 1000)).toLocaleString('en-US');
    const s = (ms: number) => (ms / 1000).toFixed(2);
    const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
    const lines = [
      `Measured on ${new Date().toISOString().slice(0, 10)}: ${await describeMachine(root)}; the machine was shared with other work.`,
      `Command: \`${commandLine('bench:lifecycle', Object.keys(DEFAULTS))}\`. One tenant, ${MESSAGES.toLocaleString('en-US')} messages (half sms, half email, ~90-byte bodies).`,
      '',
      markdownTable(['operation', 'time (s)', 'rows/s', 'file (MB)', 'baseline, same run', 'ratio to baseline'], 'lrrrlr', [
        [
          'backup (snapshot → gzip JSON Lines)',
          s(b.ms),
          rate(b.ms),
          mb(b.bytes),
          `mariadb-dump --single-transaction \\| gzip: ${s(dumpMs)} s, ${mb(dumpBytes)} MB`,
          (b.ms / dumpMs).toFixed(2),
        ],
        [
          `restore (check the file, load, verify, migrate, fence, switch; ${s(graceMs)} s grace before the old copy is dropped included)`,
          s(r.ms),
          rate(r.ms),
          '',
          `gunzip \\| mariadb into an empty database: ${s(loadMs)} s`,
          (r.ms / loadMs).toFixed(2),
        ],
        [`restore without the grace`, s(r.ms - graceMs), rate(r.ms - graceMs), '', '', ((r.ms - graceMs) / loadMs).toFixed(2)],
        ['export (JSON Lines, uncompressed)', s(exportMs), rate(exportMs), mb(exportBytes), '', ''],
      ]),
      '',
      `The restore reads the file twice (a whole check before anything is changed, then the load) and checksums every table on the new copy; mariadb-dump's load does neither. Export counts: ${exp.counts.messages} messages, ${exp.counts.ledger} ledger entries.`,
    ];
    log(`wrote ${await writeDocSection('lifecycle', '## Tenant backup, restore and export', lines)}`);
    console.log(lines.join('\n'));
  } finally {
    await root.close().catch(() => undefined);
    await closeAndCleanUp(deps, config, run, log, true);
    await rm(dir, { recursive: true, force: true });
  }
}

runBenchFile(main);
