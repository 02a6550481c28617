/** A free loopback port for the throw-away servers of tests and benchmarks. */
import net from 'node:net';

/** A port the OS says is free on 127.0.0.1 (it could be taken again before the server binds it; the server reports that). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
