/**
 * Configuration: the seed page's YAML loads as written; every invalid config fails with every
 * problem located (file, document, path, line and column for YAML syntax); secrets are found
 * in mounted folders or the environment and never printed.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadPlan, loadPlanFromPath } from '../sidecar/config/load.ts';
import { createRouter } from '../sidecar/config/routes.ts';
import { configProblems } from './support/yaml.ts';

const SECRETS = join(import.meta.dirname, 'fixtures/secrets');
const fixture = (name: string) => join(import.meta.dirname, 'fixtures', name);

/** The loader's problems for `text`; the key the seeds name is in the environment unless `env` says otherwise. */
const problemsOf = (text: string, env: NodeJS.ProcessEnv = { OPENAI_SECRET: 'sk-x' }) => configProblems(text, { env });

const BACKEND = (providers: string, extra = '') => `apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata:
  name: b
spec:
  type: AI
  ai:
    priorityGroups:
    - providers:
${providers}
${extra}`;

const OPENAI = (name: string, model = 'gpt-4o') => `      - name: ${name}
        openai:
          model: ${model}
          authToken:
            kind: SecretRef
            secretRef:
              name: openai-secret`;

t.test("the seed page's first example loads as written: three priority groups, /model routed", async (t) => {
  const plan = loadPlanFromPath(fixture('seed-priority.yaml'), { secretsDir: SECRETS, env: {} });
  const backend = plan.backends[0];
  t.equal(backend.name, 'model-failover');
  t.equal(backend.namespace, 'kgateway-system');
  t.same(
    backend.groups.map((g) => g.map((m) => m.model)),
    [['gpt-4o'], ['gpt-4.0-turbo'], ['gpt-3.5-turbo']],
  );
  t.same(
    backend.groups.flat().map((m) => [m.origin, m.path]),
    Array(3).fill(['https://api.openai.com', '/v1/chat/completions']),
  );
  const router = createRouter(plan.routes);
  t.equal(router.match('/model')?.backend, backend, '/model goes to the Backend');
  t.equal(router.match('/v1/chat/completions')?.backend, backend, 'and so does the OpenAI path');
  t.equal(router.match('/models'), undefined, 'a prefix matches whole path elements only');
  const m = backend.groups[0][0];
  t.equal(
    m.auth.kind === 'static' && m.auth.token.reveal(),
    'sk-from-mounted-secret',
    'the Bearer prefix of the mounted Secret is removed',
  );
  t.equal(JSON.stringify(plan).includes('sk-from-mounted-secret'), false, 'the plan never serialises a key');
});

t.test("the seed page's cost-based example loads: OpenAI and Anthropic balanced per group", async (t) => {
  const plan = loadPlanFromPath(fixture('seed-cost.yaml'), { secretsDir: SECRETS, env: {} });
  const groups = plan.backends[0].groups;
  t.same(
    groups.map((g) => g.map((m) => `${m.provider}:${m.model}`)),
    [
      ['openai:gpt-3.5-turbo', 'anthropic:claude-3-5-haiku-latest'],
      ['openai:gpt-4.0-turbo', 'anthropic:claude-opus-4-1'],
    ],
  );
  const haiku = groups[0][1];
  t.same(
    [haiku.origin, haiku.path, haiku.auth.kind === 'static' && haiku.auth.header, haiku.apiVersion],
    ['https://api.anthropic.com', '/v1/messages', 'x-api-key', '2023-06-01'],
  );
});

t.test("a Backend with a single llm provider (kgateway's one-model form) works", async (t) => {
  const plan = loadPlan([
    {
      name: 'one.yaml',
      text: `apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata: {name: single}
spec:
  type: AI
  ai:
    llm:
      openai:
        model: gpt-4o-mini
        authToken: {kind: Inline, inline: sk-inline}
      hostOverride: {host: vllm.internal, port: 8000}
      pathOverride: {fullPath: /openai/v1/chat/completions}
      authHeaderOverride: {headerName: api-key, prefix: ""}
`,
    },
  ]);
  const m = plan.backends[0].groups[0][0];
  t.same(
    [m.name, m.model, m.origin, m.path],
    ['single', 'gpt-4o-mini', 'http://vllm.internal:8000', '/openai/v1/chat/completions'],
    'port 8000 speaks plain HTTP',
  );
  t.same(m.auth.kind === 'static' && [m.auth.header, m.auth.prefix], ['api-key', '']);
  t.equal(createRouter(plan.routes).match('/v1/chat/completions')?.backend.name, 'single');
});

t.test("a hostOverride on port 443 speaks TLS; Passthrough auth uses the client's header", async (t) => {
  const plan = loadPlan([
    {
      name: 'x.yaml',
      text: BACKEND(`      - name: company
        openai:
          authToken: {kind: Passthrough}
        hostOverride: {host: llm.example.com, port: 443}`),
    },
  ]);
  const m = plan.backends[0].groups[0][0];
  t.equal(m.origin, 'https://llm.example.com:443');
  t.equal(m.auth.kind, 'passthrough');
  t.equal(m.model, undefined, "no model: the client's model is used (kgateway semantics)");
});

t.test('secrets come from the environment for local runs, named after the secret', async (t) => {
  const plan = loadPlan([{ name: 'x.yaml', text: BACKEND(OPENAI('a')) }], {
    secretsDir: '/nonexistent',
    env: { OPENAI_SECRET: 'Bearer sk-env' },
  });
  const m = plan.backends[0].groups[0][0];
  t.equal(m.auth.kind === 'static' && m.auth.token.reveal(), 'sk-env');
});

t.test('a missing secret is named, never printed', async (t) => {
  const problems = problemsOf(BACKEND(OPENAI('a')), {});
  t.same(problems, [
    'bad.yaml Backend/b spec.ai.priorityGroups[0].providers[0].openai.authToken.secretRef.name: secret "openai-secret" not found (looked in /nonexistent/openai-secret/Authorization and env OPENAI_SECRET)',
  ]);
});

t.test('invalid configurations: every problem, located', async (t) => {
  const cases: { name: string; text: string; problems: (string | RegExp)[] }[] = [
    {
      name: 'YAML syntax error with line and column',
      text: 'apiVersion: gateway.kgateway.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: [unclosed\n',
      problems: [/^bad\.yaml:\d+:\d+ document 1: YAML syntax: /],
    },
    {
      name: 'missing model type, wrong spec.type, two problems at once',
      text: BACKEND(OPENAI('a', '42')).replace('type: AI', 'type: Static').replace('model: 42', 'model: 42\n          temperature: 1'),
      problems: [
        'bad.yaml Backend/b spec.type: only spec.type "AI" backends are served',
        /^bad\.yaml Backend\/b spec\.ai\.priorityGroups\[0\]\.providers\[0\]\.openai\.model: .*string/,
        /^bad\.yaml Backend\/b spec\.ai\.priorityGroups\[0\]\.providers\[0\]\.openai: .*temperature/,
      ],
    },
    {
      name: 'provider names must be unique across groups',
      text: BACKEND(`${OPENAI('a')}\n    - providers:\n${OPENAI('a')}`),
      problems: [
        'bad.yaml Backend/b spec.ai.priorityGroups[1].providers[0].name: provider name "a" is used twice in this Backend; names must be unique across all priority groups',
      ],
    },
    {
      name: 'no provider block, and a provider not served',
      text: BACKEND('      - name: none\n      - name: gem\n        gemini: {model: x}'),
      problems: [
        'bad.yaml Backend/b spec.ai.priorityGroups[0].providers[0]: exactly one provider block is required (openai or anthropic)',
        'bad.yaml Backend/b spec.ai.priorityGroups[0].providers[1].gemini: provider "gemini" is not served by this sidecar yet (served: openai, anthropic)',
      ],
    },
    {
      name: 'empty priority groups',
      text: BACKEND('').replace('priorityGroups:\n    - providers:\n', 'priorityGroups: []'),
      problems: [/priorityGroups: at least one priority group/],
    },
    {
      name: 'HTTPRoute to a Backend that does not exist, and an unsupported rewrite',
      text: `${BACKEND(OPENAI('a'))}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - backendRefs: [{name: nope, group: gateway.kgateway.dev, kind: Backend}]
  - filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /v1/embeddings}}}]
    backendRefs: [{name: b, group: gateway.kgateway.dev, kind: Backend}]
`,
      problems: [
        'bad.yaml HTTPRoute/r spec.rules[1].filters[0].urlRewrite.path.replaceFullPath: the sidecar serves chat completions: replaceFullPath must be /v1/chat/completions',
      ],
    },
    {
      name: 'HTTPRoute naming a missing Backend',
      text: `${BACKEND(OPENAI('a'))}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - backendRefs: [{name: nope, group: gateway.kgateway.dev, kind: Backend}]
`,
      problems: ['bad.yaml HTTPRoute/r spec.rules[0].backendRefs[0]: no Backend default/nope in the configuration'],
    },
    {
      name: 'policy values out of range',
      text: `${BACKEND(OPENAI('a'))}---
apiVersion: llm-failover.dev/v1alpha1
kind: FailoverPolicy
metadata: {name: p}
spec:
  targetRefs: [{kind: Backend, name: b}]
  timeouts: {response: 5 minutes}
  maxAttempts: -1
`,
      problems: [
        'bad.yaml FailoverPolicy/p spec.timeouts.response: a duration above zero, such as "500ms", "30s", "5m" or "1h"',
        /^bad\.yaml FailoverPolicy\/p spec\.maxAttempts: .*>=0/,
      ],
    },
    {
      name: 'unknown kind',
      text: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n',
      problems: [/^bad\.yaml ConfigMap\/x kind: unknown document kind v1 ConfigMap/],
    },
  ];
  for (const c of cases) {
    const problems = problemsOf(c.text);
    t.equal(problems.length, c.problems.length, `${c.name}: ${problems.length} problems\n${problems.join('\n')}`);
    for (const [i, p] of c.problems.entries()) {
      if (typeof p === 'string') t.equal(problems[i], p, c.name);
      else t.match(problems[i], p, c.name);
    }
  }
});

t.test("a folder of YAML files loads like one file; hidden entries (the kubelet's ..data) are skipped", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  writeFileSync(join(dir, '01-backend.yaml'), BACKEND(OPENAI('a')));
  writeFileSync(join(dir, '..data'), 'not: yaml: at: all');
  writeFileSync(join(dir, 'README.txt'), 'ignored');
  const plan = loadPlanFromPath(dir, { env: { OPENAI_SECRET: 'x' }, secretsDir: '/nonexistent' });
  t.equal(plan.backends[0].groups[0][0].name, 'a');
  t.throws(() => loadPlanFromPath(join(dir, 'missing.yaml')), /no such file/);
});
