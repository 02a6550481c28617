import { spawn, type ChildProcess } from 'node:child_process';
import { expect } from 'chai';
import { ROOT, TEST_ENV, createTenant, eventually, rows, startApi, type TestApi } from './helpers.js';

/** Worker settings: short locks so a killed worker's jobs are picked up within seconds. */
const WORKER_ENV = {
  WORKER_LOCK_MS: '1000',
  GATEWAY_LATENCY_MS: '15',
  WORKER_CONCURRENCY: '8',
  DELIVERY_ATTEMPTS: '3',
  DELIVERY_BACKOFF_MS: '10',
  LOG_LEVEL: 'silent',
};

function startWorkerProcess(): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--role', 'worker'], {
    cwd: ROOT,
    env: { ...process.env, ...TEST_ENV, ...WORKER_ENV },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

const exited = (child: ChildProcess) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );

describe('a worker process killed (SIGKILL) in the middle of a batch', () => {
  let api: TestApi;
  const children: ChildProcess[] = [];
  before(async () => {
    api = await startApi(WORKER_ENV);
  });
  after(async () => {
    children.forEach((c) => c.exitCode === null && c.kill('SIGKILL'));
    await api.stop();
  });

  it('ends every message SENT or FAILED after a restart: none charged twice, every FAILED refunded, balance = ledger sum', async function () {
    this.timeout(120_000);
    const t = await createTenant(api.deps, { credits: 180 });
    const count = async (where: string) =>
      Number((await rows<{ n: number }>(api.deps.sharedDb, `SELECT COUNT(*) AS n FROM \`${t.dbName}\`.messages WHERE ${where}`))[0]!.n);

    // 200 messages: 10 to the permanent-failure recipient, 8 to the transient one, the rest deliverable; 180 credits.
    for (let i = 0; i < 200; i++) {
      const to = i % 20 === 0 ? '+15005550002' : i % 25 === 1 ? '+15005550001' : `+1555200${String(i).padStart(4, '0')}`;
      const res = await api.request('POST', '/messages', { org: t, body: { to, channel: 'sms', body: `message ${i}` } });
      expect(res.status).to.equal(202);
    }

    const first = startWorkerProcess();
    children.push(first);
    expect(await eventually(async () => (await count("status = 'SENT'")) >= 40, 60_000, 25), 'first worker made progress').to.equal(true);
    first.kill('SIGKILL');
    expect((await exited(first)).signal).to.equal('SIGKILL');
    const sentAtKill = await count("status = 'SENT'");
    expect(sentAtKill).to.be.below(200);

    const second = startWorkerProcess();
    children.push(second);
    expect(await eventually(async () => (await count("status IN ('SENT', 'FAILED')")) === 200, 90_000, 50), 'every message final').to.equal(
      true,
    );
    second.kill('SIGTERM');
    expect((await exited(second)).code, 'graceful shutdown exits 0').to.equal(0);

    const sent = await count("status = 'SENT'");
    const ledger = await rows<{ kind: string; amount: number; reference: string; message_id: number | null }>(
      api.deps.sharedDb,
      'SELECT kind, amount, reference, message_id FROM credit_ledger WHERE org_id = :id',
      { id: t.id },
    );
    const debits = ledger.filter((r) => r.kind === 'debit');
    const refunds = ledger.filter((r) => r.kind === 'refund');
    expect(new Set(debits.map((d) => d.message_id)).size, 'one debit per message at most').to.equal(debits.length);
    expect(new Set(refunds.map((d) => d.message_id)).size, 'one refund per message at most').to.equal(refunds.length);
    const failed = await rows<{ id: number }>(api.deps.sharedDb, `SELECT id FROM \`${t.dbName}\`.messages WHERE status = 'FAILED'`);
    const charged = new Set(debits.map((d) => Number(d.message_id)));
    const refunded = new Set(refunds.map((d) => Number(d.message_id)));
    for (const { id } of failed)
      expect(refunded.has(Number(id)), `FAILED message ${id} is not left charged`).to.equal(charged.has(Number(id)));
    expect(
      refunds.every((r) => charged.has(Number(r.message_id))),
      'refunds only for charged messages',
    ).to.equal(true);
    const balance = await api.deps.repo.balance(t.id);
    expect(balance).to.equal(ledger.reduce((s, r) => s + Number(r.amount), 0));
    expect(balance).to.equal(180 - sent);
    expect(sent).to.be.at.most(180); // 182 deliverable recipients, 180 credits
    expect(await count("status = 'SENT' AND provider_message_id IS NULL")).to.equal(0);
  });
});
