import { spawn } from 'node:child_process';
import { expect } from 'chai';
import { ConfigError, DEV_ADMIN_TOKEN, loadConfig } from '../../config/config.js';
import { ROOT } from '../helpers.js';

describe('configuration', () => {
  it('has defaults that work on a development machine', () => {
    const c = loadConfig({});
    expect(c).to.deep.include({
      port: 4000,
      redisUrl: 'redis://127.0.0.1:6379',
      queuePrefix: 'bull',
      defaultCredits: 100,
      gateway: 'simulated',
    });
    expect(c.db).to.deep.include({ host: '127.0.0.1', port: 3306, user: 'root', password: '', name: 'tenancy_shared' });
    expect(c.tenant.dbPrefix).to.equal('tenant_');
    expect(Object.isFrozen(c) && Object.isFrozen(c.db)).to.equal(true);
  });

  it('names every bad variable on its own line', () => {
    try {
      loadConfig({ PORT: 'abc', DB_PORT: '70000', TENANT_DB_PREFIX: 'bad-prefix;', REDIS_URL: 'http://x', GATEWAY: 'carrier-pigeon' });
      expect.fail('should have thrown');
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError);
      const problems = (err as ConfigError).problems;
      expect(problems.map((p) => p.split(':')[0])).to.have.members(['PORT', 'DB_PORT', 'TENANT_DB_PREFIX', 'REDIS_URL', 'GATEWAY']);
    }
  });

  it('REDIS_CLUSTER_NODES: Cluster mode with a hash-tagged prefix (kept when it has one); a malformed list is refused', () => {
    const c = loadConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000,redis-b.internal:7001', QUEUE_PREFIX: 'acme' });
    expect(c.redisClusterNodes).to.deep.equal(['10.0.0.1:7000', 'redis-b.internal:7001']);
    expect(c.queuePrefix).to.equal('{acme}');
    expect(loadConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000', QUEUE_PREFIX: 'acme-{eu}' }).queuePrefix).to.equal('acme-{eu}');
    // Redis takes the first {…} only, and an empty one is no tag at all.
    expect(loadConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000', QUEUE_PREFIX: 'x{}{y}' }).queuePrefix).to.equal('{x{}{y}}');
    expect(loadConfig({}).redisClusterNodes).to.equal(undefined);
    for (const bad of ['10.0.0.1', '10.0.0.1:7000,', 'redis://10.0.0.1:7000', '10.0.0.1:7000;10.0.0.2:7000']) {
      expect(() => loadConfig({ REDIS_CLUSTER_NODES: bad }), bad).to.throw(ConfigError, /REDIS_CLUSTER_NODES/);
    }
  });

  it('requires ADMIN_TOKEN and SECRET_KEY in production, and refuses the development defaults', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).to.throw(ConfigError, /ADMIN_TOKEN[\s\S]*SECRET_KEY|SECRET_KEY[\s\S]*ADMIN_TOKEN/);
    expect(() => loadConfig({ NODE_ENV: 'production', ADMIN_TOKEN: DEV_ADMIN_TOKEN, SECRET_KEY: 'k'.repeat(40) })).to.throw(
      ConfigError,
      /ADMIN_TOKEN/,
    );
    expect(loadConfig({ NODE_ENV: 'production', ADMIN_TOKEN: 'a'.repeat(20), SECRET_KEY: 'k'.repeat(40) }).nodeEnv).to.equal('production');
    const http = {
      NODE_ENV: 'production',
      ADMIN_TOKEN: 'a'.repeat(20),
      SECRET_KEY: 'k'.repeat(40),
      GATEWAY: 'http',
      GATEWAY_URL: 'https://sms.example.com/send',
    };
    expect(() => loadConfig(http)).to.throw(ConfigError, /GATEWAY_SECRET/);
    expect(loadConfig({ ...http, GATEWAY_SECRET: 's'.repeat(32) }).gatewayOptions.secret).to.equal('s'.repeat(32));
  });

  it('makes `npm start` exit 2 with one line per bad variable, before opening any connection', async () => {
    // DB_HOST points nowhere routable: had it tried to connect, it would hang or fail with a connection error instead.
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', PORT: 'not-a-port', LOG_LEVEL: 'loud', DB_HOST: '203.0.113.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).to.equal(2);
    expect(stderr).to.match(/^Invalid configuration:\n {2}- PORT: .+\n {2}- LOG_LEVEL: .+\n$/);
  });

  it('reads TRUST_PROXY as a number of proxy hops (0 by default), the former true/false as 1/0, and refuses anything else', () => {
    expect(loadConfig({}).trustProxy).to.equal(0);
    expect(['0', '1', '2', 'true', 'false', 'TRUE'].map((v) => loadConfig({ TRUST_PROXY: v }).trustProxy)).to.deep.equal([
      0, 1, 2, 1, 0, 1,
    ]);
    for (const [bad, reason] of [
      ['-1', 'must be greater than or equal to 0'],
      ['1.5', 'must be an integer'],
      ['yes', 'must be the number of trusted proxy hops (0, 1, 2, …) or true (= 1) / false (= 0)'],
    ]) {
      expect(() => loadConfig({ TRUST_PROXY: bad }))
        .to.throw(ConfigError)
        .with.property('problems')
        .that.deep.equals([`TRUST_PROXY: ${reason}`]);
    }
  });

  it('reads WEBHOOK_ALLOW_PRIVATE as a boolean, false by default', () => {
    expect(loadConfig({}).webhooks.allowPrivate).to.equal(false);
    expect(loadConfig({ WEBHOOK_ALLOW_PRIVATE: 'true' }).webhooks.allowPrivate).to.equal(true);
    expect(() => loadConfig({ WEBHOOK_ALLOW_PRIVATE: 'maybe' }))
      .to.throw(ConfigError)
      .with.property('problems')
      .that.deep.equals(['WEBHOOK_ALLOW_PRIVATE: must be a boolean']);
  });

  it('binds HOST to 127.0.0.1 by default outside production, and to 0.0.0.0 in production', () => {
    expect(loadConfig({}).host).to.equal('127.0.0.1');
    expect(loadConfig({ NODE_ENV: 'test' }).host).to.equal('127.0.0.1');
    expect(loadConfig({ NODE_ENV: 'production', ADMIN_TOKEN: 'a'.repeat(20), SECRET_KEY: 'k'.repeat(40) }).host).to.equal('0.0.0.0');
  });

  it('refuses the public development secrets on any HOST but loopback, one line per secret (GATEWAY_SECRET only with GATEWAY=http)', () => {
    const refused = (variable: string, host: string) =>
      `${variable}: is the public development default, refused with HOST=${host} (not loopback); set your own ${variable} or bind HOST=127.0.0.1`;
    for (const host of ['127.0.0.1', '127.8.9.10', 'localhost', 'LocalHost', '::1', '::ffff:127.0.0.1']) {
      expect(loadConfig({ HOST: host, GATEWAY: 'http', GATEWAY_URL: 'http://127.0.0.1:9/send' }).adminToken, host).to.equal(
        DEV_ADMIN_TOKEN,
      );
    }
    expect(() => loadConfig({ HOST: '0.0.0.0' }))
      .to.throw(ConfigError)
      .with.property('problems')
      .that.deep.equals([refused('ADMIN_TOKEN', '0.0.0.0'), refused('SECRET_KEY', '0.0.0.0')]);
    expect(() => loadConfig({ HOST: '::', SECRET_KEY: 'k'.repeat(40), GATEWAY: 'http', GATEWAY_URL: 'https://sms.example.com/send' }))
      .to.throw(ConfigError)
      .with.property('problems')
      .that.deep.equals([refused('ADMIN_TOKEN', '::'), refused('GATEWAY_SECRET', '::')]);
    expect(() => loadConfig({ HOST: '192.168.1.10', ADMIN_TOKEN: 'short' }))
      .to.throw(ConfigError)
      .with.property('problems')
      .that.deep.equals(['ADMIN_TOKEN: length must be at least 16 characters long', refused('SECRET_KEY', '192.168.1.10')]);
    expect(loadConfig({ HOST: '0.0.0.0', ADMIN_TOKEN: 'a'.repeat(20), SECRET_KEY: 'k'.repeat(40) }).host).to.equal('0.0.0.0');
  });
});
