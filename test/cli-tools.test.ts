/**
 * The operator's tools: `check` validates a configuration without starting and prints the plan;
 * `status` shows a running sidecar's models; every command has --help; the published JSON
 * Schemas, the CRD and docs/configuration.md are generated from the loader's own schema and
 * cannot drift from it.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { artifacts } from '../scripts/generate-schema.ts';
import { renderStatus, type StatusDoc } from '../sidecar/cli/status.ts';
import { loadPlan } from '../sidecar/config/load.ts';
import { ConfigError } from '../sidecar/config/problems.ts';
import { HELLO, startHarness } from './support/harness.ts';
import { post } from './support/wire.ts';

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'sidecar/cli.ts');
const SECRETS = join(import.meta.dirname, 'fixtures/secrets');

/** Runs the CLI; `until` stops a long-running command (SIGINT) once its output satisfies it (at most 15 s). */
async function run(args: string[], until?: (out: string) => boolean): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
    if (until?.(out)) child.kill('SIGINT');
  });
  child.stderr.on('data', (d) => (err += d));
  const timer = until ? setTimeout(() => child.kill('SIGINT'), 15_000) : undefined;
  const [code] = await once(child, 'exit');
  clearTimeout(timer);
  return { code, out, err };
}

function tmpConfig(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'check-')), 'config.yaml');
  writeFileSync(file, text);
  return file;
}

t.test('check: the seed examples would start; the resolved plan is printed', async (t) => {
  const priority = await run(['check', '--config', join(import.meta.dirname, 'fixtures/seed-priority.yaml'), '--secrets-dir', SECRETS]);
  t.equal(priority.code, 0);
  t.match(priority.out, /^Backend kgateway-system\/model-failover$/m);
  t.match(priority.out, /routes: PathPrefix \/model \(HTTPRoute\/model-failover rule 0\), Exact \/v1\/chat\/completions \(default route\)/);
  t.match(
    priority.out,
    /priority group 1:\n {4}openai-gpt-4o: openai gpt-4o at https:\/\/api\.openai\.com\/v1\/chat\/completions\n {6}auth SecretRef openai-secret \(found in .*fixtures\/secrets\/openai-secret\/Authorization; sent as authorization\)\n {6}probes auto every 10s \(idle 1m\), timeout 5s, thresholds 2 up \/ 2 down; slow over 8s to first token; breaker opens at 50% of >= 3 attempts in 10s, trial after 10s/,
  );
  t.match(priority.out, /priority group 3:\n {4}openai-gpt-3\.5-turbo/);
  t.match(priority.out, /OK: the sidecar would start/);
  t.notMatch(priority.out, /sk-from-mounted-secret/, 'the key itself is never printed');

  const cost = await run(['check', '--config', join(import.meta.dirname, 'fixtures/seed-cost.yaml'), '--secrets-dir', SECRETS]);
  t.equal(cost.code, 0);
  t.match(
    cost.out,
    /priority group 1 \(round robin\):\n {4}openai-gpt-3\.5-turbo: openai gpt-3\.5-turbo[^\n]*\n[^\n]*\n[^\n]*\n {4}claude-haiku: anthropic claude-3-5-haiku-latest at https:\/\/api\.anthropic\.com\/v1\/messages/,
  );
});

t.test('check: every kind of invalid configuration exits 2 with each problem located', async (t) => {
  const seed = readFileSync(join(import.meta.dirname, 'fixtures/seed-priority.yaml'), 'utf8');
  const cases = [
    {
      name: 'YAML syntax',
      text: seed.replace(
        '  name: model-failover\n  namespace: kgateway-system\nspec:\n  type: AI',
        '  name: [model-failover\nspec:\n  type: AI',
      ),
      want: [/config\.yaml:\d+:\d+ document 1: YAML syntax: /],
    },
    {
      name: 'schema',
      text: seed.replace('model: "gpt-4o"', 'model: 4').replace('type: AI', 'type: AI\n  extra: 1'),
      want: [
        /Backend\/model-failover spec\.ai\.priorityGroups\[0\]\.providers\[0\]\.openai\.model: Invalid input: expected string, received number/,
      ],
    },
    {
      name: 'reference',
      text: seed.replace(
        '    - name: model-failover\n      namespace: kgateway-system\n      group',
        '    - name: other\n      namespace: kgateway-system\n      group',
      ),
      want: [/HTTPRoute\/model-failover spec\.rules\[0\]\.backendRefs\[0\]: no Backend kgateway-system\/other in the configuration/],
    },
    {
      name: 'missing secret',
      text: seed.replaceAll('openai-secret', 'gone-secret'),
      want: [/secret "gone-secret" not found \(looked in .*gone-secret\/Authorization and env GONE_SECRET\)/],
    },
    {
      name: 'value out of range',
      text: `${seed}---\napiVersion: llm-failover.dev/v1alpha1\nkind: FailoverPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{kind: Backend, name: model-failover}]\n  health: {probe: {jitterPercent: 90}}\n`,
      want: [/FailoverPolicy\/p spec\.health\.probe\.jitterPercent: Too big: expected number to be <=50/],
    },
    {
      name: 'provider not served',
      text: seed.replace('openai:\n          model: "gpt-4o"', 'gemini:\n          model: "gemini-pro"'),
      want: [/providers\[0\]\.gemini: provider "gemini" is not served by this sidecar yet/],
    },
  ];
  for (const c of cases) {
    const r = await run(['check', '--config', tmpConfig(c.text), '--secrets-dir', SECRETS]);
    t.equal(r.code, 2, `${c.name}: exit 2`);
    for (const w of c.want) t.match(r.err, w, `${c.name}: the problem is named with its location`);
    t.match(r.err, /The sidecar would not start\./);
  }
  const missing = await run(['check']);
  t.equal(missing.code, 2, 'check without --config is a usage error');
  t.match(missing.err, /check needs --config PATH/);
});

t.test('every command has --help; an unknown flag is a usage error', async (t) => {
  for (const [args, want] of [
    [['--help'], /Commands:\n {2}serve .*\n {2}check .*\n {2}status /],
    [['serve', '--help'], /--config .*\n\s+env LLM_FAILOVER_CONFIG/],
    [['check', '--help'], /--secrets-dir/],
    [['status', '--help'], /--watch .*\n {2}--json/],
  ] as const) {
    const r = await run([...args]);
    t.equal(r.code, 0, `${args.join(' ')}: exit 0`);
    t.match(r.out, want);
    t.match(r.out, /Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage\./);
  }
  const bad = await run(['status', '--bogus']);
  t.equal(bad.code, 2);
});

t.test('status against a running sidecar: JSON for scripts, a table for people, live with --watch', async (t) => {
  const h = await startHarness([
    { name: 'primary', group: 0 },
    { name: 'fallback', group: 1 },
  ]);
  t.teardown(() => h.close());
  h.sims.primary.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '60' } });
  await post(`${h.sidecar.url}/model`, { messages: HELLO });
  const json = await run(['status', '--admin', h.sidecar.adminUrl, '--json']);
  t.equal(json.code, 0);
  const doc = JSON.parse(json.out) as StatusDoc;
  t.same(
    doc.backends[0].groups.map((g) => g.models.map((m) => [m.name, m.state, m.successes, m.failures])),
    [[['primary', 'cooling', 0, 1]], [['fallback', 'healthy', 1, 0]]],
  );
  const table = await run(['status', '--admin', h.sidecar.adminUrl]);
  t.equal(table.code, 0);
  t.match(table.out, /^1 +primary +openai\/primary +cooling +\d+s +0 +1 +0 +- +rate_limited \(upstream 429\)$/m);
  const refreshes = (out: string) => (out.match(/^Backend default\/model-failover$/gm) ?? []).length;
  const watched = await run(['status', '--admin', h.sidecar.adminUrl, '--watch'], (out) => refreshes(out) >= 2);
  t.ok(refreshes(watched.out) >= 2, 'refreshed at least twice');
  const down = await run(['status', '--admin', 'http://127.0.0.1:1']);
  t.equal(down.code, 1, 'an unreachable admin address is a runtime failure');
  t.match(down.err, /cannot read http:\/\/127\.0\.0\.1:1\/status/);
});

t.test('the status table, fixed width', async (t) => {
  const since = (s: number) => new Date(Date.UTC(2026, 10, 25, 12, 0, 0) - s * 1000).toISOString();
  const model = (name: string, state: string, secondsAgo: number, cause: string, ok: number, fail: number, ttft: number | null) => ({
    name,
    provider: 'openai',
    model: name,
    state,
    since: since(secondsAgo),
    cause,
    until: null,
    successes: ok,
    failures: fail,
    inFlight: 0,
    latency: { firstTokenMs: ttft, totalMs: null },
    probe: { lastAt: null, ok: null },
    breaker: null,
  });
  const doc: StatusDoc = {
    ready: true,
    backends: [
      {
        name: 'model-failover',
        namespace: 'shop',
        groups: [
          {
            priority: 1,
            models: [
              model('gpt-4o', 'unhealthy', 75, 'probe failed: upstream_5xx (upstream 503) while a request was stuck on it', 120, 7, 410),
            ],
          },
          { priority: 2, models: [model('gpt-4o-mini', 'healthy', 3700, 'start', 5300, 0, 180)] },
        ],
      },
    ],
  };
  const text = renderStatus(doc, { now: Date.UTC(2026, 10, 25, 12, 0, 0), colour: false, width: 100 });
  t.equal(
    text,
    [
      'Backend shop/model-failover',
      'GROUP  MODEL        PROVIDER            STATE      FOR    OK    FAIL  ACTIVE  TTFT   CAUSE',
      '1      gpt-4o       openai/gpt-4o       unhealthy  1m15s  120   7     0       410ms  probe failed: …',
      '2      gpt-4o-mini  openai/gpt-4o-mini  healthy    1h01m  5300  0     0       180ms  start',
      '',
    ].join('\n'),
  );
  t.ok(
    text.split('\n').every((l) => l.length <= 100),
    'no line wider than the terminal',
  );
  const coloured = renderStatus(doc, { now: Date.UTC(2026, 10, 25, 12, 0, 0), colour: true });
  t.ok(coloured.includes('\u001b[31munhealthy'), 'states are coloured on a terminal');
});

t.test('the published schemas, CRD and configuration reference are what the code generates', async (t) => {
  for (const [path, text] of Object.entries(artifacts()))
    t.equal(readFileSync(join(ROOT, path), 'utf8'), text, `${path} is up to date (npm run schema)`);
});

t.test('the schema accepts the seed examples and rejects invalid documents at the paths the loader reports', async (t) => {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  const validate = ajv.compile(JSON.parse(readFileSync(join(ROOT, 'schema/llm-failover.schema.json'), 'utf8')));
  for (const file of ['seed-priority.yaml', 'seed-cost.yaml']) {
    for (const d of parseAllDocuments(readFileSync(join(import.meta.dirname, 'fixtures', file), 'utf8'))) {
      t.ok(validate(d.toJS()), `${file}: ${JSON.stringify(validate.errors?.slice(0, 2))}`);
    }
  }
  const byKind = Object.fromEntries(
    ['backend', 'httproute', 'sidecarconfig', 'failoverpolicy'].map((k) => [
      k,
      ajv.compile(JSON.parse(readFileSync(join(ROOT, `schema/${k}.schema.json`), 'utf8'))),
    ]),
  );
  const seed = parseAllDocuments(readFileSync(join(import.meta.dirname, 'fixtures/seed-priority.yaml'), 'utf8')).map((d) => d.toJS());
  const invalid: { kind: string; doc: unknown }[] = [
    {
      kind: 'backend',
      doc: {
        ...seed[0],
        spec: {
          ...seed[0].spec,
          ai: { priorityGroups: [{ providers: [{ name: 'x', openai: { model: 4, authToken: { kind: 'Inline', inline: 'k' } } }] }] },
        },
      },
    },
    {
      kind: 'backend',
      doc: {
        ...seed[0],
        spec: { ...seed[0].spec, ai: { priorityGroups: [{ providers: [{ name: 'x', openai: { authToken: { kind: 'Nope' } } }] }] } },
      },
    },
    {
      kind: 'failoverpolicy',
      doc: {
        apiVersion: 'llm-failover.dev/v1alpha1',
        kind: 'FailoverPolicy',
        metadata: { name: 'p' },
        spec: { targetRefs: [{ kind: 'Backend', name: 'model-failover' }], timeouts: { response: 'soon' } },
      },
    },
    { kind: 'sidecarconfig', doc: { apiVersion: 'llm-failover.dev/v1alpha1', kind: 'SidecarConfig', spec: { listen: 'nowhere' } } },
  ];
  const jsonPointerToPath = (p: string) =>
    p
      .split('/')
      .slice(1)
      .map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s}`))
      .join('')
      .replace(/^\./, '');
  for (const { kind, doc } of invalid) {
    t.notOk(byKind[kind](doc), `${kind}: invalid`);
    const schemaPaths = new Set((byKind[kind].errors ?? []).map((e) => jsonPointerToPath(e.instancePath)));
    let loaderPaths: string[] = [];
    try {
      loadPlan(
        [
          {
            name: 'x.yaml',
            text: JSON.stringify(doc) + (kind === 'backend' ? '' : `\n---\n${JSON.stringify(seed[0]).replace('openai-secret', 'x')}`),
          },
        ],
        { env: { X: 'k', OPENAI_SECRET: 'k' } },
      );
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      loaderPaths = err.problems.map((p) => p.path ?? '');
    }
    t.ok(loaderPaths.length > 0, `${kind}: the loader rejects it too`);
    for (const p of loaderPaths)
      t.ok(schemaPaths.has(p), `${kind}: the schema reports ${p} as the loader does (schema: ${[...schemaPaths].join(', ')})`);
  }
});
