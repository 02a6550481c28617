import { spawn } from 'node:child_process';
import { expect } from 'chai';
import { ConfigError, DEV_ADMIN_TOKEN, loadConfig } from '../config/config.js';
import { ROOT } from './helpers.js';

describe('configuration', () => {
  it('has defaults that work on a development machine', () => {
    const c = loadConfig({});
    expect(c).to.deep.include({ port: 4000, redisUrl: 'redis://127.0.0.1:6379', queuePrefix: 'bull', defaultCredits: 100, gateway: 'simulated' });
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

  it('requires ADMIN_TOKEN and SECRET_KEY in production, and refuses the development defaults', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).to.throw(ConfigError, /ADMIN_TOKEN[\s\S]*SECRET_KEY|SECRET_KEY[\s\S]*ADMIN_TOKEN/);
    expect(() => loadConfig({ NODE_ENV: 'production', ADMIN_TOKEN: DEV_ADMIN_TOKEN, SECRET_KEY: 'k'.repeat(40) })).to.throw(ConfigError, /ADMIN_TOKEN/);
    expect(loadConfig({ NODE_ENV: 'production', ADMIN_TOKEN: 'a'.repeat(20), SECRET_KEY: 'k'.repeat(40) }).nodeEnv).to.equal('production');
    const http = { NODE_ENV: 'production', ADMIN_TOKEN: 'a'.repeat(20), SECRET_KEY: 'k'.repeat(40), GATEWAY: 'http', GATEWAY_URL: 'https://sms.example.com/send' };
    expect(() => loadConfig(http)).to.throw(ConfigError, /GATEWAY_SECRET/);
    expect(loadConfig({ ...http, GATEWAY_SECRET: 's'.repeat(32) }).gatewayOptions.secret).to.equal('s'.repeat(32));
  });

  it('makes `npm start` exit 2 with one line per bad variable, before opening any connection', async () => {
    // DB_HOST points nowhere routable: had it tried to connect, it would hang or fail with a connection error instead.
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: ROOT, env: { PATH: process.env.PATH ?? '', PORT: 'not-a-port', LOG_LEVEL: 'loud', DB_HOST: '203.0.113.1' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).to.equal(2);
    expect(stderr).to.match(/^Invalid configuration:\n {2}- PORT: .+\n {2}- LOG_LEVEL: .+\n$/);
  });
});
