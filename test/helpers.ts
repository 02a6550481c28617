/** Test helpers: a unique namespace per run (databases, MySQL users, Redis prefix), an HTTP client, the CLI as a child process. */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { QueryTypes, type Sequelize } from 'sequelize';
import { loadConfig, type Config } from '../config/config.js';
import { createSequelize } from '../src/platform/db/sequelize.js';
import { createDeps, type Deps, type DepsOptions } from '../src/deps.js';
import { startServer } from '../src/app/http-app.js';
import { provisioned, type ProvisionedOrg } from '../src/orgs/domain/org.js';
import { Job, QueueEvents } from 'bullmq';
import { DELIVERY_QUEUE, deliveryJobId } from '../src/platform/queue/queues.js';
import { startWorkers, type Workers } from '../src/messages/entry-points/queue/workers.js';

/** This run's id: every database, MySQL user and Redis key the run makes starts with it. */
export const RUN = `t${Date.now().toString(36).slice(-5)}${randomBytes(2).toString('hex')}`;
export const ADMIN_TOKEN = 'test-admin-token-0123456789';
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The environment of this run (shared DB `<RUN>_shared`, tenants `<RUN>_<id>`, queue prefix `<RUN>`). */
export const TEST_ENV: Record<string, string> = {
  NODE_ENV: 'test',
  DB_NAME: `${RUN}_shared`,
  TENANT_DB_PREFIX: `${RUN}_`,
  QUEUE_PREFIX: RUN,
  ADMIN_TOKEN,
  SECRET_KEY: 'test-secret-key-0123456789abcdef0123456789',
  LOG_LEVEL: 'silent',
  MIGRATION_LOCK_WAIT_SEC: '5',
  // Generous limits for the suites about other things; test/platform/rate-limit.test.ts sets real ones.
  RATE_LIMIT_POINTS: '1000000',
  AUTH_FAILURE_LIMIT: '1000000',
  // No warm pool but where a test asks for one (test/orgs/tenant-pool.test.ts): tenants are made when created.
  TENANT_WARM_POOL_SIZE: '0',
};

/** A validated Config for this run, with overrides. */
export function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig({ ...TEST_ENV, ...overrides });
}

/** Deps for this run; closed by the caller. */
export function testDeps(overrides: Record<string, string> = {}, opts: DepsOptions = {}): Deps {
  return createDeps(testConfig(overrides), opts);
}

let counter = 0;
/** A unique org name for this run. */
export function uniqueName(label = 'org'): string {
  return `${label} ${RUN} ${++counter}`;
}

/** A root connection (no default DB) for assertions on MySQL itself. */
export function rootDb(): Sequelize {
  return createSequelize({ host: '127.0.0.1', port: 3306, user: 'root', password: '', poolMax: 4 });
}

/** SELECT helper. */
export async function rows<T extends object = Record<string, unknown>>(
  db: Sequelize,
  sql: string,
  replacements: Record<string, unknown> = {},
): Promise<T[]> {
  return db.query<T>(sql, { replacements, type: QueryTypes.SELECT });
}

export interface TestApi {
  url: string;
  deps: Deps;
  request(method: string, path: string, opts?: RequestOptions): Promise<TestResponse>;
  stop(): Promise<void>;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  /** Sent as JSON unless a string (sent as is). */
  body?: unknown;
  admin?: boolean;
  org?: { id: number; apiKey: string };
}

export interface TestResponse {
  status: number;
  headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON
  body: any;
}

/** Starts the API on an ephemeral port with its own deps. */
export async function startApi(overrides: Record<string, string> = {}, opts: DepsOptions = {}): Promise<TestApi> {
  const deps = testDeps(overrides, opts);
  await deps.events.ready();
  const server = await startServer(deps, 0);
  return {
    url: server.url,
    deps,
    request: (method, path, o = {}) => request(server.url, method, path, o),
    async stop() {
      await server.stop(1000);
      await deps.close();
    },
  };
}

/** One HTTP request; parses JSON answers. */
export async function request(base: string, method: string, path: string, o: RequestOptions = {}): Promise<TestResponse> {
  const headers: Record<string, string> = { ...o.headers };
  if (o.admin) headers.Authorization = `Bearer ${ADMIN_TOKEN}`;
  if (o.org) Object.assign(headers, { 'X-Org-Id': String(o.org.id), Authorization: `Bearer ${o.org.apiKey}` });
  let body: string | undefined;
  if (o.body !== undefined) {
    body = typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(`${base}${path}`, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

/** The org record of a provisioned tenant, read fresh from the shared DB. */
export async function provisionedOrg(deps: Deps, id: number): Promise<ProvisionedOrg> {
  const org = await deps.repo.get(id);
  if (!org) throw new Error(`org ${id} does not exist`);
  return provisioned(org);
}

/** Creates a provisioned tenant through the service; returns its id and first API key. */
export async function createTenant(
  deps: Deps,
  opts: { name?: string; credits?: number } = {},
): Promise<{ id: number; apiKey: string; dbName: string }> {
  const { org, apiKey } = await deps.orgs.create({ name: opts.name ?? uniqueName(), credits: opts.credits ?? 100 });
  return { id: org.id, apiKey: apiKey!, dbName: org.dbName! };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed --json output
  json?: any;
}

/** Runs `bin/tenant ...args` as a child process in this run's environment. */
export function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(`${ROOT}bin/tenant`, args, {
      cwd: ROOT,
      env: { ...process.env, ...TEST_ENV, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      let json: unknown;
      // With --json the result is the last line (commands that report progress print one JSON line per event first).
      if (args.includes('--json') && code === 0) json = JSON.parse(stdout.trimEnd().split('\n').at(-1)!);
      resolve({ code, stdout, stderr, json });
    });
  });
}

/** Polls `check` until it returns true or `timeoutMs` passes (for cross-process effects with no event to await). */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 5000, everyMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return check();
}

/** Awaits a promise that must reject; returns the error. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection, but the promise resolved');
}

export interface ApiWithWorkers {
  api: TestApi;
  workers: Workers;
  /** Events of `queue` (deliveries unless told otherwise), for awaiting jobs. */
  events: QueueEvents;
  /** Resolves when the delivery job of a message has finished, however it ended. */
  delivered(orgId: number, messageId: number): Promise<void>;
  stop(): Promise<void>;
}

/** The API plus the delivery and webhook workers on the same deps, and QueueEvents of one queue. */
export async function startApiWithWorkers(
  env: Record<string, string> = {},
  opts: { queue?: string } & DepsOptions = {},
): Promise<ApiWithWorkers> {
  const api = await startApi(env, opts);
  const workers = startWorkers(testConfig(env), api.deps);
  const events = new QueueEvents(opts.queue ?? DELIVERY_QUEUE, {
    connection: { host: '127.0.0.1', port: 6379 },
    prefix: api.deps.config.queuePrefix,
  });
  await events.waitUntilReady();
  return {
    api,
    workers,
    events,
    async delivered(orgId, messageId) {
      const job = await Job.fromId(api.deps.deliveryQueue, deliveryJobId(orgId, messageId));
      await job!.waitUntilFinished(events).catch(() => undefined);
    },
    async stop() {
      await workers.close();
      await events.close();
      await api.stop();
    },
  };
}
