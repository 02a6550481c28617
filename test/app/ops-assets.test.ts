/**
 * The ops assets (ops/): promtool checks and unit-tests the alerting rules, the Grafana dashboard is importable
 * anywhere, and every metric the dashboard, the rules and their unit tests use is one the app really exposes.
 * Needs `promtool` (Debian's prometheus package; scripts/services.sh installs it).
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, startApi, type TestApi } from '../helpers.js';

/**
 * Metrics being added right now (issue 7): the dashboard and the alerts already use them, and work once they exist.
 * Allowed here although the app does not expose them yet; remove a name once it does (it is then checked like the rest).
 */
const PENDING_METRICS = [
  'delivery_postponed_total', // counter: deliveries postponed by infrastructure errors
  'delivery_postponements_exhausted_total', // counter: deliveries that used up their postponements
  'reconciler_requeued_total', // counter: messages re-enqueued by the outbox reconciler
  'reconciler_last_sweep_timestamp_seconds', // gauge: when the reconciler last finished a sweep
];
/** Series Prometheus writes itself for every scrape target (not the app's). */
const PROMETHEUS_SERIES = ['up'];

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `promtool ...args` in the project root. */
function promtool(args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) =>
      reject(new Error(`promtool could not run (${err.message}): run \`bash scripts/services.sh\` to install it`)),
    );
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'offset',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression selects (Grafana variables allowed). Strings, label matchers, ranges,
 * grouping clauses and numbers are removed first; what is left and is neither a function call nor a keyword is a name.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\$\{?\w+(?::\w+)?\}?/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' ')
    .replace(/\boffset\s+-?\w+/gi, ' ')
    .replace(/\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b/gi, ' ');
  const names = new Set<string>();
  for (const [, name, call] of bare.matchAll(/([A-Za-z_:][\w:]*)\s*(\()?/g)) {
    if (name && !call && !KEYWORDS.has(name.toLowerCase())) names.add(name);
  }
  return [...names];
}

interface AlertRule {
  alert: string;
  expr: string;
  /** The rule's text, from `- alert:` to the next rule. */
  text: string;
}

/** The alerting rules of ops/alerts.yml, read from its layout (`- alert: X`, then `expr: |` and an indented block). */
function alertRules(yaml: string): AlertRule[] {
  return yaml
    .split(/^\s*- alert:[ \t]*/m)
    .slice(1)
    .map((text) => {
      const lines = text.split('\n');
      const alert = (lines[0] ?? '').trim();
      const at = lines.findIndex((l) => /^\s*expr:/.test(l));
      const [, indent = '', value = ''] = /^(\s*)expr:\s*(.*)$/.exec(lines[at] ?? '') ?? [];
      let expr = value;
      if (/^[|>][-+]?$/.test(value)) {
        const block: string[] = [];
        for (const line of lines.slice(at + 1)) {
          if (line.trim() !== '' && line.length - line.trimStart().length <= indent.length) break;
          block.push(line.trim());
        }
        expr = block.join('\n').trim();
      }
      return { alert, expr, text };
    });
}

/** Series names the unit tests feed (`series: 'name{...}'`). */
function testSeriesNames(yaml: string): string[] {
  return [...new Set([...yaml.matchAll(/series:\s*['"]?([A-Za-z_:][\w:]*)/g)].map((m) => m[1]!))];
}

interface Target {
  expr?: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: (Target & { datasource?: { uid?: string } })[];
  panels?: Panel[];
  gridPos?: object;
}
interface Dashboard {
  schemaVersion: number;
  uid: string;
  title: string;
  __inputs: { name: string; type: string; pluginId: string }[];
  panels: Panel[];
  templating: {
    list: { name: string; type: string; datasource?: { uid?: string }; definition?: string; query?: { query?: string } | string }[];
  };
}

/** Every panel, rows' nested panels included. */
function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

/** Every PromQL expression of the dashboard: panel targets, and the selectors of `label_values(...)` variables. */
function dashboardExprs(d: Dashboard): { where: string; expr: string }[] {
  const exprs = allPanels(d).flatMap((p) =>
    (p.targets ?? []).map((t, i) => ({ where: `panel ${p.id} "${p.title}" target ${i}`, expr: t.expr ?? '' })),
  );
  for (const v of d.templating.list) {
    const query = typeof v.query === 'string' ? v.query : (v.query?.query ?? v.definition ?? '');
    const selector = /^label_values\((.*),\s*\w+\)$/.exec(query.trim())?.[1];
    exprs.push({ where: `variable ${v.name}`, expr: selector ?? query });
  }
  return exprs;
}

const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

describe('ops assets (ops/)', () => {
  const rulesYaml = read('ops/alerts.yml');
  const testsYaml = read('ops/alerts.test.yml');
  const dashboard = JSON.parse(read('ops/grafana-dashboard.json')) as Dashboard;
  const rules = alertRules(rulesYaml);

  it('the metric-name reader finds selectors, not functions, keywords, labels, variables or durations', () => {
    const expr =
      'histogram_quantile(0.95, sum by (le) (rate(a_bucket{job=~"$job", x="y z"}[$__rate_interval]))) / on (job) group_left b_total offset 5m' +
      ' and time() - max(c_seconds) > 1e3 or vector(0) unless d:recorded[5m:1m]';
    expect(metricNames(expr).sort()).to.deep.equal(['a_bucket', 'b_total', 'c_seconds', 'd:recorded']);
  });

  describe('alerting rules (ops/alerts.yml)', () => {
    it('promtool check rules: valid, with as many rules as this test reads', async () => {
      const r = await promtool(['check', 'rules', 'ops/alerts.yml']);
      expect(r.code, `stdout: ${r.stdout} stderr: ${r.stderr}`).to.equal(0);
      expect(r.stdout).to.contain('Checking ops/alerts.yml');
      expect(r.stdout).to.contain(`SUCCESS: ${rules.length} rules found`);
      expect(rules.length).to.be.at.least(10);
    });

    it('promtool test rules ops/alerts.test.yml: every unit test passes', async () => {
      const r = await promtool(['test', 'rules', 'ops/alerts.test.yml']);
      expect(r.code, `stdout: ${r.stdout} stderr: ${r.stderr}`).to.equal(0);
      expect(r.stdout).to.match(/Unit Testing:\s+ops\/alerts\.test\.yml\s+SUCCESS/);
      expect(r.stderr).not.to.contain('FAILED');
    });

    it('every alert has a unit test where it fires and one where it must not (5xx ratio, backlog and pool failures among them)', () => {
      const cases = testsYaml.split(/^\s*- eval_time:/m).slice(1);
      const alertnames = rules.map((r) => r.alert);
      expect(alertnames).to.include.members(['Http5xxRatioHigh', 'QueueBacklogGrowing', 'TenantPoolFailures']);
      for (const alert of alertnames) {
        const mine = cases.filter((c) => new RegExp(`^\\s*alertname:\\s*${alert}\\s*$`, 'm').test(c));
        expect(
          mine.some((c) => /exp_alerts:\s*\n\s*- exp_labels:/.test(c)),
          `${alert} fires in some test`,
        ).to.equal(true);
        expect(
          mine.some((c) => /exp_alerts:\s*\[\]/.test(c)),
          `${alert} stays quiet in some test`,
        ).to.equal(true);
      }
    });

    it('every alert has a `for`, a severity, a summary, and a description pointing at its runbook in docs/operations.md', () => {
      const docs = read('docs/operations.md');
      expect(docs).to.contain('## Dashboards and alerts');
      for (const { alert, text } of rules) {
        expect(text, alert).to.match(/^\s*for: \d+[smh]\s*$/m);
        expect(text, alert).to.match(/^\s*severity: (warning|critical)\s*$/m);
        expect(text, alert).to.match(/^\s*summary: .+$/m);
        expect(text, alert).to.match(
          new RegExp(`^\\s*description: .*Runbook: docs/operations\\.md#dashboards-and-alerts \\(${alert}\\)`, 'm'),
        );
        expect(docs, `docs/operations.md explains ${alert}`).to.contain(`\`${alert}\``);
      }
    });
  });

  describe('Grafana dashboard (ops/grafana-dashboard.json)', () => {
    it('imports anywhere: schemaVersion 39, a ${DS_PROMETHEUS} input used by every panel and target, job and instance variables', () => {
      expect(dashboard.schemaVersion).to.equal(39);
      expect(dashboard.uid).to.be.a('string').and.have.length.above(0);
      expect(dashboard.__inputs.find((i) => i.name === 'DS_PROMETHEUS')).to.include({ type: 'datasource', pluginId: 'prometheus' });
      const panels = allPanels(dashboard);
      const ids = panels.map((p) => p.id);
      expect(new Set(ids).size, 'unique panel ids').to.equal(ids.length);
      for (const p of panels.filter((q) => q.type !== 'row')) {
        expect(p.datasource?.uid, p.title).to.equal('${DS_PROMETHEUS}');
        expect(p.targets, p.title).to.be.an('array').with.length.above(0);
        for (const t of p.targets ?? []) expect(t.datasource?.uid, p.title).to.equal('${DS_PROMETHEUS}');
        expect(p.gridPos, p.title).to.include.keys('x', 'y', 'w', 'h');
      }
      const vars = dashboard.templating.list;
      expect(vars.map((v) => v.name)).to.include.members(['job', 'instance']);
      for (const v of vars) expect(v.datasource?.uid, v.name).to.equal('${DS_PROMETHEUS}');
      for (const { where, expr } of dashboardExprs(dashboard).filter((e) => e.where.startsWith('panel'))) {
        expect(expr, where).to.contain('job=~"$job"').and.contain('instance=~"$instance"');
      }
    });

    it('has the panels of issue 7 and uses rate() on counters and histogram_quantile on buckets', () => {
      const titles = allPanels(dashboard)
        .map((p) => p.title.toLowerCase())
        .join('\n');
      for (const words of [
        'request rate by route and status',
        'p50 / p95 / p99',
        '5xx and 503',
        'queue backlog',
        'jobs completed / failed',
        'credits debited / refunded',
        'tenant pool cache',
        'org cache hit ratio',
        'memory',
        'cpu',
        'event-loop lag',
        'reconciler re-enqueues',
      ]) {
        expect(titles).to.contain(words);
      }
      for (const { where, expr } of dashboardExprs(dashboard)) {
        for (const name of metricNames(expr)) {
          if (/_total$|_count$/.test(name))
            expect(expr, `${where}: ${name} is a counter`).to.match(new RegExp(`(rate|increase)\\(${name}\\{`));
          if (/_bucket$/.test(name))
            expect(expr, where).to.match(new RegExp(`histogram_quantile\\([\\d.]+, sum by \\([^)]*\\ble\\b[^)]*\\) \\(rate\\(${name}\\{`));
        }
      }
    });

    it('every expression is valid PromQL (promtool check rules, as recording rules with the variables filled in)', async () => {
      const exprs = dashboardExprs(dashboard);
      const filled = (e: string) => e.replace(/\$__(rate_)?interval|\$__range/g, '5m').replace(/\$\{?\w+\}?/g, '.*');
      const yaml = [
        'groups:',
        '  - name: dashboard',
        '    rules:',
        ...exprs.flatMap((e, i) => [`      - record: dashboard:expr:${i}`, `        expr: ${JSON.stringify(filled(e.expr))}`]),
      ].join('\n');
      const dir = mkdtempSync(join(tmpdir(), 'ops-assets-'));
      try {
        writeFileSync(join(dir, 'dashboard-rules.yml'), `${yaml}\n`);
        const r = await promtool(['check', 'rules', join(dir, 'dashboard-rules.yml')]);
        expect(r.code, `stdout: ${r.stdout} stderr: ${r.stderr}`).to.equal(0);
        expect(r.stdout).to.contain(`SUCCESS: ${exprs.length} rules found`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('metric names', () => {
    let api: TestApi;
    /** Every series name the app's registry exposes: histograms as _bucket, _sum and _count. */
    let exposed: Set<string>;
    before(async () => {
      api = await startApi();
      const res = await api.request('GET', '/metrics', { admin: true });
      expect(res.status).to.equal(200);
      exposed = new Set();
      for (const [, name, type] of (res.body as string).matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
        if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exposed.add(`${name}${suffix}`);
        else if (type === 'summary') for (const suffix of ['', '_sum', '_count']) exposed.add(`${name}${suffix}`);
        else exposed.add(name!);
      }
    });
    after(async () => api?.stop());

    it('the app exposes the metrics of src/platform/metrics/metrics.ts and the default process metrics', () => {
      expect([...exposed]).to.include.members([
        'http_request_duration_seconds_bucket',
        'queue_jobs',
        'tenant_pool_failures_total',
        'jobs_failed_total',
        'credits_debited_total',
        'process_cpu_seconds_total',
        'nodejs_eventloop_lag_p99_seconds',
      ]);
    });

    it('every metric used by a dashboard panel or variable, an alert, or an alert unit test is exposed (or allowed explicitly)', () => {
      const allowed = new Set([...exposed, ...PENDING_METRICS, ...PROMETHEUS_SERIES]);
      const used = [
        ...dashboardExprs(dashboard).flatMap(({ where, expr }) => metricNames(expr).map((name) => ({ where: `dashboard ${where}`, name }))),
        ...rules.flatMap(({ alert, expr }) => metricNames(expr).map((name) => ({ where: `alert ${alert}`, name }))),
        ...testSeriesNames(testsYaml).map((name) => ({ where: 'ops/alerts.test.yml', name })),
      ];
      expect(used.length).to.be.greaterThan(50);
      const unknown = used.filter((u) => !allowed.has(u.name)).map((u) => `${u.where}: ${u.name}`);
      expect(unknown, 'metrics the app does not expose').to.deep.equal([]);
      for (const { alert, expr } of rules) expect(metricNames(expr), alert).to.have.length.above(0);
    });
  });
});
