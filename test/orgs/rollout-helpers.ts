/** Helpers of the rollout suites: a fleet of its own (shared DB and prefix), the CLI's JSON lines, a CLI run to watch. */
import { spawn, type ChildProcess } from 'node:child_process';
import { expect } from 'chai';
import { prepareSharedDb } from '../../src/platform/db/shared-db.js';
import type { Deps } from '../../src/deps.js';
import { ROOT, RUN, TEST_ENV, createTenant, testDeps, type CliResult } from '../helpers.js';
import { exited } from '../processes.js';

/** The latest real tenant migration: where a fleet starts. */
export const CURRENT = '20261123-0001-pending-index';

export interface Tenant {
  id: number;
  dbName: string;
  apiKey: string;
}

export interface Fleet {
  deps: Deps;
  tenants: Tenant[];
  /** The fleet's environment for the CLI, with the next migrations deployed. */
  env: Record<string, string>;
}

/** Every JSON line of stdout (events, then the result). */
export const jsonLines = (r: { stdout: string }) =>
  r.stdout
    .trimEnd()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
export const lastJson = (r: CliResult) => jsonLines(r).at(-1)!;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON read by the assertions
export const tenantEvents = (r: CliResult) => jsonLines(r).filter((e) => e.event === 'tenant') as any[];

export function expectExit(r: CliResult, code: number): void {
  expect(r.code, `exit code; stdout: ${r.stdout.slice(-2000)} stderr: ${r.stderr}`).to.equal(code);
}

/** bin/tenant as a running child whose JSON lines can be awaited one by one. */
export function startCli(args: string[], env: Record<string, string>) {
  const child: ChildProcess = spawn(`${ROOT}bin/tenant`, args, {
    cwd: ROOT,
    env: { ...process.env, ...TEST_ENV, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const events: Record<string, unknown>[] = [];
  const waiters: { test: (e: Record<string, unknown>) => boolean; resolve: () => void }[] = [];
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines.filter(Boolean)) {
      const e = JSON.parse(line) as Record<string, unknown>;
      events.push(e);
      for (const w of [...waiters])
        if (w.test(e)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const ended = exited(child).then(({ code }) => ({ code, stdout, stderr }));
  return {
    child,
    events,
    ended,
    /** Resolves at the first event (already seen or to come) that passes `test`. */
    waitFor(test: (e: Record<string, unknown>) => boolean): Promise<void> {
      if (events.some(test)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        waiters.push({ test, resolve });
        void ended.then((r) => reject(new Error(`the CLI ended (exit ${r.code}) before the awaited event; stderr: ${r.stderr}`)));
      });
    },
  };
}

/** Tenants with their own shared DB and prefix, created at the current version (before the next one is deployed). */
export async function makeFleet(label: string, size: number, nextDir: string, credits = 100): Promise<Fleet> {
  // A shared DB of its own means org ids of its own: Redis keys (queues, fair share, org events) must be its own too.
  const own = { DB_NAME: `${RUN}_${label}_shared`, TENANT_DB_PREFIX: `${RUN}_${label}_`, QUEUE_PREFIX: `${RUN}_${label}` };
  const deps = testDeps(own, { subscribe: false });
  await prepareSharedDb(deps.config, deps.sharedDb);
  await deps.servers.ensureDefault();
  const tenants: Tenant[] = [];
  for (let i = 0; i < size; i++) tenants.push(await createTenant(deps, { credits }));
  return { deps, tenants, env: { ...own, TENANT_MIGRATIONS_DIR: nextDir } };
}
