/**
 * A real Prometheus scrapes the sidecar while a failover happens; its HTTP API answers with the
 * switch counter and the model state. promtool finds nothing to say about the exposition, and
 * every query of the Grafana dashboard names only metrics the sidecar exports.
 * (Prometheus and promtool come from Debian's `prometheus` package; .ci/run installs it.)
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { HELLO, startHarness } from './support/harness.ts';
import { hasTool, unlessTool } from './support/tools.ts';
import { post } from './support/wire.ts';

const hasPrometheus = hasTool('prometheus') && hasTool('promtool');

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function query(base: string, promql: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = (await res.json()) as { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  return body.status === 'success' ? body.data.result : [];
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out: ${what}`);
}

t.test(
  'Prometheus scrapes the switch counter and the model state during a failover',
  { skip: unlessTool(hasPrometheus, 'prometheus is not installed (.ci/run installs it)') },
  async (t) => {
    const h = await startHarness([
      { name: 'primary', group: 0 },
      { name: 'fallback', group: 1 },
    ]);
    t.teardown(() => h.close());
    const dir = mkdtempSync(join(tmpdir(), 'prom-'));
    const admin = new URL(h.sidecar.adminUrl);
    writeFileSync(
      join(dir, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: llm-failover-sidecar\n    static_configs:\n      - targets: ['${admin.host}']\n`,
    );
    const port = await freePort();
    const prom: ChildProcess = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: 'ignore' },
    );
    t.teardown(() => {
      prom.kill('SIGKILL');
    });
    const base = `http://127.0.0.1:${port}`;
    await until('prometheus scrapes the sidecar', async () =>
      (await query(base, 'up{job="llm-failover-sidecar"} == 1').catch(() => [])).length > 0 ? true : undefined,
    );

    h.sims.primary.setFault({ kind: 'status', status: 503 });
    for (let i = 0; i < 4; i++) t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).status, 200);

    const switches = await until('the switch counter in Prometheus', async () => {
      const r = await query(base, 'llm_failover_switches_total{from="primary",to="fallback",reason="upstream_5xx"}');
      return r.length > 0 && Number(r[0].value[1]) >= 3 ? r : undefined;
    });
    t.equal(Number(switches[0].value[1]), 3, 'three requests switched before the breaker opened');
    const state = await until('the open state in Prometheus', async () => {
      const r = await query(base, 'llm_failover_model_state{provider="primary"} == 1');
      return r.length > 0 && r[0].metric.state === 'open' ? r : undefined;
    });
    t.equal(state[0].metric.state, 'open', 'the primary is open in Prometheus');
  },
);

t.test(
  'promtool finds nothing to say about the exposition',
  { skip: unlessTool(hasPrometheus, 'promtool is not installed (.ci/run installs it)') },
  async (t) => {
    const h = await startHarness([
      { name: 'primary', group: 0 },
      { name: 'fallback', group: 1 },
    ]);
    t.teardown(() => h.close());
    h.sims.primary.setFault({ kind: 'status', status: 503 });
    await post(`${h.sidecar.url}/model`, { messages: HELLO, stream: true });
    const text = await (await fetch(`${h.sidecar.adminUrl}/metrics`)).text();
    const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    t.equal(result.status, 0, 'promtool exit code');
    t.equal(`${result.stdout}${result.stderr}`.trim(), '', 'no lint findings');
  },
);

t.test('every query of the Grafana dashboard names only metrics the sidecar exports', async (t) => {
  const h = await startHarness([{ name: 'primary', group: 0 }]);
  t.teardown(() => h.close());
  await post(`${h.sidecar.url}/model`, { messages: HELLO });
  const exported = new Set<string>();
  for (const m of await h.sidecar.metrics.getMetricsAsJSON()) {
    exported.add(m.name);
    if (String(m.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(m.name + suffix);
  }
  const dashboard = JSON.parse(readFileSync(join(import.meta.dirname, '../deploy/observability/grafana-dashboard.json'), 'utf8'));
  const exprs: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'expr' && typeof x === 'string') exprs.push(x);
        else walk(x);
      }
    }
  };
  walk(dashboard);
  const variables: string[] = dashboard.templating.list
    .filter((v: { type: string }) => v.type === 'query')
    .map((v: { query: string }) => v.query);
  t.ok(exprs.length >= 12, `${exprs.length} queries`);
  const used = new Set(
    [...exprs, ...variables].flatMap((e) => e.match(/\b(llm_failover_[a-z_]+|process_[a-z_]+|nodejs_[a-z_]+)\b/g) ?? []),
  );
  t.ok(used.size >= 9, `${used.size} metrics used`);
  for (const name of used) t.ok(exported.has(name), `${name} is exported`);
  for (const panel of dashboard.panels) t.ok(panel.targets?.length > 0, `panel "${panel.title}" has a query`);
  // promtool can parse each PromQL expression once Grafana's variables are filled in
  // promtool checks the queries; where it is missing, this part is a skip of its own, counted
  await t.test(
    'promtool parses every query',
    { skip: unlessTool(hasPrometheus, 'promtool is not installed (.ci/run installs it)') },
    async (t) => {
      const rules = exprs.map(
        (e, i) =>
          `  - record: dashboard:query${i}\n    expr: ${JSON.stringify(e.replaceAll('$__rate_interval', '1m').replaceAll('$backend', '.*').replaceAll('$job', '.*'))}`,
      );
      const file = join(mkdtempSync(join(tmpdir(), 'rules-')), 'rules.yml');
      writeFileSync(file, `groups:\n- name: dashboard\n  rules:\n${rules.join('\n')}\n`);
      const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
      t.equal(r.status, 0, `every query is valid PromQL${r.stderr ? `\n${r.stderr}` : ''}`);
    },
  );
});
