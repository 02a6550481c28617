/** Real processes for the fault suites: `src/main.ts` as a child (API, workers or both) in this run's environment. */
import { spawn, type ChildProcess } from 'node:child_process';
import { ROOT, TEST_ENV } from './helpers.js';

export interface MainProcess {
  child: ChildProcess;
  /** The API's URL (roles all and api), or the worker's own URL of /health, /ready and /metrics (role worker). */
  url: string;
  /** What the child printed on stdout so far, and a way to await a line. */
  lines: { all(): string; waitFor(text: string): Promise<void> };
}

/** src/main.ts as `npm start` runs it: with the tracing preload (which loads nothing unless OTEL_* ask for traces). */
const MAIN = ['--import', 'tsx', '--import', './src/platform/telemetry/preload.ts', 'src/main.ts'];

/**
 * Starts `src/main.ts --role <role>` on ephemeral ports; resolves once it is up: its banner (API or worker listening)
 * comes after the workers started and the signals are handled.
 */
export async function startMain(env: Record<string, string> = {}, role: 'all' | 'api' | 'worker' = 'all'): Promise<MainProcess> {
  const child = spawn(process.execPath, [...MAIN, '--role', role], {
    cwd: ROOT,
    // Workers log at info unless told otherwise: the fault suites read their lines ('workers started', superseded runs).
    env: {
      ...process.env,
      ...TEST_ENV,
      PORT: '0',
      WORKER_PORT: '0',
      HOST: '127.0.0.1',
      ...(role === 'worker' ? { LOG_LEVEL: 'info' } : {}),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of [...waiters])
      if (out.includes(w.text)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
  });
  child.stderr.resume();
  const lines = {
    all: () => out,
    /** Resolves when the output contains `text` (an event of the child, not a timer). */
    waitFor: (text: string) => new Promise<void>((resolve) => (out.includes(text) ? resolve() : waiters.push({ text, resolve }))),
  };
  const started = lines.waitFor('listening on ');
  const early = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`main exited early with ${code}: ${out}`))),
  );
  early.catch(() => undefined); // once started, a later exit is what the tests wait for
  await Promise.race([started, early]);
  const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1] ?? '';
  return { child, url, lines };
}

/** Resolves with the child's exit code and signal. */
export const exited = (child: ChildProcess) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.exitCode !== null || child.signalCode !== null
      ? resolve({ code: child.exitCode, signal: child.signalCode })
      : child.once('exit', (code, signal) => resolve({ code, signal })),
  );

/** Kills a child with SIGKILL (continuing it first if stopped) and waits for it to be gone. */
export async function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = exited(child);
  child.kill('SIGCONT');
  child.kill('SIGKILL');
  await gone;
}

/** A throwaway redis-server on `port` (nothing on disk), in the foreground so that a test can stop or freeze it. */
export async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('Ready to accept connections')) resolve();
    });
    child.once('exit', () => reject(new Error('redis-server exited')));
  });
  return child;
}

export async function stopRedis(child: ChildProcess): Promise<void> {
  const gone = exited(child);
  child.kill('SIGCONT');
  child.kill('SIGTERM');
  await gone;
}
