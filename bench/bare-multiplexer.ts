/**
 * The fleet's bare baseline (bench/fleet.bench.ts runs it as a process of its own): bare Koa and mysql2 connections
 * multiplexed over the tenants' own MySQL users the simplest way (an idle connection already logged in as the tenant;
 * else a new connection while under the budget; else `COM_CHANGE_USER` on the least recently used idle one, where the
 * API takes the coldest tenant's; else wait in line), answering `GET /messages` for the tenant `X-Org-Id` names with the same SELECT, and
 * nothing else: no API key, no limits, no deadlines, no session checks, no metrics. What switching costs on this
 * machine without any of the API's work around it.
 *
 *   node --import tsx bench/bare-multiplexer.ts <tenants.json> <connections> [change-user|role]
 *
 * tenants.json (written by the fleet bench, mode 0600, removed after): `{ host, port, tenants: [{ id, user, password,
 * database, role? }], router?: { user, password } }` (`role` mode: see byRole). Prints
 * `listening on http://127.0.0.1:<port>`; `GET /stats` answers its switch and open counts.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import mysql from 'mysql2';

interface Login {
  id: number;
  user: string;
  password: string;
  database: string;
  /** With `role` mode: the tenant's MariaDB role (SELECT on its database), granted to the router login. */
  role?: string;
}
interface Session {
  conn: mysql.Connection;
  tenant: number;
}

const [file, max, mode] = [process.argv[2]!, Number(process.argv[3] ?? 20), process.argv[4] ?? 'change-user'];
const { host, port, tenants, router } = JSON.parse(readFileSync(file, 'utf8')) as {
  host: string;
  port: number;
  tenants: Login[];
  router?: { user: string; password: string };
};
/**
 * 'role': every connection logs in as the router login, which holds every tenant's role; a session changes tenant with
 * `SET ROLE r; USE db` sent with the statement in one multi-statement (one round trip; MariaDB runs none of the rest
 * once one fails). What the identity switch would cost with roles instead of COM_CHANGE_USER (issue 19, item 2).
 */
const byRole = mode === 'role';
if (byRole && !router) throw new Error('role mode needs a router login in the tenants file');
const logins = new Map(tenants.map((t) => [t.id, t]));
const LIST_SQL = 'SELECT * FROM messages ORDER BY id DESC LIMIT 20';

let open = 0;
const counts = { switches: 0, opens: 0, requests: 0 };
/** Idle sessions, least recently used first (a Set keeps insertion order), and the same by tenant. */
const idle = new Set<Session>();
const idleOf = new Map<number, Session[]>();
const waiting: Array<{ login: Login; give: (s: Session) => void }> = [];

const asPromise = (run: (cb: (err: Error | null) => void) => void) =>
  new Promise<void>((resolve, reject) => run((err) => (err ? reject(err) : resolve())));

function park(s: Session): void {
  idle.add(s);
  const list = idleOf.get(s.tenant);
  if (list) list.push(s);
  else idleOf.set(s.tenant, [s]);
}

function unpark(s: Session): void {
  idle.delete(s);
  const list = idleOf.get(s.tenant)!;
  list.splice(list.indexOf(s), 1);
  if (list.length === 0) idleOf.delete(s.tenant);
}

async function switchTo(s: Session, login: Login): Promise<Session> {
  if (byRole) return s; // switched in one packet with the request's statement (the handler below)
  counts.switches++;
  await asPromise((cb) => s.conn.changeUser({ user: login.user, password: login.password, database: login.database }, cb));
  s.tenant = login.id;
  return s;
}

async function acquire(login: Login): Promise<Session> {
  const same = idleOf.get(login.id)?.at(-1);
  if (same) {
    unpark(same);
    return same;
  }
  if (open < max) {
    open++;
    counts.opens++;
    // A small statement cache, as the API's: mysql2 empties it on every switch by filling its whole capacity (16,000).
    const conn = mysql.createConnection({
      host,
      port,
      ...(byRole ? { ...router, multipleStatements: true } : { user: login.user, password: login.password, database: login.database }),
      maxPreparedStatements: 16,
    });
    await asPromise((cb) => conn.connect(cb));
    return { conn, tenant: byRole ? 0 : login.id };
  }
  const lru = idle.values().next().value;
  if (lru) {
    unpark(lru);
    return switchTo(lru, login);
  }
  const s = await new Promise<Session>((give) => waiting.push({ login, give }));
  return s.tenant === login.id ? s : switchTo(s, login);
}

/** To the first in line (switching if it is another tenant's), as the API's queue does. */
function release(s: Session): void {
  const next = waiting.shift();
  if (next) next.give(s);
  else park(s);
}

const app = new Koa();
app.use(async (ctx) => {
  if (ctx.path === '/stats') {
    ctx.body = counts;
    return;
  }
  const login = logins.get(Number(ctx.get('X-Org-Id')));
  if (!login) return ctx.throw(404);
  counts.requests++;
  const s = await acquire(login);
  try {
    const switching = byRole && s.tenant !== login.id;
    const sql = switching ? `SET ROLE \`${login.role!}\`; USE \`${login.database}\`; ${LIST_SQL}` : LIST_SQL;
    if (switching) {
      counts.switches++;
      s.tenant = -1; // until the answer says it switched
    }
    const rows = await new Promise<unknown>((resolve, reject) => s.conn.query(sql, (err, r) => (err ? reject(err) : resolve(r))));
    if (switching) s.tenant = login.id;
    ctx.body = switching ? (rows as unknown[])[2] : rows;
  } finally {
    release(s);
  }
});
const server = app.listen(0, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});
process.on('SIGTERM', () => process.exit(0));
