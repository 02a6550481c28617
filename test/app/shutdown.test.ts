import net from 'node:net';
import { expect } from 'chai';
import { ADMIN_TOKEN } from '../helpers.js';
import { exited, startMain } from '../processes.js';

describe('graceful shutdown of `npm start` (API + workers)', () => {
  it('on SIGTERM stops accepting, finishes, closes pools and Redis, and exits 0', async function () {
    this.timeout(30_000);
    const { child, url } = await startMain();
    expect((await fetch(`${url}/health`)).status).to.equal(200);
    const done = exited(child);
    child.kill('SIGTERM');
    expect((await done).code).to.equal(0);
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
    expect((await done).code).to.equal(1);
    expect(lines.all()).to.contain('second signal: forcing exit');
    socket.destroy();
  });
});
