import { expect } from 'chai';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { Validator } from '@seriousme/openapi-schema-validator';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { chromium } from 'playwright-core';
import { createApp } from '../../src/app/http-app.js';
import { createTenant, startApi, uniqueName, type RequestOptions, type TestApi, type TestResponse } from '../helpers.js';

// ajv-formats is `module.exports = plugin`; its typings declare an ES default export instead.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

type Doc = {
  paths: Record<string, Record<string, { parameters?: Ref[]; responses: Record<string, Ref>; requestBody?: unknown }>>;
  components: Record<string, Record<string, Ref>>;
};
type Ref = { $ref?: string; [key: string]: unknown };

/** One route, as OpenAPI names it: `post /orgs/{id}/credits`. */
const key = (method: string, template: string) => `${method.toLowerCase()} ${template}`;
const pointer = (...parts: string[]) =>
  `openapi.json#/${parts.map((p) => encodeURIComponent(p.replace(/~/g, '~0').replace(/\//g, '~1'))).join('/')}`;

describe('OpenAPI document (GET /openapi.json) and reference page (GET /docs)', () => {
  let api: TestApi;
  let doc: Doc;
  let ajv: Ajv2020;
  let a: { id: number; apiKey: string };
  let b: { id: number; apiKey: string };
  let broke: { id: number; apiKey: string };
  /** Every (route, status) a real answer was checked for. */
  const seen = new Map<string, Set<number>>();

  before(async () => {
    api = await startApi();
    [a, b, broke] = await Promise.all([createTenant(api.deps), createTenant(api.deps), createTenant(api.deps, { credits: 0 })]);
    doc = (await api.request('GET', '/openapi.json')).body;
    ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    // ajv-formats has no idn-email: the RFC 6531 shape (any Unicode local part and domain around one @), as other validators check it.
    ajv.addFormat('idn-email', /^[^\s@]+@[^\s@]+\.[^\s@]+$/u);
    ajv.addSchema(doc, 'openapi.json');
  });
  after(async () => api.stop());

  const resolve = (node: Ref): Ref => {
    if (!node.$ref) return node;
    const [, section, name] = /^#\/components\/(\w+)\/(.+)$/.exec(node.$ref)!;
    return doc.components[section!]![name!]!;
  };
  const validate = (ref: string, value: unknown): string | undefined => {
    const check = ajv.getSchema(ref) ?? ajv.compile({ $ref: ref });
    return check(value) ? undefined : ajv.errorsText(check.errors);
  };
  /** A header value as its schema types it. */
  const typed = (schema: Ref, value: string) => (schema.type === 'integer' && /^-?\d+$/.test(value) ? Number(value) : value);

  /** Sends a request and checks the answer against what the document declares for that route and status. */
  async function call(method: string, template: string, path: string, opts: RequestOptions = {}): Promise<TestResponse> {
    const res = await api.request(method, path, opts);
    const declared = doc.paths[template]?.[method.toLowerCase()]?.responses[String(res.status)];
    expect(declared, `${method} ${template} declares ${res.status} (${JSON.stringify(res.body)})`).to.be.an('object');
    const response = resolve(declared!);
    const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    const content = response.content as Record<string, unknown>;
    expect(Object.keys(content), `${method} ${template} ${res.status} media type`).to.include(type);
    const ptr = pointer('paths', template, method.toLowerCase(), 'responses', String(res.status), 'content', type, 'schema');
    expect(validate(ptr, res.body), `${method} ${template} ${res.status}: ${JSON.stringify(res.body)}`).to.equal(undefined);
    for (const [name, header] of Object.entries((response.headers ?? {}) as Record<string, Ref>)) {
      const h = resolve(header);
      const value = res.headers.get(name);
      if (h.required) expect(value, `${method} ${template} ${res.status}: header ${name}`).to.be.a('string');
      if (value === null) continue;
      const schemaPtr = pointer('components', 'headers', header.$ref!.split('/').pop()!, 'schema');
      expect(validate(schemaPtr, typed(h.schema as Ref, value)), `header ${name}: ${value}`).to.equal(undefined);
    }
    (seen.get(key(method, template)) ?? seen.set(key(method, template), new Set()).get(key(method, template))!).add(res.status);
    return res;
  }

  /** Whether the document's request-body schema of a route accepts a body. */
  const bodyAccepted = (method: string, template: string, body: unknown) =>
    validate(pointer('paths', template, method, 'requestBody', 'content', 'application/json', 'schema'), body) === undefined;

  const tenant = (org: { id: number; apiKey: string }) => ({ org });
  const admin = { admin: true };

  describe('the document', () => {
    it('is OpenAPI 3.1 (JSON Schema 2020-12) and a validator of the specification accepts it', async () => {
      expect(doc).to.include({ openapi: '3.1.0', jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema' });
      const result = await new Validator().validate(doc);
      expect(result.errors, JSON.stringify(result.errors)).to.equal(undefined);
      expect(result.valid).to.equal(true);
    });

    it('describes exactly the routes the app serves (but the reference page’s own files)', () => {
      const served = new Set<string>();
      for (const mw of createApp(api.deps).middleware as { router?: { stack: { path: string; methods: string[] }[] } }[])
        for (const layer of mw.router?.stack ?? [])
          for (const method of layer.methods)
            if (method !== 'HEAD' && !layer.path.startsWith('/docs/')) served.add(key(method, layer.path.replace(/:(\w+)/g, '{$1}')));
      const documented = Object.entries(doc.paths).flatMap(([template, item]) =>
        Object.keys(item)
          .filter((m) => m !== 'parameters')
          .map((m) => key(m, template)),
      );
      expect([...served].sort()).to.deep.equal(documented.sort());
    });

    it('shows request examples that its own request schemas accept', () => {
      for (const [template, item] of Object.entries(doc.paths))
        for (const [method, operation] of Object.entries(item)) {
          const media = (operation.requestBody as { content?: Record<string, { example?: unknown }> } | undefined)?.content?.[
            'application/json'
          ];
          if (media) expect(bodyAccepted(method, template, media.example), `${method} ${template}`).to.equal(true);
        }
    });

    it('declares the security schemes: bearer for admins and tenants, Basic for the dashboard', () => {
      expect(doc.components.securitySchemes).to.deep.include({
        adminToken: { type: 'http', scheme: 'bearer', description: doc.components.securitySchemes!.adminToken!.description },
      });
      expect(doc.components.securitySchemes!.apiKey).to.include({ type: 'http', scheme: 'bearer' });
      expect(doc.components.securitySchemes!.dashboardBasic).to.include({ type: 'http', scheme: 'basic' });
    });
  });

  describe('real answers match the schema declared for their status', () => {
    it('POST /orgs: 201 with the org and its key; 400 without a name; 401 without a token; 409 for a taken name; 415 for a form', async () => {
      const name = uniqueName('openapi');
      expect((await call('POST', '/orgs', '/orgs', { ...admin, body: { name, credits: 5 } })).status).to.equal(201);
      expect((await call('POST', '/orgs', '/orgs', { ...admin, body: {} })).status).to.equal(400);
      expect((await call('POST', '/orgs', '/orgs', { body: { name: uniqueName() } })).status).to.equal(401);
      expect((await call('POST', '/orgs', '/orgs', { ...admin, body: { name } })).status).to.equal(409);
      const form = { ...admin, body: 'name=x', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } };
      expect((await call('POST', '/orgs', '/orgs', form)).status).to.equal(415);
    });

    it('GET /orgs: 200 with a Link to the next page; 400 for limit=0; 401 with a wrong token', async () => {
      const res = await call('GET', '/orgs', '/orgs?limit=1', admin);
      expect(res.status).to.equal(200);
      expect(res.headers.get('link')).to.match(/^<\/orgs\?limit=1&after=\d+>; rel="next"$/);
      expect((await call('GET', '/orgs', '/orgs?limit=0', admin)).status).to.equal(400);
      expect((await call('GET', '/orgs', '/orgs', { headers: { Authorization: 'Bearer nope' } })).status).to.equal(401);
    });

    it('GET /orgs/{id}: 200 with the admin view; 400 for a non-numeric id; 404 for an unknown one', async () => {
      expect((await call('GET', '/orgs/{id}', `/orgs/${a.id}`, admin)).status).to.equal(200);
      expect((await call('GET', '/orgs/{id}', '/orgs/abc', admin)).status).to.equal(400);
      expect((await call('GET', '/orgs/{id}', '/orgs/4000000000', admin)).status).to.equal(404);
    });

    it('PATCH /orgs/{id}: 200 with the org (and a webhook secret once); 400 for an empty patch; 404 for an unknown org', async () => {
      const res = await call('PATCH', '/orgs/{id}', `/orgs/${b.id}`, { ...admin, body: { rateLimit: { points: 1000, duration: 60 } } });
      expect(res.status).to.equal(200);
      expect(res.body.org.rateLimit).to.deep.equal({ points: 1000, duration: 60 });
      expect((await call('PATCH', '/orgs/{id}', `/orgs/${b.id}`, { ...admin, body: { rotateWebhookSecret: true } })).body).to.have.property(
        'webhookSecret',
      );
      expect((await call('PATCH', '/orgs/{id}', `/orgs/${b.id}`, { ...admin, body: {} })).status).to.equal(400);
      expect((await call('PATCH', '/orgs/{id}', '/orgs/4000000000', { ...admin, body: { status: 'ACTIVE' } })).status).to.equal(404);
    });

    it('GET /orgs/{id}/delivery: 200 with the cap and the load; 400 for a non-numeric id; 404 for an unknown one', async () => {
      const res = await call('GET', '/orgs/{id}/delivery', `/orgs/${a.id}/delivery`, admin);
      expect(res.status).to.equal(200);
      expect(res.body.delivery.concurrency.source).to.equal('default');
      expect((await call('GET', '/orgs/{id}/delivery', '/orgs/abc/delivery', admin)).status).to.equal(400);
      expect((await call('GET', '/orgs/{id}/delivery', '/orgs/4000000000/delivery', admin)).status).to.equal(404);
    });

    it('POST /orgs/{id}/credits: 200 with the ledger entry, replayed by its key; 409 below zero; 422 for a reused key', async () => {
      const path = `/orgs/${b.id}/credits`;
      const headers = { 'Idempotency-Key': `grant-${b.id}` };
      expect((await call('POST', '/orgs/{id}/credits', path, { ...admin, headers, body: { amount: 7 } })).status).to.equal(200);
      const replay = await call('POST', '/orgs/{id}/credits', path, { ...admin, headers, body: { amount: 7 } });
      expect(replay.headers.get('idempotency-replay')).to.equal('true');
      expect((await call('POST', '/orgs/{id}/credits', path, { ...admin, body: { amount: -1_000_000 } })).status).to.equal(409);
      expect((await call('POST', '/orgs/{id}/credits', path, { ...admin, headers, body: { amount: 8 } })).status).to.equal(422);
    });

    it('GET /org: 200 with RateLimit-* headers; 400 for a bad X-Org-Id; 401 without a key; 403 for a key of another org; 404 for no org', async () => {
      expect((await call('GET', '/org', '/org', tenant(a))).status).to.equal(200);
      expect((await call('GET', '/org', '/org', { headers: { 'X-Org-Id': 'abc', Authorization: `Bearer ${a.apiKey}` } })).status).to.equal(
        400,
      );
      expect((await call('GET', '/org', '/org', { headers: { 'X-Org-Id': String(a.id) } })).status).to.equal(401);
      expect((await call('GET', '/org', '/org', tenant({ id: b.id, apiKey: a.apiKey }))).status).to.equal(403);
      expect((await call('GET', '/org', '/org', tenant({ id: 987654321, apiKey: a.apiKey }))).status).to.equal(404);
    });

    it('POST /messages: 202 with the queued message, replayed by its key; 400 without `to`; 402 without credits; 422 for a reused key', async () => {
      const headers = { 'Idempotency-Key': `send-${a.id}` };
      const sms = { channel: 'sms', to: '+15551234567', body: 'hello' };
      const first = await call('POST', '/messages', '/messages', { ...tenant(a), headers, body: sms });
      expect(first.status).to.equal(202);
      expect(first.body.message.status).to.equal('QUEUED');
      expect((await call('POST', '/messages', '/messages', { ...tenant(a), headers, body: sms })).status).to.equal(202);
      expect((await call('POST', '/messages', '/messages', { ...tenant(a), body: { channel: 'sms', body: 'hi' } })).status).to.equal(400);
      expect((await call('POST', '/messages', '/messages', { ...tenant(broke), body: sms })).status).to.equal(402);
      expect((await call('POST', '/messages', '/messages', { ...tenant(a), headers, body: { ...sms, body: 'other' } })).status).to.equal(
        422,
      );
    });

    it('GET /messages: 200, an array with a Link to the next page; 400 for limit=101', async () => {
      await call('POST', '/messages', '/messages', { ...tenant(a), body: { channel: 'email', to: 'someone@example.com', body: 'hi' } });
      const res = await call('GET', '/messages', '/messages?limit=1', tenant(a));
      expect(res.status).to.equal(200);
      expect(res.body).to.be.an('array').with.length(1);
      expect(res.headers.get('link')).to.match(/rel="next"$/);
      expect((await call('GET', '/messages', '/messages?limit=101', tenant(a))).status).to.equal(400);
    });

    it('GET /messages/{id}: 200 with the message; 404 for one of another org', async () => {
      const [latest] = (await api.request('GET', '/messages?limit=1', tenant(a))).body as { id: number }[];
      expect((await call('GET', '/messages/{id}', `/messages/${latest!.id}`, tenant(a))).status).to.equal(200);
      expect((await call('GET', '/messages/{id}', `/messages/${latest!.id}`, tenant(b))).status).to.equal(404);
    });

    it('GET /health: 200', async () => {
      expect((await call('GET', '/health', '/health')).status).to.equal(200);
    });

    it('GET /ready: 200 when the shared DB and Redis answer; 503 with Retry-After when Redis does not', async () => {
      expect((await call('GET', '/ready', '/ready')).status).to.equal(200);
      const redis = api.deps.redis as unknown as { exists: () => Promise<number> };
      const exists = redis.exists;
      redis.exists = () => Promise.reject(new Error('connection refused'));
      try {
        expect((await call('GET', '/ready', '/ready')).status).to.equal(503);
      } finally {
        redis.exists = exists;
      }
    });

    it('GET /metrics: 200 in the Prometheus text format; 401 without the admin token', async () => {
      expect((await call('GET', '/metrics', '/metrics', admin)).status).to.equal(200);
      expect((await call('GET', '/metrics', '/metrics')).status).to.equal(401);
    });

    it('GET /openapi.json and GET /docs: 200 without any authentication', async () => {
      expect((await call('GET', '/openapi.json', '/openapi.json')).status).to.equal(200);
      expect((await call('GET', '/docs', '/docs')).status).to.equal(200);
    });
  });

  describe('request schemas come from the joi schemas that validate: the document refuses what the API refuses', () => {
    /** Sends each body; the document accepts it exactly when the API does (with `ok`), else the API answers 400. */
    async function agree(method: string, template: string, path: string, ok: number, opts: RequestOptions, bodies: unknown[]) {
      for (const body of bodies) {
        const res = await api.request(method, path, { ...opts, body });
        expect([ok, 400], JSON.stringify(res.body)).to.include(res.status);
        expect(bodyAccepted(method.toLowerCase(), template, body), `${JSON.stringify(body)} → ${res.status}`).to.equal(res.status === ok);
        if (res.status === 400) expect(res.body.error.code).to.equal('VALIDATION_FAILED');
      }
    }

    it('POST /messages: no `to`, an address for sms, a number for email, a blank or too long sms body, an unknown field', async () => {
      const sms = { channel: 'sms', to: '+15551234567', body: 'hi' };
      await agree('POST', '/messages', '/messages', 202, tenant(a), [
        { channel: 'sms', body: 'hi' },
        { ...sms, to: 'someone@example.com' },
        { channel: 'email', to: '+15551234567', body: 'hi' },
        { ...sms, body: '   ' },
        { ...sms, body: 'x'.repeat(1601) },
        { ...sms, channel: 'fax' },
        { ...sms, priority: 'high' },
        sms,
        { channel: 'email', to: 'someone@example.com', body: 'x'.repeat(2000) },
      ]);
    });

    it('POST /orgs: no name, a control character, 101 characters, negative credits', async () => {
      await agree('POST', '/orgs', '/orgs', 201, admin, [
        {},
        { name: 'evil\u0007corp' },
        { name: 'x'.repeat(101) },
        { name: uniqueName(), credits: -1 },
        { name: uniqueName('ünïcode'), credits: 3 },
      ]);
    });

    it('PATCH /orgs/{id}: an empty patch, a zero rate limit, a status only provisioning sets, a URL that is not one', async () => {
      await agree('PATCH', '/orgs/{id}', `/orgs/${b.id}`, 200, admin, [
        {},
        { rateLimit: { points: 0, duration: 60 } },
        { status: 'DELETED' },
        { webhookUrl: 'not a url' },
        { rateLimit: null, webhookUrl: null },
        { status: 'ACTIVE' },
      ]);
    });

    it('POST /orgs/{id}/credits: zero, a fraction, no amount', async () => {
      await agree('POST', '/orgs/{id}/credits', `/orgs/${b.id}/credits`, 200, admin, [{ amount: 0 }, { amount: 1.5 }, {}, { amount: 2 }]);
    });

    it('GET /messages: the query parameters refuse limit 0 or 101, an unknown status, before=0', async () => {
      const parameters = doc.paths['/messages']!.get!.parameters!.map(resolve).filter((p) => p.in === 'query');
      const accepts = (query: Record<string, string>) =>
        Object.entries(query).every(([name, value]) => {
          const schema = parameters.find((p) => p.name === name)!.schema as Ref;
          return ajv.validate(schema, typed(schema, value));
        });
      const queries: Record<string, string>[] = [
        { limit: '0' },
        { limit: '101' },
        { status: 'LOST' },
        { before: '0' },
        { limit: '5', status: 'SENT', before: '9' },
      ];
      for (const query of queries) {
        const res = await api.request('GET', `/messages?${new URLSearchParams(query).toString()}`, tenant(a));
        expect(accepts(query), `${JSON.stringify(query)} → ${res.status}`).to.equal(res.status === 200);
      }
    });
  });

  describe('the contract as clients that no one here wrote read it', () => {
    /** A raw HTTP/1.1 exchange on a socket of its own (for what Node's parser refuses before Koa). */
    function raw(request: string): Promise<{ status: number; headers: string; body: string }> {
      const { port } = new URL(api.url);
      return new Promise((resolve, reject) => {
        let data = '';
        const socket = connect(Number(port), '127.0.0.1', () => socket.write(request));
        socket.on('data', (d: Buffer) => (data += d.toString('utf8')));
        socket.on('error', reject);
        socket.on('close', () => {
          const [head = '', body = ''] = data.split('\r\n\r\n');
          resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), headers: head, body });
        });
      });
    }

    it('lengths count characters, as JSON Schema does: 60 emoji are a valid name and 1,000 a valid SMS body; 101 and 1,601 are not', async () => {
      const emoji = (n: number) => '😀'.repeat(n);
      const sms = { channel: 'sms', to: '+15551234567' };
      for (const [body, ok] of [
        [{ ...sms, body: emoji(1000) }, true],
        [{ ...sms, body: emoji(1601) }, false],
      ] as const) {
        const res = await call('POST', '/messages', '/messages', { ...tenant(a), body });
        expect(res.status, JSON.stringify(res.body)).to.equal(ok ? 202 : 400);
        expect(bodyAccepted('post', '/messages', body)).to.equal(ok);
      }
      for (const [name, ok] of [
        [`${emoji(60)} ${uniqueName()}`, true],
        [emoji(101), false],
      ] as const) {
        const res = await call('POST', '/orgs', '/orgs', { ...admin, body: { name } });
        expect(res.status, JSON.stringify(res.body)).to.equal(ok ? 201 : 400);
        expect(bodyAccepted('post', '/orgs', { name })).to.equal(ok);
      }
    });

    it('numbers and booleans in a body are JSON numbers and booleans: "10" is refused (400) where the document says integer', async () => {
      const before = (await api.request('GET', `/orgs/${b.id}`, admin)).body.org.creditBalance;
      for (const [method, template, path, body] of [
        ['POST', '/orgs/{id}/credits', `/orgs/${b.id}/credits`, { amount: '10' }],
        ['POST', '/orgs', '/orgs', { name: uniqueName(), credits: '5' }],
        ['PATCH', '/orgs/{id}', `/orgs/${b.id}`, { rateLimit: { points: '5', duration: 60 } }],
        ['PATCH', '/orgs/{id}', `/orgs/${b.id}`, { deliveryConcurrency: '3' }],
        ['PATCH', '/orgs/{id}', `/orgs/${b.id}`, { rotateWebhookSecret: 'true' }],
      ] as const) {
        const res = await call(method, template, path, { ...admin, body });
        expect(res.status, `${method} ${path} ${JSON.stringify(body)}`).to.equal(400);
        expect(res.body.error.code).to.equal('VALIDATION_FAILED');
        expect(bodyAccepted(method.toLowerCase(), template, body)).to.equal(false);
      }
      expect((await api.request('GET', `/orgs/${b.id}`, admin)).body.org.creditBalance).to.equal(before);
    });

    it('an e-mail address with non-ASCII characters is accepted, and the document says idn-email (not ASCII-only email)', async () => {
      const body = { channel: 'email', to: 'ñandú@example.com', body: 'hola' };
      expect((await call('POST', '/messages', '/messages', { ...tenant(a), body })).status).to.equal(202);
      expect(JSON.stringify(doc.paths['/messages']!.post!.requestBody))
        .to.include('"format":"idn-email"')
        .and.not.include('"format":"email"');
    });

    it('ids past the safe integers are refused where the document says so (a maximum), and unknown query parameters are refused on every API route', async () => {
      const before = await call('GET', '/messages', '/messages?before=9007199254740993', tenant(a));
      expect(before.status).to.equal(400);
      const schema = resolve(doc.paths['/messages']!.get!.parameters!.map(resolve).find((p) => p.name === 'before')!).schema as Ref;
      expect(schema.maximum).to.equal(Number.MAX_SAFE_INTEGER);
      for (const [template, path, opts] of [
        ['/messages', '/messages?_=1', tenant(a)],
        ['/org', '/org?_=1', tenant(a)],
        ['/orgs/{id}', `/orgs/${a.id}?_=1`, admin],
      ] as const) {
        const res = await call('GET', template, path, opts);
        expect(res.status, path).to.equal(400);
        expect(res.body.error.details[0]).to.include({ in: 'query', path: '_' });
      }
      expect((await api.request('GET', '/health?_=1')).status).to.equal(200);
    });

    it("describes every object it answers: a 402's details are {cost, balance}, the document itself an OpenAPI object", async () => {
      const res = await call('POST', '/messages', '/messages', {
        ...tenant(broke),
        body: { channel: 'sms', to: '+15551234567', body: 'hi' },
      });
      expect(res.status).to.equal(402);
      expect(validate('openapi.json#/components/schemas/InsufficientCreditsDetails', res.body.error.details)).to.equal(undefined);
      expect(doc.components.schemas!.InsufficientCreditsDetails).to.deep.include({ required: ['cost', 'balance'] });
      const self = doc.paths['/openapi.json']!.get!.responses['200']!;
      expect(JSON.stringify(self)).to.include('"required":["openapi","info","paths"]');
    });

    it('a 20,000-character header (431) and a doubled Content-Length (400) are answered in the JSON error shape with an X-Request-Id', async () => {
      const big = await raw(`GET /org HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
      expect(big.status).to.equal(431);
      expect(big.headers).to.match(/\r\nX-Request-Id: [0-9a-f-]{36}/i);
      expect(JSON.parse(big.body)).to.deep.include({
        success: false,
        error: { code: 'HEADERS_TOO_LARGE', message: 'the request headers are too large' },
      });
      const doubled = await raw(
        'POST /orgs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
      );
      expect(doubled.status).to.equal(400);
      expect(doubled.headers).to.match(/\r\nX-Request-Id: /i);
      expect(JSON.parse(doubled.body).error.code).to.equal('BAD_REQUEST');
    });

    it('a lone surrogate in a body is refused (400 INVALID_JSON) and nothing is stored', async () => {
      const count = async () => ((await api.request('GET', '/messages?limit=100', tenant(b))).body as unknown[]).length;
      const before = await count();
      const res = await call('POST', '/messages', '/messages', {
        ...tenant(b),
        body: '{"channel":"sms","to":"+15551234567","body":"half \\ud83d a pair"}',
        headers: { 'Content-Type': 'application/json' },
      });
      expect(res.status).to.equal(400);
      expect(res.body.error.code).to.equal('INVALID_JSON');
      expect(await count()).to.equal(before);
    });
  });

  describe('the reference page', () => {
    it('answers HTML that references only its own assets, which answer 200 with script and style types and a year of caching', async () => {
      const page = await api.request('GET', '/docs');
      expect(page.headers.get('content-type')).to.match(/^text\/html/);
      expect(page.headers.get('content-security-policy')).to.match(/default-src 'none'/);
      const html = page.body as string;
      const urls = [...html.matchAll(/(?:src|href)="([^"]*)"/g)].map((m) => m[1]!);
      expect(
        urls.filter((u) => !u.startsWith('data:')).every((u) => u.startsWith('/') && !u.startsWith('//')),
        urls.join(' '),
      ).to.equal(true);
      const scripts = [...html.matchAll(/<script src="([^"]+)"/g)].map((m) => m[1]!);
      expect(scripts).to.have.length(2);
      for (const src of scripts) {
        const res = await fetch(`${api.url}${src}`);
        expect(res.status, src).to.equal(200);
        expect(res.headers.get('content-type'), src).to.match(/^application\/javascript/);
      }
      const bundle = await fetch(`${api.url}${scripts[0]!}`);
      expect(bundle.headers.get('cache-control')).to.equal('public, max-age=31536000, immutable');
      const css = await fetch(`${api.url}${urls.find((u) => u.endsWith('.css'))!}`);
      expect(css.status).to.equal(200);
      expect(css.headers.get('content-type')).to.match(/^text\/css/);
      expect((await fetch(`${api.url}/docs/assets/0.0.0/swagger-ui-bundle.js`)).status, 'another version').to.equal(404);
      expect((await fetch(`${api.url}${scripts[0]!.replace('swagger-ui-bundle.js', 'package.json')}`)).status, 'other files').to.equal(404);
    });

    it('in a browser, shows every operation and fetches nothing from another host', async function () {
      this.timeout(90_000);
      const CHROMIUM = '/usr/bin/chromium';
      if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (scripts/services.sh does it)`);
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update'],
      });
      try {
        const context = await browser.newContext();
        const elsewhere: string[] = [];
        await context.route(
          (url) => !url.href.startsWith(`${api.url}/`),
          async (route) => {
            elsewhere.push(route.request().url());
            await route.abort();
          },
        );
        const page = await context.newPage();
        const problems: string[] = [];
        page.on('console', (m) => {
          if (m.type() === 'error') problems.push(m.text());
        });
        page.on('pageerror', (e) => problems.push(e.message));
        expect((await page.goto(`${api.url}/docs`))?.status()).to.equal(200);
        await page.locator('.opblock').first().waitFor({ timeout: 30_000 });
        const operations = await page.locator('.opblock-summary-path').allInnerTexts();
        const documented = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).filter((m) => m !== 'parameters').length, 0);
        expect(operations.length).to.equal(documented);
        expect(elsewhere, 'requests to other hosts').to.deep.equal([]);
        expect(problems, 'console errors').to.deep.equal([]);
      } finally {
        await browser.close();
      }
    });
  });

  describe('coverage', () => {
    it('every documented route was checked with a real success answer and, where it declares errors, a real error answer', () => {
      for (const [template, item] of Object.entries(doc.paths))
        for (const [method, operation] of Object.entries(item)) {
          if (method === 'parameters') continue;
          const statuses = [...(seen.get(key(method, template)) ?? [])];
          expect(
            statuses.some((s) => s < 300),
            `${method} ${template}: a success`,
          ).to.equal(true);
          if (Object.keys(operation.responses).some((s) => Number(s) >= 400))
            expect(
              statuses.some((s) => s >= 400),
              `${method} ${template}: an error`,
            ).to.equal(true);
        }
    });
  });
});
