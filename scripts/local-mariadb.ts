/**
 * A throw-away MariaDB server for tests and benchmarks that need a second MySQL server (placement, per-server budgets,
 * a server going down or hanging, moving a tenant): `mariadbd` on a free loopback port with its own data directory, made by
 * `mariadb-install-db` (root without a password, TCP on 127.0.0.1 only). `stop()`/`kill()` and `start()` again keep
 * the data; `destroy()` removes everything.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { freePort } from './free-port.js';

const run = promisify(execFile);

export interface LocalMariaDb {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** Starts the server (again) on the same port and data directory; resolves once it answers. */
  start(): Promise<void>;
  /** Stops it cleanly (SIGTERM) and waits for the process to end. */
  stop(): Promise<void>;
  /** Kills it (SIGKILL): connections drop at once, the port refuses new ones. */
  kill(): Promise<void>;
  /** Stops it and removes its data directory. */
  destroy(): Promise<void>;
  /** Freezes it (SIGSTOP): the kernel still accepts TCP connections, nothing answers. */
  freeze(): void;
  /** Lets a frozen server run again (SIGCONT); harmless when it is not frozen. */
  thaw(): void;
}

async function answers(port: number): Promise<boolean> {
  try {
    const c = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', connectTimeout: 500 });
    await c.end();
    return true;
  } catch {
    return false;
  }
}

/** Creates a data directory and starts a MariaDB server on a free port (InnoDB buffer pool: 32 MB unless told). */
export async function startLocalMariaDb(opts: { bufferPoolMb?: number } = {}): Promise<LocalMariaDb> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tenancy-mariadb-'));
  const asRoot = process.getuid?.() === 0 ? ['--user=root'] : [];
  await run('mariadb-install-db', [
    '--no-defaults',
    `--datadir=${dir}/data`,
    '--auth-root-authentication-method=normal',
    '--skip-test-db',
    ...asRoot,
  ]);
  const port = await freePort();
  let child: ChildProcess | undefined;

  const ended = (c: ChildProcess) => new Promise<void>((resolve) => (c.exitCode !== null ? resolve() : c.once('exit', () => resolve())));
  async function halt(signal: NodeJS.Signals): Promise<void> {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    c.kill('SIGCONT'); // a frozen server would not act on the signal
    c.kill(signal);
    await ended(c);
  }

  const server: LocalMariaDb = {
    host: '127.0.0.1',
    port,
    async start() {
      if (child) return;
      const c = spawn(
        'mariadbd',
        [
          '--no-defaults',
          `--datadir=${dir}/data`,
          `--port=${port}`,
          '--bind-address=127.0.0.1',
          `--socket=${dir}/mysqld.sock`,
          `--pid-file=${dir}/mysqld.pid`,
          `--log-error=${dir}/error.log`,
          `--innodb-buffer-pool-size=${opts.bufferPoolMb ?? 32}M`,
          '--max-connections=300',
          ...asRoot,
        ],
        { stdio: 'ignore' },
      );
      child = c;
      for (let i = 0; i < 200; i++) {
        if (c.exitCode !== null) throw new Error(`mariadbd exited with code ${c.exitCode}; see ${dir}/error.log`);
        if (await answers(port)) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`mariadbd on port ${port} did not answer within 20 s; see ${dir}/error.log`);
    },
    stop: () => halt('SIGTERM'),
    freeze() {
      if (!child || child.exitCode !== null) throw new Error('the local MariaDB server is not running');
      child.kill('SIGSTOP');
    },
    thaw() {
      if (child && child.exitCode === null) child.kill('SIGCONT');
    },
    kill: () => halt('SIGKILL'),
    async destroy() {
      await halt('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
