/** The BullMQ dashboard at /admin/queues: Basic auth only, read-only by default, and a real browser that sees a failed delivery. */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Job, QueueEvents } from 'bullmq';
import { expect } from 'chai';
import { chromium, type Browser } from 'playwright-core';
import { DELIVERY_QUEUE, deliveryJobId, type DeliveryJob } from '../../src/platform/queue/queues.js';
import { startWorkers, type Workers } from '../../src/messages/entry-points/queue/workers.js';
import { ADMIN_TOKEN, ROOT, RUN, createTenant, eventually, request, startApi, testConfig, type TestApi } from '../helpers.js';

const CHROMIUM = '/usr/bin/chromium';
// Tests write only to temporary places; `npm run docs:screenshot` points this at docs/dashboard.png.
const SCREENSHOT = path.resolve(ROOT, process.env.DASHBOARD_SCREENSHOT ?? path.join(tmpdir(), `${RUN}-dashboard.png`));
const ENV = { DELIVERY_ATTEMPTS: '1' };
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const ADMIN = { Authorization: basic('admin', ADMIN_TOKEN) };

describe('queue dashboard (/admin/queues)', () => {
  let api: TestApi;
  let writable: TestApi;
  let workers: Workers;
  let events: QueueEvents;
  let browser: Browser | undefined;
  let jobId: string;

  before(async function () {
    this.timeout(60_000);
    api = await startApi(ENV);
    writable = await startApi({ ...ENV, DASHBOARD_READ_ONLY: 'false' });
    const config = testConfig(ENV);
    workers = startWorkers(config, api.deps);
    events = new QueueEvents(DELIVERY_QUEUE, { connection: { host: '127.0.0.1', port: 6379 }, prefix: config.queuePrefix });
    await events.waitUntilReady();
    // A permanent gateway failure (test recipient +15005550002) leaves one failed job in the deliveries queue.
    const org = await createTenant(api.deps, { credits: 10 });
    const sent = await api.request('POST', '/messages', { org, body: { to: '+15005550002', channel: 'sms', body: 'dashboard' } });
    expect(sent.status).to.equal(202);
    jobId = deliveryJobId(org.id, sent.body.message.id);
    const job = await Job.fromId<DeliveryJob>(api.deps.deliveryQueue, jobId);
    await job!.waitUntilFinished(events).catch(() => undefined);
    expect(await (await Job.fromId(api.deps.deliveryQueue, jobId))!.getState()).to.equal('failed');
  });
  after(async () => {
    await browser?.close();
    await workers?.close();
    await events?.close();
    await writable?.stop();
    await api?.stop();
  });

  describe('HTTP Basic auth (user admin, password ADMIN_TOKEN), nothing else', () => {
    const refused = async (path: string, headers: Record<string, string> = {}, method = 'GET') => {
      const res = await request(api.url, method, path, { headers });
      expect(res.status, `${method} ${path} ${JSON.stringify(headers)}`).to.equal(401);
      expect(res.headers.get('www-authenticate')).to.equal('Basic realm="queues"');
      expect(res.body).to.deep.include({ success: false });
      expect(res.body.error.code).to.equal('DASHBOARD_AUTH_REQUIRED');
      expect(JSON.stringify(res.body)).not.to.include(ADMIN_TOKEN);
    };

    it('no credentials → 401 with WWW-Authenticate: Basic, on the page, the API and the static files', async () => {
      for (const path of [
        '/admin/queues',
        '/admin/queues/',
        '/admin/queues/queue/deliveries',
        '/admin/queues/api/queues',
        '/admin/queues/static/images/logo.svg',
      ]) {
        await refused(path);
      }
      await refused('/admin/queues/api/queues/deliveries/retry/failed', {}, 'PUT');
    });

    it('wrong password, wrong user, empty or malformed Basic → 401', async () => {
      await refused('/admin/queues', { Authorization: basic('admin', 'wrong-password-0123456789') });
      await refused('/admin/queues', { Authorization: basic('admin', `${ADMIN_TOKEN}x`) });
      await refused('/admin/queues', { Authorization: basic('admin', '') });
      await refused('/admin/queues', { Authorization: basic('root', ADMIN_TOKEN) });
      await refused('/admin/queues', { Authorization: basic('', ADMIN_TOKEN) });
      await refused('/admin/queues', { Authorization: `Basic ${Buffer.from(ADMIN_TOKEN).toString('base64')}` });
      await refused('/admin/queues', { Authorization: 'Basic !!!not-base64' });
      await refused('/admin/queues', { Authorization: 'Basic' });
    });

    it('the admin token in the query string never authenticates (?token=, ?password=, ?access_token=)', async () => {
      for (const q of ['token', 'password', 'access_token', 'auth']) {
        await refused(`/admin/queues?${q}=${ADMIN_TOKEN}`);
        await refused(`/admin/queues/api/queues?${q}=${encodeURIComponent(ADMIN_TOKEN)}`);
      }
      await refused(`/admin/queues?username=admin&password=${ADMIN_TOKEN}`);
    });

    it('Bearer ADMIN_TOKEN (the admin API scheme) is not accepted here: Basic only', async () => {
      await refused('/admin/queues', { Authorization: `Bearer ${ADMIN_TOKEN}` });
      await refused('/admin/queues/api/queues', { Authorization: `Bearer ${ADMIN_TOKEN}` });
    });

    it('correct Basic credentials → 200 HTML; the API lists every project queue', async () => {
      const page = await request(api.url, 'GET', '/admin/queues', { headers: ADMIN });
      expect(page.status).to.equal(200);
      expect(page.headers.get('content-type')).to.match(/^text\/html/);
      expect(page.body).to.match(/<base href="\/admin\/queues\/?" \/>/);
      const lower = await request(api.url, 'GET', '/admin/queues', {
        headers: { Authorization: ADMIN.Authorization.replace('Basic', 'basic') },
      });
      expect(lower.status).to.equal(200);
      const queues = await request(api.url, 'GET', '/admin/queues/api/queues', { headers: ADMIN });
      expect(queues.status).to.equal(200);
      const names = (queues.body.queues as { name: string; readOnlyMode: boolean }[]).map((q) => q.name).sort();
      expect(names).to.deep.equal(['deliveries', 'webhooks']);
      expect((queues.body.queues as { readOnlyMode: boolean }[]).every((q) => q.readOnlyMode)).to.equal(true);
    });

    it('paths that merely start like the dashboard are not the dashboard (404, no auth prompt)', async () => {
      const res = await request(api.url, 'GET', '/admin/queuesX');
      expect(res.status).to.equal(404);
      expect(res.headers.get('www-authenticate')).to.equal(null);
    });
  });

  describe('in a browser (headless Chromium from the Debian package, playwright-core)', () => {
    it('logs in, sees the deliveries queue and the failed job of the test recipient; saves a screenshot', async function () {
      this.timeout(90_000);
      if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (scripts/services.sh does it)`);
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
      const anonymous = await browser.newContext();
      expect((await anonymous.request.get(`${api.url}/admin/queues`)).status()).to.equal(401);
      await anonymous.close();

      const context = await browser.newContext({
        httpCredentials: { username: 'admin', password: ADMIN_TOKEN },
        viewport: { width: 1400, height: 900 },
      });
      // Hermetic: the board links a web font; nothing but this API is fetched.
      await context.route(
        (url) => !url.href.startsWith(`${api.url}/`),
        (route) => route.abort(),
      );
      const page = await context.newPage();
      const home = await page.goto(`${api.url}/admin/queues`);
      expect(home?.status()).to.equal(200);
      await page.getByText(DELIVERY_QUEUE, { exact: true }).first().waitFor({ timeout: 20_000 });
      await page.getByText('webhooks', { exact: true }).first().waitFor({ timeout: 20_000 });

      // Navigate as a person would: the queue in the sidebar, then its Failed tab.
      await page.getByRole('link', { name: DELIVERY_QUEUE, exact: true }).first().click();
      await page.waitForURL(`**/admin/queues/queue/${DELIVERY_QUEUE}**`);
      await page
        .getByRole('link', { name: /^failed/i })
        .first()
        .click();
      await page.waitForURL(/status=failed/);
      await page.getByText(jobId).first().waitFor({ timeout: 20_000 });
      await page
        .getByText(/RECIPIENT_REJECTED/)
        .first()
        .waitFor({ timeout: 20_000 });
      mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      expect(existsSync(SCREENSHOT)).to.equal(true);
      if (!process.env.DASHBOARD_SCREENSHOT) rmSync(SCREENSHOT);
      await context.close();
    });
  });

  describe('read-only unless DASHBOARD_READ_ONLY=false', () => {
    it('by default, retry and clean are refused and the failed job stays failed', async () => {
      for (const path of [
        `/admin/queues/api/queues/${DELIVERY_QUEUE}/${jobId}/retry`,
        `/admin/queues/api/queues/${DELIVERY_QUEUE}/retry/failed`,
        `/admin/queues/api/queues/${DELIVERY_QUEUE}/clean/failed`,
      ]) {
        const res = await request(api.url, 'PUT', path, { headers: ADMIN });
        expect(res.status, path).to.equal(405);
      }
      expect(await (await Job.fromId(api.deps.deliveryQueue, jobId))!.getState()).to.equal('failed');
    });

    it('writes a browser could forge from another site are refused even when writable (Sec-Fetch-Site, non-JSON bodies)', async () => {
      const path = `/admin/queues/api/queues/${DELIVERY_QUEUE}/${jobId}/retry`;
      const cross = await request(writable.url, 'PUT', path, { headers: { ...ADMIN, 'Sec-Fetch-Site': 'cross-site' } });
      expect(cross.status).to.equal(403);
      const form = await request(writable.url, 'POST', `/admin/queues/api/queues/${DELIVERY_QUEUE}/add`, {
        headers: { ...ADMIN, 'Content-Type': 'application/x-www-form-urlencoded' },
        body: 'name=deliver&data=%7B%7D',
      });
      expect(form.status).to.equal(415);
      expect(await (await Job.fromId(api.deps.deliveryQueue, jobId))!.getState()).to.equal('failed');
    });

    it('with DASHBOARD_READ_ONLY=false, retrying the failed job works (the worker then leaves the FAILED message alone)', async () => {
      const queues = await request(writable.url, 'GET', '/admin/queues/api/queues', { headers: ADMIN });
      expect((queues.body.queues as { readOnlyMode: boolean }[]).some((q) => q.readOnlyMode)).to.equal(false);
      const res = await request(writable.url, 'PUT', `/admin/queues/api/queues/${DELIVERY_QUEUE}/${jobId}/retry`, {
        headers: { ...ADMIN, 'Sec-Fetch-Site': 'same-origin' },
      });
      expect(res.status).to.equal(204);
      expect(
        await eventually(async () => (await (await Job.fromId(api.deps.deliveryQueue, jobId))!.getState()) === 'completed', 10_000),
      ).to.equal(true);
    });
  });
});
