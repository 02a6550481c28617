import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { expect } from 'chai';
import { ADMIN_TOKEN, ROOT, TEST_ENV } from './helpers.js';

/** Starts `src/main.ts` (all in one: API + workers) on an ephemeral port; resolves with its URL and its output. */
async function startMain(env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...TEST_ENV, PORT: '0', HOST: '127.0.0.1', ...env },
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
  const lines = {
    all: () => out,
    /** Resolves when the output contains `text` (an event of the child, not a timer). */
    waitFor: (text: string) => new Promise<void>((resolve) => (out.includes(text) ? resolve() : waiters.push({ text, resolve }))),
  };
  const started = lines.waitFor('listening on ');
  const early = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`main exited early with ${code}`))));
  early.catch(() => undefined); // once started, a later exit is what the tests wait for
  await Promise.race([started, early]);
  const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
  return { child, url, lines };
}

const exited = (child: ChildProcess) => new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

describe('graceful shutdown of `npm start` (API + workers)', () => {
  it('on SIGTERM stops accepting, finishes, closes pools and Redis, and exits 0', async function () {
    this.timeout(30_000);
    const { child, url } = await startMain();
    expect((await fetch(`${url}/health`)).status).to.equal(200);
    const done = exited(child);
    child.kill('SIGTERM');
    expect(await done).to.equal(0);
    const refused = await fetch(`${url}/health`).then(
      () => 'answered',
      () => 'refused',
    );
    expect(refused).to.equal('refused');
  });

  it('exits at once with code 1 on a second signal while a request is still in flight', async function () {
    this.timeout(30_000);
    const { child, url, lines } = await startMain({ LOG_LEVEL: 'info' });
    // A request whose body never finishes arriving: the graceful path has to wait for it.
    const { port } = new URL(url);
    const socket = net.connect(Number(port), '127.0.0.1');
    socket.on('error', () => undefined); // the forced exit resets it: that is the point
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    await new Promise<void>((resolve) =>
      socket.write(
        `POST /orgs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{`,
        () => resolve(),
      ),
    );
    const done = exited(child);
    child.kill('SIGTERM');
    await lines.waitFor('shutting down');
    child.kill('SIGTERM');
    expect(await done).to.equal(1);
    expect(lines.all()).to.contain('second signal: forcing exit');
    socket.destroy();
  });
});
