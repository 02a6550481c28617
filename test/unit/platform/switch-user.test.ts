import { createRequire } from 'node:module';
import path from 'node:path';
import { expect } from 'chai';
import { nativePasswordToken, passwordHashes, switchUser } from '../../../src/platform/tenant-connections/switch-user.js';

const require = createRequire(import.meta.url);
const auth41 = require(path.join(path.dirname(require.resolve('mysql2/package.json')), 'lib/auth_41.js')) as {
  calculateToken(password: string, s1: Buffer, s2: Buffer): Buffer;
};

describe('switchUser: the auth switch answered from cached password hashes', () => {
  it('gives the same mysql_native_password token as mysql2 for any scramble (with the trailing NUL MariaDB sends)', () => {
    const hashes = passwordHashes('s3cret-ü-passwort');
    for (let seed = 1; seed <= 50; seed++) {
      const scramble = Buffer.from(Array.from({ length: 20 }, (_, i) => (seed * 31 + i * 17) % 256));
      const expected = auth41.calculateToken('s3cret-ü-passwort', scramble.subarray(0, 8), scramble.subarray(8, 20));
      expect(nativePasswordToken(hashes, Buffer.concat([scramble, Buffer.from([0])]))).to.deep.equal(expected);
    }
  });

  it('sends an empty token for an empty password, as mysql2 does', () => {
    const scramble = Buffer.from(Array.from({ length: 20 }, (_, i) => i));
    expect(nativePasswordToken(passwordHashes(''), scramble)).to.deep.equal(
      auth41.calculateToken('', scramble.subarray(0, 8), scramble.subarray(8, 20)),
    );
    expect(nativePasswordToken(passwordHashes(''), scramble)).to.have.length(0);
  });

  it("uses a connection's own changeUser when it has no mysql2 command queue (the unit tests' fakes)", async () => {
    const calls: unknown[] = [];
    const fake = { changeUser: (o: unknown, cb: (err: Error | null) => void) => (calls.push(o), cb(null)) };
    const login = { user: 'u', password: 'p', database: 'd' };
    await new Promise<void>((resolve, reject) => switchUser(fake as never, login, 45, (err) => (err ? reject(err) : resolve())));
    expect(calls).to.deep.equal([login]);
  });
});
