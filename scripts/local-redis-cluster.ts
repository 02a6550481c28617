/**
 * A throw-away Redis Cluster for tests and benchmarks of Cluster mode: `redis-server` nodes (3 masters with 1 replica
 * each by default) on free loopback ports, each with its own cluster config file in one temporary directory, joined by
 * `redis-cli --cluster create`. No persistence. Tuned for fast automatic failover: a short node timeout, replicas that
 * always count as fresh enough to take over, replication that starts at once. `kill(port)` (SIGKILL) a master and its
 * replica takes over within a few seconds; `start(port)` brings the node back on the same port and config file, where
 * it rejoins as a replica. `destroy()` removes everything; the nodes also die with the Node process that started
 * them (on its exit, and through a small watchdog when it is killed).
 *
 * Measured here (2 cores): start about 2.2-2.7 s (a master refuses to serve for its first 2 s: Redis's writable
 * delay); with the default 1 s node timeout a killed master's slots are served again after 2-3 s (about 1.5-2 s with
 * nodeTimeoutMs 500); a restarted node is back and synced in about 0.1 s.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort } from './free-port.js';

const run = promisify(execFile);

export interface LocalRedisCluster {
  /** "127.0.0.1:port" of every master at start, comma-joinable into REDIS_CLUSTER_NODES. */
  readonly nodes: string[];
  /** Ports of every node (masters and replicas), in start order. */
  readonly ports: number[];
  /** Port of the master currently serving the slot of `key` (as a live node sees it). */
  masterFor(key: string): Promise<number>;
  /** Kills that node's process (SIGKILL) and waits for it to end. */
  kill(port: number): Promise<void>;
  /** Starts a killed node again on the same port and config file; resolves once it answers (after a failover it rejoins as a replica). */
  start(port: number): Promise<void>;
  /**
   * Resolves once every live node says cluster_state:ok, all live nodes agree on who serves each of the 16384 slots,
   * every slot is served by a live master, and every live replica's link to its master is up.
   */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Kills every node and removes the directory. */
  destroy(): Promise<void>;
}

export interface LocalRedisClusterOptions {
  /** @default 3 */
  masters?: number;
  /** @default 1 */
  replicasPerMaster?: number;
  /** `cluster-node-timeout`: a master unreachable this long is failed over. @default 1000 */
  nodeTimeoutMs?: number;
}

const SLOTS = 16384;

/** Distinct free ports (two per node: the client port and the cluster bus port). */
async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

/** One command to one node on a short-lived connection: no retries, no reconnecting; throws when the node is down. */
async function ask(port: number, ...args: (string | number)[]): Promise<unknown> {
  const r = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    connectTimeout: 500,
    commandTimeout: 1000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableReadyCheck: false,
    protocol: 2,
  });
  r.on('error', () => {});
  try {
    await r.connect();
    const [command, ...rest] = args;
    return await r.call(String(command), ...rest);
  } finally {
    r.disconnect();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `CLUSTER SLOTS` reduced to [first slot, last slot, master port] ranges. */
type SlotRange = [number, number, number];
function slotRanges(reply: unknown): SlotRange[] {
  return (reply as [number, number, [string, number, ...unknown[]]][]).map(([from, to, [, port]]) => [from, to, port]);
}

/** Starts the nodes, joins them into a cluster and resolves once it is healthy. */
export async function startLocalRedisCluster(opts: LocalRedisClusterOptions = {}): Promise<LocalRedisCluster> {
  const masters = opts.masters ?? 3;
  const replicasPerMaster = opts.replicasPerMaster ?? 1;
  const nodeTimeoutMs = opts.nodeTimeoutMs ?? 1000;
  if (masters < 3) throw new Error('Redis Cluster needs at least 3 masters');
  const count = masters * (1 + replicasPerMaster);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tenancy-redis-cluster-'));
  const free = await freePorts(2 * count);
  const ports = free.slice(0, count);
  const busPort = new Map(ports.map((p, i) => [p, free[count + i]!]));
  const children = new Map<number, ChildProcess>();

  // Kill every node when this process ends: at once on a normal exit, and through a watchdog shell (which outlives
  // us) when we are killed by a signal. The watchdog reads the pid files, which kill() removes for dead nodes.
  const killAll = () => {
    for (const c of children.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  const watchdog = spawn(
    'sh',
    [
      '-c',
      'while kill -0 "$1" 2>/dev/null; do sleep 1; done; for f in "$2"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")"; done; rm -rf "$2"',
      'redis-cluster-watchdog',
      String(process.pid),
      dir,
    ],
    { stdio: 'ignore' },
  );
  watchdog.unref();
  const onExit = () => {
    killAll();
    watchdog.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  const running = (port: number) => {
    const c = children.get(port);
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  };
  const ended = (c: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) return resolve();
      c.ref(); // an unref'd child would let Node exit while we wait for it
      c.once('exit', () => {
        c.unref();
        resolve();
      });
    });

  async function startNode(port: number): Promise<void> {
    if (!busPort.has(port)) throw new Error(`no node of this cluster has port ${port}`);
    if (running(port)) return;
    const config: Record<string, string> = {
      port: String(port),
      bind: '127.0.0.1',
      'cluster-enabled': 'yes',
      'cluster-port': String(busPort.get(port)),
      'cluster-config-file': `${dir}/nodes-${port}.conf`,
      'cluster-node-timeout': String(nodeTimeoutMs),
      // A replica takes over however long it has been cut off from its master.
      'cluster-replica-validity-factor': '0',
      'repl-ping-replica-period': '1',
      // Replicas sync at once (the default waits 5 s for more replicas to share a diskless transfer).
      'repl-diskless-sync': 'yes',
      'repl-diskless-sync-delay': '0',
      appendonly: 'no',
      save: '',
      dir,
      dbfilename: `dump-${port}.rdb`,
      pidfile: `${dir}/redis-${port}.pid`,
      logfile: `${dir}/redis-${port}.log`,
      daemonize: 'no',
    };
    const c = spawn(
      'redis-server',
      Object.entries(config).flatMap(([name, value]) => [`--${name}`, value]),
      { stdio: 'ignore' },
    );
    c.unref();
    children.set(port, c);
    for (let i = 0; i < 100; i++) {
      if (c.exitCode !== null || c.signalCode !== null) {
        throw new Error(`redis-server on port ${port} exited (${c.exitCode ?? c.signalCode}); see ${dir}/redis-${port}.log`);
      }
      try {
        if ((await ask(port, 'PING')) === 'PONG') return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`redis-server on port ${port} did not answer within 5 s; see ${dir}/redis-${port}.log`);
  }

  async function liveAnswer(...args: string[]): Promise<unknown> {
    let last: unknown = new Error('no node is running');
    for (const port of ports) {
      if (!running(port)) continue;
      try {
        return await ask(port, ...args);
      } catch (e) {
        last = e;
      }
    }
    throw last;
  }

  /** Why the cluster is not healthy yet, or undefined when it is. */
  async function unhealthy(): Promise<string | undefined> {
    const live = ports.filter(running);
    let agreed: string | undefined;
    for (const port of live) {
      let info: string, slots: SlotRange[], replication: string;
      try {
        info = String(await ask(port, 'CLUSTER', 'INFO'));
        slots = slotRanges(await ask(port, 'CLUSTER', 'SLOTS'));
        replication = String(await ask(port, 'INFO', 'replication'));
      } catch (e) {
        return `${port}: ${(e as Error).message}`;
      }
      if (!/^cluster_state:ok\r?$/m.test(info)) return `${port}: cluster_state is not ok`;
      slots.sort((a, b) => a[0] - b[0]);
      let next = 0;
      for (const [from, to, master] of slots) {
        if (from !== next) return `${port}: slots ${next}-${from - 1} have no master`;
        if (!running(master)) return `${port}: slots ${from}-${to} are served by ${master}, which is down`;
        next = to + 1;
      }
      if (next !== SLOTS) return `${port}: slots ${next}-${SLOTS - 1} have no master`;
      const view = JSON.stringify(slots);
      if (agreed !== undefined && view !== agreed) return `${port}: sees other masters than ${live[0]}`;
      agreed = view;
      if (/^role:slave\r?$/m.test(replication) && !/^master_link_status:up\r?$/m.test(replication)) {
        return `${port}: replica whose link to its master is not up`;
      }
    }
    return undefined;
  }

  async function waitHealthy(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const why = await unhealthy();
      if (why === undefined) return;
      if (Date.now() > deadline) throw new Error(`Redis Cluster in ${dir} not healthy after ${timeoutMs} ms: ${why}`);
      await sleep(100);
    }
  }

  async function destroy(): Promise<void> {
    killAll();
    await Promise.all([...children.values()].map(ended));
    watchdog.kill('SIGKILL');
    process.removeListener('exit', onExit);
    await rm(dir, { recursive: true, force: true });
  }

  try {
    await Promise.all(ports.map(startNode));
    await run(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicasPerMaster), '--cluster-yes'],
      { timeout: 30_000 },
    );
    await waitHealthy();
    const masterPorts = new Set(slotRanges(await liveAnswer('CLUSTER', 'SLOTS')).map(([, , port]) => port));
    const nodes = ports.filter((p) => masterPorts.has(p)).map((p) => `127.0.0.1:${p}`);
    return {
      nodes,
      ports: [...ports],
      async masterFor(key) {
        const slot = Number(await liveAnswer('CLUSTER', 'KEYSLOT', key));
        const range = slotRanges(await liveAnswer('CLUSTER', 'SLOTS')).find(([from, to]) => from <= slot && slot <= to);
        if (!range) throw new Error(`no master serves slot ${slot}`);
        return range[2];
      },
      async kill(port) {
        const c = children.get(port);
        if (!c) throw new Error(`no node on port ${port}`);
        c.kill('SIGKILL');
        await ended(c);
        await rm(`${dir}/redis-${port}.pid`, { force: true });
      },
      start: startNode,
      waitHealthy,
      destroy,
    };
  } catch (e) {
    await destroy();
    throw e;
  }
}
