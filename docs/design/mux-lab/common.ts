/** Shared bits for the mux-lab scripts: server address, tenant credentials, seeded PRNG and Zipf sampler. */
import mysql from 'mysql2';

export const HOST = '127.0.0.1';
export const PORT = 3306;
export const TENANTS = Number(process.env.MUXLAB_TENANTS ?? 1000);
export const ROWS_PER_TENANT = 30;

export interface TenantCreds {
  /** Stable key of the tenant (org id in the app). */
  key: string;
  user: string;
  password: string;
  database: string;
}

export const tenant = (i: number): TenantCreds => ({
  key: `t${i}`,
  user: `muxlab_u${i}`,
  password: `pw-${i}-muxlab-${(i * 7919) % 10007}`,
  database: `muxlab_t${i}`,
});

/** A root connection (callback API) for setup / inspection. */
export function rootConnection(opts: mysql.ConnectionOptions = {}): mysql.Connection {
  return mysql.createConnection({ host: HOST, port: PORT, user: 'root', password: '', multipleStatements: true, ...opts });
}

/** mulberry32: a small, fast, seedable PRNG in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Zipf(s) over ranks 0..n-1 (rank 0 most popular), via the CDF and binary search. */
export function zipfSampler(n: number, s: number, rand: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 1; k <= n; k++) {
    sum += 1 / Math.pow(k, s);
    cdf[k - 1] = sum;
  }
  for (let k = 0; k < n; k++) cdf[k] /= sum;
  return () => {
    const u = rand();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Threads of this server that belong to muxlab users or to root (for the connection-budget check). */
export async function countThreads(root: mysql.Connection): Promise<{ muxlab: number; total: number }> {
  const [rows] = await root.promise().query(
    "SELECT SUM(USER LIKE 'muxlab\\_%') AS muxlab, COUNT(*) AS total FROM information_schema.PROCESSLIST WHERE COMMAND <> 'Daemon'",
  );
  const r = (rows as Array<{ muxlab: string | null; total: number }>)[0]!;
  return { muxlab: Number(r.muxlab ?? 0), total: Number(r.total) };
}
