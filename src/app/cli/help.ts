/** The CLI's help: one usage line, a description and examples per command. Printed before any connection is opened. */

interface CommandHelp {
  usage: string;
  what: string;
  examples: string[];
  /** Reads only: never migrates the shared DB (says when it is behind). */
  readOnly?: boolean;
}

export const HELP: Record<string, CommandHelp> = {
  create: {
    usage: 'create <name> [--credits N] [--server NAME]',
    what: 'create and provision a tenant (database, user, migrations, first API key); prints the key once',
    examples: ['bin/tenant create "Acme Inc" --credits 100', 'bin/tenant create "Beta" --server eu-1 --json'],
  },
  list: {
    usage: 'list [--status S]',
    what: 'list orgs with their status and balance',
    examples: ['bin/tenant list', 'bin/tenant list --status FAILED --json'],
    readOnly: true,
  },
  show: { usage: 'show <id>', what: 'one org, with its keys (never a key or a password)', examples: ['bin/tenant show 7'], readOnly: true },
  migrate: {
    usage: 'migrate [--canary N] [--max-failures N] [--skip-failing] [--concurrency N] [--tenant ID ...] [--shared-only]',
    what: 'the shared DB, then a recorded rollout of the tenant migrations over every tenant behind (or the ones named): a canary wave (default 1%), then waves 10× larger, N at a time per MySQL server (default 4); halts past --max-failures (default 0); --json prints one JSON line per event, the result last',
    examples: [
      'bin/tenant migrate',
      'bin/tenant migrate --canary 20 --concurrency 8',
      'bin/tenant migrate --max-failures 5 --json',
      'bin/tenant migrate --tenant 7 --tenant 9',
      'bin/tenant migrate --shared-only',
    ],
  },
  rollout: {
    usage: 'rollout status|pause|resume|retry [ID]',
    what: 'operate a rollout (the latest without ID): counts, failures, rate and ETA; pause (running tenants finish, no new start); resume (also after the runner was killed; failed tenants stay failed); retry (the failed tenants again, then whatever is pending)',
    examples: [
      'bin/tenant rollout status',
      'bin/tenant rollout status 7 --json',
      'bin/tenant rollout pause',
      'bin/tenant rollout resume 7',
      'bin/tenant rollout retry',
    ],
  },
  status: {
    usage: 'status [--tenant ID ...]',
    what: "the fleet's schema from the shared DB alone: tenants per version, pending, failed, unreachable; with --tenant, that tenant's own applied and pending migrations",
    examples: ['bin/tenant status', 'bin/tenant status --json', 'bin/tenant status --tenant 7 --json'],
    readOnly: true,
  },
  doctor: {
    usage: 'doctor',
    what: "compare every tenant's real schema (tables, columns, indexes) with a reference database migrated to its version, one information_schema read per server; exit 1 when any drifted",
    examples: ['bin/tenant doctor', 'bin/tenant doctor --json'],
    readOnly: true,
  },
  rollback: {
    usage: 'rollback (--tenant ID ... | --force) [--step N]',
    what: 'revert the last N migrations (default 1) of the named tenants; of every tenant only with --force',
    examples: ['bin/tenant rollback --tenant 7', 'bin/tenant rollback --tenant 7 --step 2', 'bin/tenant rollback --force'],
  },
  limits: {
    usage: 'limits <id> [--delivery-concurrency N|default]',
    what: "an org's delivery cap (deliveries running at once across every worker) and its load now; set or reset the cap",
    examples: ['bin/tenant limits 7', 'bin/tenant limits 7 --delivery-concurrency 5', 'bin/tenant limits 7 --delivery-concurrency default'],
  },
  top: {
    usage: 'top [--limit N]',
    what: 'the orgs with the most deliveries running and parked now (across every worker), with their queued messages',
    examples: ['bin/tenant top', 'bin/tenant top --limit 20 --json'],
    readOnly: true,
  },
  provision: { usage: 'provision <id>', what: 'resume a provisioning that failed part-way', examples: ['bin/tenant provision 7'] },
  suspend: { usage: 'suspend <id>', what: "refuse the org's API requests (every process, at once)", examples: ['bin/tenant suspend 7'] },
  resume: { usage: 'resume <id>', what: "allow the org's API requests again", examples: ['bin/tenant resume 7'] },
  drop: {
    usage: 'drop <id> --force',
    what: 'offboard the tenant: the org becomes DELETED (the API refuses it like an unknown org), its MySQL user is locked and its database kept for TENANT_RETENTION_DAYS, then purged (a move of it is stopped first, and its copy dropped)',
    examples: ['bin/tenant drop 7 --force'],
  },
  undrop: {
    usage: 'undrop <id>',
    what: 'bring a dropped tenant back as it was (its status, database, keys; its user unlocked), until it is purged',
    examples: ['bin/tenant undrop 7'],
  },
  purge: {
    usage: 'purge <id>',
    what: "remove a dropped tenant's database, MySQL user and API keys now (otherwise done after TENANT_RETENTION_DAYS); its org row and ledger stay",
    examples: ['bin/tenant purge 7'],
  },
  backup: {
    usage: 'backup <id> [--to FILE] | backup --list [<id>]',
    what: "write a consistent snapshot of the tenant's database (one REPEATABLE READ transaction, streamed, gzip; its schema version, row counts, checksums and SHA-256) to BACKUP_DIR (or FILE) while it keeps working; --list: the backups in BACKUP_DIR",
    examples: ['bin/tenant backup 7', 'bin/tenant backup 7 --to /mnt/backups/acme.jsonl.gz --json', 'bin/tenant backup --list 7'],
  },
  restore: {
    usage: 'restore <id> --from FILE [--to-server NAME] [--force-foreign]',
    what: "check the backup whole (refused, nothing changed: BACKUP_INVALID, BACKUP_CORRUPT, BACKUP_TRUNCATED, BACKUP_FOREIGN for another org's), load it into a fresh database (same server, or NAME), verify counts and checksums, migrate it forward, switch the tenant to it (keeps id, keys, balance), drop the old copy after a grace period",
    examples: [
      'bin/tenant restore 7 --from org-7-20261206T161419Z.tenant-backup.jsonl.gz',
      'bin/tenant restore 7 --from /mnt/b.gz --to-server eu-1',
    ],
  },
  clone: {
    usage: 'clone <id> --name NAME [--credits N] [--server NAME]',
    what: "create a new org whose database is a copy of the source's (its own MySQL user, first API key and balance); the source is untouched; messages the source had not sent are copied as FAILED (CLONED_UNSENT)",
    examples: ['bin/tenant clone 7 --name "Acme staging"', 'bin/tenant clone 7 --name "Template copy" --credits 0 --json'],
  },
  export: {
    usage: 'export <id> [--to FILE]',
    what: "the tenant's data for portability as JSON Lines (the org, then its messages, then its ledger entries, then an end line with counts), streamed; on stdout without --to; also for a dropped tenant during its retention period",
    examples: ['bin/tenant export 7 > acme.jsonl', 'bin/tenant export 7 --to acme.jsonl --json'],
  },
  credits: {
    usage: 'credits <id> <amount> [--reference REF]',
    what: 'grant credits, or with a negative amount adjust them (never below zero); --reference makes it idempotent',
    examples: ['bin/tenant credits 7 500', 'bin/tenant credits 7 -- -5', 'bin/tenant credits 7 100 --reference invoice-42'],
  },
  keys: {
    usage: 'keys create <id> [--name NAME] | keys list <id> | keys revoke <id> <prefix>',
    what: "manage an org's API keys (a new key is shown once)",
    examples: ['bin/tenant keys create 7 --name ci', 'bin/tenant keys list 7', 'bin/tenant keys revoke 7 ab12cd34ef56'],
  },
  servers: {
    usage:
      'servers add <name> --host H --port P --user U --password-env VAR [--capacity N] | servers list | servers set <name> [--capacity N] [--host H] [--port P] [--user U] [--password-env VAR] | servers drain <name> | servers activate <name>',
    what: 'register MySQL servers that hold tenant databases (new tenants go to the least-loaded active one with room; one physical server is registered once); set a capacity or a new address (it must reach the same server); a draining server takes no new tenants, its tenants stay until moved',
    examples: [
      'DB2_PASS=… bin/tenant servers add eu-1 --host 10.0.0.5 --port 3306 --user admin --password-env DB2_PASS',
      'bin/tenant servers list',
      'bin/tenant servers set default --capacity 20000',
      'DB_PASS2=… bin/tenant servers set eu-1 --password-env DB_PASS2',
      'bin/tenant servers drain default',
      'bin/tenant servers activate default',
    ],
  },
  pool: {
    usage: 'pool [status] | pool fill',
    what: 'the warm pool of tenants provisioned ahead (TENANT_WARM_POOL_SIZE per active server; API processes keep it topped up) so that create only claims one: status shows ready, being made and failed ones per server; fill tops it up now (e.g. right after a deploy)',
    examples: ['bin/tenant pool', 'bin/tenant pool fill --json'],
  },
  accounts: {
    usage: 'accounts sync [--server NAME] [--concurrency N]',
    what: "gives every tenant's MySQL account the limits its sessions rely on (MariaDB: MAX_STATEMENT_TIME = TENANT_STATEMENT_TIMEOUT_MS), so that a connection switched to the tenant needs no session init: run it once after upgrading (tenants made by older versions) and after changing TENANT_STATEMENT_TIMEOUT_MS; idempotent, one ALTER USER per account",
    examples: ['bin/tenant accounts sync', 'bin/tenant accounts sync --server default --concurrency 8 --json'],
  },
  move: {
    usage: 'move <id> --to <server> | move <id> --abort',
    what: "move a tenant's database to another server while it keeps working: copy, catch up with its changes, pause its writes for the last ones only (about a second at most; reads go on), verify (counts and checksums), switch, drop the old copy. A failure leaves it on its old server, working. --abort stops a running move (or ends one a crash left)",
    examples: ['bin/tenant move 7 --to eu-1', 'bin/tenant move 7 --to eu-1 --json', 'bin/tenant move 7 --abort'],
  },
};

/** Read-only invocations: these never migrate or write the shared DB. */
export function isReadOnly(command: string, argv: readonly string[]): boolean {
  if (command === 'keys' || command === 'servers') return argv[0] === 'list';
  if (command === 'rollout') return argv[0] === 'status';
  if (command === 'pool') return argv[0] !== 'fill';
  if (command === 'backup') return argv.includes('--list');
  if (command === 'export') return true;
  return HELP[command]?.readOnly === true;
}

/** The global usage: every command on one line. */
export function globalHelp(): string {
  const width = Math.max(...Object.values(HELP).map((h) => h.usage.length));
  const lines = Object.values(HELP).map((h) =>
    h.usage.length > 46 ? `  ${h.usage}\n  ${''.padEnd(48)}${h.what}` : `  ${h.usage.padEnd(Math.min(width, 46))}  ${h.what}`,
  );
  return [
    'usage: bin/tenant <command> [options] [--json]',
    '',
    ...lines,
    '',
    'Every command takes --json (a machine-readable result on stdout; errors as {"error":{…}}), exits 0 on success,',
    '1 when it failed, 2 when it was called wrongly. `bin/tenant <command> --help` shows its examples.',
  ].join('\n');
}

/** One command's usage, description and examples. */
export function commandHelp(command: string): string {
  const h = HELP[command]!;
  return [`usage: bin/tenant ${h.usage} [--json]`, '', `  ${h.what}`, '', 'examples:', ...h.examples.map((e) => `  ${e}`)].join('\n');
}
