/** Environment → validated, frozen Config. The only module that reads process.env. */
import { existsSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { resolve as resolvePath } from 'node:path';
import Joi from 'joi';
import {
  channelGateways,
  gatewayProblems,
  gatewaySchemaKeys,
  smtpConfig,
  usesHttpGateway,
  type GatewayKind,
  type SmtpConfig,
} from './gateways.js';

/** Development defaults for secrets; refused when NODE_ENV=production, and on any HOST but loopback. */
export const DEV_ADMIN_TOKEN = 'dev-admin-token-change-me';
export const DEV_SECRET_KEY = 'dev-secret-key-change-me-0123456789abcdef';
export const DEV_GATEWAY_SECRET = 'dev-gateway-secret-change-me';

export interface Config {
  readonly nodeEnv: 'development' | 'production' | 'test';
  readonly port: number;
  readonly host: string;
  readonly db: {
    readonly host: string;
    readonly port: number;
    readonly user: string;
    readonly password: string;
    readonly name: string;
    readonly poolMax: number;
  };
  readonly tenant: {
    readonly dbPrefix: string;
    readonly userHost: string;
    /** Tenant Sequelize instances kept (TENANT_CACHE_MAX): cheap entries that hold no connection of their own. */
    readonly cacheMax: number;
    /** Connections one tenant may hold at once (TENANT_POOL_MAX), out of its server's budget. */
    readonly poolMax: number;
    /** Physical connections per process per MySQL server, shared by its tenants (TENANT_CONNECTIONS_MAX). */
    readonly connectionsMax: number;
    readonly idleMs: number;
    readonly connectTimeoutMs: number;
    readonly acquireTimeoutMs: number;
    readonly retryAfterMs: number;
    /** A tenant statement unanswered this long makes the process probe its server (TENANT_PROBE_AFTER_MS). */
    readonly probeAfterMs: number;
    /** At the connection budget, how long a tenant waits for its own lent session before another's is switched (TENANT_SWITCH_WAIT_MS). */
    readonly switchWaitMs: number;
  };
  /**
   * The warm pool (src/orgs/domain/tenant-pool.ts): tenants provisioned ahead per active server (TENANT_WARM_POOL_SIZE,
   * 0: off) so that a create only claims one; topped up every TENANT_WARM_POOL_REFILL_MS and after each claim.
   */
  readonly warmPool: { readonly size: number; readonly refillMs: number };
  readonly orgCacheTtlMs: number;
  /** How long a cached org or key read while the change feed was live stays (ORG_CACHE_MAX_AGE_MS). */
  readonly orgCacheMaxAgeMs: number;
  /** BACKUP_DIR: where `bin/tenant backup` writes (absolute; default `./backups`). */
  readonly backupDir: string;
  /** TENANT_RETENTION_DAYS: how long a dropped tenant's database and user are kept (locked) before the purge. */
  readonly retentionDays: number;
  /** Tenants the `default` server takes, set when it is first registered (DEFAULT_SERVER_CAPACITY); later: `servers set`. */
  readonly defaultServerCapacity: number;
  readonly redisUrl: string;
  /** REDIS_CLUSTER_NODES: set, every Redis client is an ioredis Cluster seeded from these `host:port` nodes. */
  readonly redisClusterNodes?: readonly string[];
  /** QUEUE_PREFIX; in Cluster mode with a hash tag (`{bull}`), so every key of the project is in one slot. */
  readonly queuePrefix: string;
  readonly adminToken: string;
  readonly secretKey: string;
  readonly defaultCredits: number;
  readonly rateLimit: { readonly points: number; readonly duration: number };
  readonly authFailureLimit: { readonly points: number; readonly duration: number };
  /** Proxy hops in front of the API (TRUST_PROXY): the client IP is the X-Forwarded-For entry this many from the right; 0 ignores the header. */
  readonly trustProxy: number;
  readonly metricsPort?: number;
  /** Port of a worker process's /health, /ready and /metrics (WORKER_PORT; 0 = ephemeral), bound to HOST. */
  readonly workerPort: number;
  /** Who reports the queue_jobs gauges (QUEUE_METRICS): `auto` = worker and all-in-one processes, not `--role api`. */
  readonly queueMetrics: 'auto' | 'on' | 'off';
  /** GATEWAY: the provider of every channel that names none of its own. */
  readonly gateway: 'simulated' | 'http';
  /** The provider of each channel (SMS_GATEWAY, EMAIL_GATEWAY; GATEWAY when unset). */
  readonly channelGateways: { readonly sms: GatewayKind; readonly email: GatewayKind };
  /** Set when EMAIL_GATEWAY=smtp (config/gateways.ts). */
  readonly smtp?: SmtpConfig;
  readonly gatewayOptions: {
    readonly latencyMs: number;
    readonly failureRate: number;
    readonly seed: number;
    readonly url?: string;
    readonly secret: string;
    readonly timeoutMs: number;
  };
  readonly delivery: {
    readonly concurrency: number;
    readonly attempts: number;
    readonly backoffMs: number;
    readonly lockMs: number;
    /** Infrastructure-error postponements of one job before it is handed back to the reconciler. */
    readonly maxPostponements: number;
    /** Deliveries of one org running at once across every worker, unless the org overrides it (0: no cap). */
    readonly orgConcurrency: number;
  };
  /** Longest a job held back by its org's cap waits before it wakes by itself (normally a finishing job wakes it). */
  readonly orgParkMaxMs: number;
  /** Failed jobs kept in Redis (the message row stays the record): at most this many, for at most this long. */
  readonly failedJobs: { readonly keepCount: number; readonly keepAgeSec: number };
  /**
   * The outbox reconciler: rows QUEUED/SENDING for longer than afterMs with no live job are enqueued again; FAILED rows
   * whose settlement was cut off (a refund, a late acceptance) are repaired, looking back at most lookbackMs.
   */
  readonly reconcile: { readonly afterMs: number; readonly intervalMs: number; readonly lookbackMs: number };
  /** Half-life of an org's count of recent enqueues, which sets its jobs' fair-share priority (FAIR_SHARE_HALF_LIFE_MS). */
  readonly fairShareHalfLifeMs: number;
  /** How long a POST /messages Idempotency-Key is remembered. */
  readonly idempotencyKeyTtlSec: number;
  /** Longest a tenant query may run (server-side statement timeout). */
  readonly tenantStatementTimeoutMs: number;
  /** Deadline of a graceful shutdown; then connections and jobs are force-closed. */
  readonly shutdownTimeoutMs: number;
  readonly webhooks: {
    readonly concurrency: number;
    readonly attempts: number;
    readonly backoffMs: number;
    readonly timeoutMs: number;
    readonly allowPrivate: boolean;
    /** Webhooks of one org running at once across every worker (0: no cap): a slow endpoint holds at most this many. */
    readonly orgConcurrency: number;
  };
  readonly logLevel: string;
  readonly bodyLimit: string;
  readonly migrationLockWaitSec: number;
  /** TENANT_MIGRATIONS_DIR: where the tenant migrations are (absolute); unset: the repository's `tenant-migrations/`. */
  readonly tenantMigrationsDir?: string;
  readonly dashboardReadOnly: boolean;
}

const name = /^[A-Za-z][A-Za-z0-9_]{0,39}$/;

const schema = Joi.object({
  NODE_ENV: Joi.string().valid('development', 'production', 'test').default('development'),
  PORT: Joi.number().integer().min(0).max(65535).default(4000),
  // Outside production bind to loopback only, where the public development secrets are harmless.
  HOST: Joi.string().when('NODE_ENV', {
    is: 'production',
    then: Joi.optional().default('0.0.0.0'),
    otherwise: Joi.optional().default('127.0.0.1'),
  }),
  DB_HOST: Joi.string().default('127.0.0.1'),
  DB_PORT: Joi.number().integer().min(1).max(65535).default(3306),
  DB_USER: Joi.string().default('root'),
  DB_PASS: Joi.string().allow('').default(''),
  DB_NAME: Joi.string().pattern(name).default('tenancy_shared'),
  DB_POOL_MAX: Joi.number().integer().min(2).max(100).default(10), // ≥2: a lock holds one connection while work uses another
  TENANT_DB_PREFIX: Joi.string()
    .pattern(/^[A-Za-z][A-Za-z0-9_]{0,19}$/)
    .default('tenant_'),
  TENANT_USER_HOST: Joi.string()
    .pattern(/^[A-Za-z0-9.%_:-]{1,60}$/)
    .default('%'),
  TENANT_CACHE_MAX: Joi.number().integer().min(1).max(100_000).default(20_000),
  TENANT_POOL_MAX: Joi.number().integer().min(1).max(100).default(10),
  TENANT_CONNECTIONS_MAX: Joi.number().integer().min(1).max(1000).default(20),
  TENANT_IDLE_MS: Joi.number().integer().min(100).default(60000),
  TENANT_CONNECT_TIMEOUT_MS: Joi.number().integer().min(100).default(2000),
  TENANT_ACQUIRE_TIMEOUT_MS: Joi.number().integer().min(100).default(5000),
  TENANT_RETRY_AFTER_MS: Joi.number().integer().min(0).default(2000),
  TENANT_PROBE_AFTER_MS: Joi.number().integer().min(50).default(1000),
  TENANT_SWITCH_WAIT_MS: Joi.number().integer().min(0).max(1000).default(10),
  ORG_CACHE_TTL_MS: Joi.number().integer().min(0).default(5000),
  ORG_CACHE_MAX_AGE_MS: Joi.number().integer().min(0).default(60_000),
  TENANT_WARM_POOL_SIZE: Joi.number().integer().min(0).max(1000).default(10),
  TENANT_WARM_POOL_REFILL_MS: Joi.number().integer().min(100).default(2000),
  DEFAULT_SERVER_CAPACITY: Joi.number().integer().min(1).max(10_000_000).default(10_000),
  REDIS_URL: Joi.string()
    .uri({ scheme: ['redis', 'rediss'] })
    .default('redis://127.0.0.1:6379'),
  REDIS_CLUSTER_NODES: Joi.string().pattern(/^[A-Za-z0-9.-]+:\d{1,5}(,[A-Za-z0-9.-]+:\d{1,5})*$/),
  QUEUE_PREFIX: Joi.string()
    .pattern(/^[A-Za-z0-9_{}-]{1,64}$/)
    .default('bull'),
  ADMIN_TOKEN: Joi.string()
    .min(16)
    .when('NODE_ENV', {
      is: 'production',
      then: Joi.required().invalid(DEV_ADMIN_TOKEN),
      otherwise: Joi.optional().default(DEV_ADMIN_TOKEN),
    }),
  SECRET_KEY: Joi.string()
    .min(32)
    .when('NODE_ENV', {
      is: 'production',
      then: Joi.required().invalid(DEV_SECRET_KEY),
      otherwise: Joi.optional().default(DEV_SECRET_KEY),
    }),
  DEFAULT_CREDITS: Joi.number().integer().min(0).max(1_000_000_000).default(100),
  RATE_LIMIT_POINTS: Joi.number().integer().min(1).default(100),
  RATE_LIMIT_DURATION: Joi.number().integer().min(1).default(1),
  AUTH_FAILURE_LIMIT: Joi.number().integer().min(1).default(20),
  AUTH_FAILURE_WINDOW_SEC: Joi.number().integer().min(1).default(60),
  // Number of proxy hops; `true`/`false` are still accepted as 1/0 (the meaning of the old boolean).
  TRUST_PROXY: Joi.alternatives()
    .try(Joi.number().integer().min(0), Joi.boolean())
    .default(0)
    .messages({ 'alternatives.types': 'must be the number of trusted proxy hops (0, 1, 2, …) or true (= 1) / false (= 0)' }),
  METRICS_PORT: Joi.number().integer().min(0).max(65535),
  WORKER_PORT: Joi.number().integer().min(0).max(65535).default(4001),
  QUEUE_METRICS: Joi.string().valid('auto', 'on', 'off').default('auto'),
  GATEWAY: Joi.string()
    .valid('simulated', 'http')
    .default('simulated')
    .messages({ 'any.only': 'must be simulated or http (smtp carries e-mail only: set EMAIL_GATEWAY=smtp)' }),
  ...gatewaySchemaKeys,
  GATEWAY_LATENCY_MS: Joi.number().integer().min(0).max(60_000).default(0),
  GATEWAY_FAILURE_RATE: Joi.number().min(0).max(1).default(0),
  GATEWAY_SEED: Joi.number().integer().default(42),
  GATEWAY_URL: Joi.string()
    .uri({ scheme: ['http', 'https'] })
    .when('GATEWAY', { is: 'http', then: Joi.required() }),
  GATEWAY_SECRET: Joi.string()
    .min(16)
    .when('NODE_ENV', {
      is: 'production',
      then: Joi.when('GATEWAY', {
        is: 'http',
        then: Joi.required().invalid(DEV_GATEWAY_SECRET),
        otherwise: Joi.optional().default(DEV_GATEWAY_SECRET),
      }),
      otherwise: Joi.optional().default(DEV_GATEWAY_SECRET),
    }),
  GATEWAY_TIMEOUT_MS: Joi.number().integer().min(100).default(5000),
  WORKER_CONCURRENCY: Joi.number().integer().min(1).max(500).default(10),
  DELIVERY_ATTEMPTS: Joi.number().integer().min(1).max(50).default(5),
  DELIVERY_BACKOFF_MS: Joi.number().integer().min(1).default(1000),
  WORKER_LOCK_MS: Joi.number().integer().min(500).default(30_000),
  DELIVERY_MAX_POSTPONEMENTS: Joi.number().integer().min(1).max(10_000).default(30),
  ORG_DELIVERY_CONCURRENCY: Joi.number().integer().min(0).max(10_000).default(20),
  ORG_WEBHOOK_CONCURRENCY: Joi.number().integer().min(0).max(10_000).default(4),
  ORG_PARK_MAX_MS: Joi.number().integer().min(100).default(60_000),
  FAILED_JOBS_KEEP_COUNT: Joi.number().integer().min(0).default(10_000),
  FAILED_JOBS_KEEP_AGE_SEC: Joi.number()
    .integer()
    .min(1)
    .default(7 * 24 * 3600),
  RECONCILE_AFTER_MS: Joi.number().integer().min(100).default(60_000),
  RECONCILE_INTERVAL_MS: Joi.number().integer().min(100).default(30_000),
  RECONCILE_REPAIR_LOOKBACK_MS: Joi.number()
    .integer()
    .min(60_000)
    .default(7 * 24 * 60 * 60_000),
  TENANT_STATEMENT_TIMEOUT_MS: Joi.number().integer().min(100).default(10_000),
  FAIR_SHARE_HALF_LIFE_MS: Joi.number().integer().min(100).default(10_000),
  IDEMPOTENCY_KEY_TTL_SEC: Joi.number()
    .integer()
    .min(1)
    .default(24 * 3600),
  SHUTDOWN_TIMEOUT_MS: Joi.number().integer().min(100).default(15_000),
  WEBHOOK_CONCURRENCY: Joi.number().integer().min(1).max(500).default(10),
  WEBHOOK_ATTEMPTS: Joi.number().integer().min(1).max(50).default(8),
  WEBHOOK_BACKOFF_MS: Joi.number().integer().min(1).default(2000),
  WEBHOOK_TIMEOUT_MS: Joi.number().integer().min(100).default(5000),
  WEBHOOK_ALLOW_PRIVATE: Joi.boolean().default(false),
  LOG_LEVEL: Joi.string().valid('silent', 'error', 'warn', 'info', 'debug').default('info'),
  BODY_LIMIT: Joi.string()
    .pattern(/^\d+(b|kb|mb)$/i)
    .default('256kb'),
  MIGRATION_LOCK_WAIT_SEC: Joi.number().integer().min(0).max(3600).default(30),
  TENANT_MIGRATIONS_DIR: Joi.string().optional(),
  BACKUP_DIR: Joi.string().default('backups'),
  TENANT_RETENTION_DAYS: Joi.number().min(0).max(3650).default(30),
  DASHBOARD_READ_ONLY: Joi.boolean().default(true),
}).unknown(true);

/** Thrown when the environment is invalid; one line per bad variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Validates an environment object (process.env by default) into a frozen Config. */
/* eslint-disable @typescript-eslint/no-unsafe-assignment -- `v` is the joi schema's output: its shape is guaranteed above */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const { value, error } = schema.validate(env, { abortEarly: false, convert: true });
  const v = value as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- shape guaranteed by the schema above
  const clusterNodes = typeof v.REDIS_CLUSTER_NODES === 'string' ? v.REDIS_CLUSTER_NODES.split(',') : undefined;
  const problems = (error?.details ?? []).map((d) => `${String(d.path[0])}: ${d.message.replace(/^"[^"]+" /, '')}`);
  problems.push(...exposedDevSecrets(v, new Set(problems.map((p) => p.split(':')[0]))));
  problems.push(...gatewayProblems(v, new Set(problems.map((p) => p.split(':')[0])), DEV_GATEWAY_SECRET));
  if (problems.length) throw new ConfigError(problems);
  return deepFreeze<Config>({
    nodeEnv: v.NODE_ENV,
    port: v.PORT,
    host: v.HOST,
    db: { host: v.DB_HOST, port: v.DB_PORT, user: v.DB_USER, password: v.DB_PASS, name: v.DB_NAME, poolMax: v.DB_POOL_MAX },
    tenant: {
      dbPrefix: v.TENANT_DB_PREFIX,
      userHost: v.TENANT_USER_HOST,
      cacheMax: v.TENANT_CACHE_MAX,
      poolMax: v.TENANT_POOL_MAX,
      connectionsMax: v.TENANT_CONNECTIONS_MAX,
      idleMs: v.TENANT_IDLE_MS,
      connectTimeoutMs: v.TENANT_CONNECT_TIMEOUT_MS,
      acquireTimeoutMs: v.TENANT_ACQUIRE_TIMEOUT_MS,
      retryAfterMs: v.TENANT_RETRY_AFTER_MS,
      probeAfterMs: v.TENANT_PROBE_AFTER_MS,
      switchWaitMs: v.TENANT_SWITCH_WAIT_MS,
    },
    warmPool: { size: v.TENANT_WARM_POOL_SIZE, refillMs: v.TENANT_WARM_POOL_REFILL_MS },
    orgCacheTtlMs: v.ORG_CACHE_TTL_MS,
    orgCacheMaxAgeMs: v.ORG_CACHE_MAX_AGE_MS,
    backupDir: resolvePath(v.BACKUP_DIR as string),
    retentionDays: v.TENANT_RETENTION_DAYS,
    defaultServerCapacity: v.DEFAULT_SERVER_CAPACITY,
    redisUrl: v.REDIS_URL,
    ...(clusterNodes ? { redisClusterNodes: clusterNodes } : {}),
    queuePrefix: clusterSafePrefix(v.QUEUE_PREFIX as string, Boolean(clusterNodes)),
    adminToken: v.ADMIN_TOKEN,
    secretKey: v.SECRET_KEY,
    defaultCredits: v.DEFAULT_CREDITS,
    rateLimit: { points: v.RATE_LIMIT_POINTS, duration: v.RATE_LIMIT_DURATION },
    authFailureLimit: { points: v.AUTH_FAILURE_LIMIT, duration: v.AUTH_FAILURE_WINDOW_SEC },
    trustProxy: typeof v.TRUST_PROXY === 'boolean' ? Number(v.TRUST_PROXY) : v.TRUST_PROXY,
    metricsPort: v.METRICS_PORT,
    workerPort: v.WORKER_PORT,
    queueMetrics: v.QUEUE_METRICS,
    gateway: v.GATEWAY,
    channelGateways: channelGateways(v),
    ...(smtpConfig(v) ? { smtp: smtpConfig(v) } : {}),
    gatewayOptions: {
      latencyMs: v.GATEWAY_LATENCY_MS,
      failureRate: v.GATEWAY_FAILURE_RATE,
      seed: v.GATEWAY_SEED,
      url: v.GATEWAY_URL,
      secret: v.GATEWAY_SECRET,
      timeoutMs: v.GATEWAY_TIMEOUT_MS,
    },
    delivery: {
      concurrency: v.WORKER_CONCURRENCY,
      attempts: v.DELIVERY_ATTEMPTS,
      backoffMs: v.DELIVERY_BACKOFF_MS,
      lockMs: v.WORKER_LOCK_MS,
      maxPostponements: v.DELIVERY_MAX_POSTPONEMENTS,
      orgConcurrency: v.ORG_DELIVERY_CONCURRENCY,
    },
    orgParkMaxMs: v.ORG_PARK_MAX_MS,
    failedJobs: { keepCount: v.FAILED_JOBS_KEEP_COUNT, keepAgeSec: v.FAILED_JOBS_KEEP_AGE_SEC },
    reconcile: { afterMs: v.RECONCILE_AFTER_MS, intervalMs: v.RECONCILE_INTERVAL_MS, lookbackMs: v.RECONCILE_REPAIR_LOOKBACK_MS },
    tenantStatementTimeoutMs: v.TENANT_STATEMENT_TIMEOUT_MS,
    idempotencyKeyTtlSec: v.IDEMPOTENCY_KEY_TTL_SEC,
    fairShareHalfLifeMs: v.FAIR_SHARE_HALF_LIFE_MS,
    shutdownTimeoutMs: v.SHUTDOWN_TIMEOUT_MS,
    webhooks: {
      concurrency: v.WEBHOOK_CONCURRENCY,
      attempts: v.WEBHOOK_ATTEMPTS,
      backoffMs: v.WEBHOOK_BACKOFF_MS,
      timeoutMs: v.WEBHOOK_TIMEOUT_MS,
      allowPrivate: v.WEBHOOK_ALLOW_PRIVATE,
      orgConcurrency: v.ORG_WEBHOOK_CONCURRENCY,
    },
    logLevel: v.LOG_LEVEL,
    bodyLimit: v.BODY_LIMIT,
    migrationLockWaitSec: v.MIGRATION_LOCK_WAIT_SEC,
    ...(v.TENANT_MIGRATIONS_DIR ? { tenantMigrationsDir: resolvePath(v.TENANT_MIGRATIONS_DIR as string) } : {}),
    dashboardReadOnly: v.DASHBOARD_READ_ONLY,
  });
}
/* eslint-enable @typescript-eslint/no-unsafe-assignment */

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4'); // also matches ::ffff:127.x.y.z
loopback.addAddress('::1', 'ipv6');

/** True when HOST binds to the loopback interface only (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true;
  const family = isIP(host);
  return family !== 0 && loopback.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * The public development secrets are refused on any interface but loopback: one line per secret still at its default.
 * Variables that already failed validation (`skip`) are not named twice.
 */
function exposedDevSecrets(v: Record<string, unknown>, skip: Set<string | undefined>): string[] {
  if (typeof v.HOST !== 'string' || isLoopbackHost(v.HOST)) return [];
  const defaults: [string, string, boolean][] = [
    ['ADMIN_TOKEN', DEV_ADMIN_TOKEN, true],
    ['SECRET_KEY', DEV_SECRET_KEY, true],
    ['GATEWAY_SECRET', DEV_GATEWAY_SECRET, usesHttpGateway(v)],
  ];
  return defaults
    .filter(([variable, dev, applies]) => applies && v[variable] === dev && !skip.has(variable))
    .map(
      ([variable]) =>
        `${variable}: is the public development default, refused with HOST=${String(v.HOST)} (not loopback); set your own ${variable} or bind HOST=127.0.0.1`,
    );
}

/** Loads `.env` from the working directory into process.env when present (never overrides). */
export function loadDotEnv(path = '.env'): void {
  if (existsSync(path)) process.loadEnvFile(path);
}

/** Reads one secret from the environment by name (CLI `--password-env VAR`). */
export function readEnvSecret(variable: string): string | undefined {
  return process.env[variable];
}

function deepFreeze<T extends object>(o: T): T {
  for (const value of Object.values(o)) if (value && typeof value === 'object') deepFreeze(value as object);
  return Object.freeze(o);
}

/**
 * The key prefix of the project (queues, limits, locks, slots, the org-events channel): in Cluster mode it carries a
 * hash tag, so every key of the project is in one slot and each multi-key script (BullMQ's, the org slots') can run.
 */
export function clusterSafePrefix(prefix: string, cluster: boolean): string {
  return cluster && hashTag(prefix) === undefined ? `{${prefix}}` : prefix;
}

/** Redis Cluster's hash tag of a key: what lies between its first `{` and the first `}` after it, if not empty. */
export function hashTag(key: string): string | undefined {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : undefined;
}
