/**
 * Config and wire formats as untrusted input, property-based (fast-check): the loader on
 * arbitrary YAML, on Backend-shaped documents and on mutations of the seed fixtures; every
 * translator on arbitrary requests, bodies, errors and stream events; the SSE parser on every
 * chunking of a valid stream. No throw except the documented ones (ConfigError from the loader;
 * buildRequest may throw, which the attempt turns into an `untranslatable` failure), results
 * well-formed, every run fast. The bugs these properties found are pinned by deterministic tests
 * at the end; once fixed, their inputs are back in the random ones (nothing is filtered out for a
 * bug that no longer exists). The Anthropic translation is checked against the strict simulator's
 * own rules (simulator/anthropic-validate.ts), the ones docs/translation.md says it satisfies.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import t from 'tap';
import { ANTHROPIC_TARGET, OPENAI_TARGET, parsed } from './support/translate.ts';
import { parseAllDocuments, stringify } from 'yaml';
import { loadPlan } from '../sidecar/config/load.ts';
import type { ModelTarget, Plan } from '../sidecar/config/plan.ts';
import { ConfigError } from '../sidecar/config/problems.ts';
import type { FailureReason } from '../sidecar/core/failure.ts';
import { Pools } from '../sidecar/send/pools.ts';
import { createRouter } from '../sidecar/config/routes.ts';
import { anthropicAdapter } from '../sidecar/translate/anthropic.ts';
import { openaiAdapter } from '../sidecar/translate/openai.ts';
import type { ProviderAdapter } from '../sidecar/translate/provider.ts';
import { type SseEvent, SseParser } from '../sidecar/translate/sse.ts';
import { anthropicRequestProblem } from '../simulator/anthropic-validate.ts';
import { serializeJson } from '../simulator/text.ts';
import { backendYaml } from './support/yaml.ts';

/** RELIABILITY_FUZZ_SCALE=20 runs every property 20 times as long (a deeper hunt than the suite's ~4 s). */
const runs = (n: number) => Math.max(1, Math.round(n * Number(process.env.RELIABILITY_FUZZ_SCALE ?? 1)));
const PLANTED = 'sk-fuzz-planted-key-0f1e2d3c4b5a6978';
const NO_SECRETS_DIR = '/nonexistent/llm-failover-fuzz';
const ENV = { OPENAI_SECRET: `Bearer ${PLANTED}`, ANTHROPIC_SECRET: PLANTED };
const FIXTURES = join(import.meta.dirname, 'fixtures');
const SEEDS = ['seed-priority.yaml', 'seed-cost.yaml'].map((f) => readFileSync(join(FIXTURES, f), 'utf8'));

/** "valueOf", "constructor", "__proto__", ...: untrusted strings once used as lookup keys (fixed); mixed into the inputs. */
const PROTO_KEYS = ['__proto__', ...Object.getOwnPropertyNames(Object.prototype)];

const REASONS: ReadonlySet<FailureReason> = new Set<FailureReason>([
  'connect_refused',
  'connect_reset',
  'connect_timeout',
  'dns',
  'tls',
  'response_timeout',
  'first_token_timeout',
  'stream_stalled',
  'upstream_5xx',
  'overloaded',
  'rate_limited',
  'request_timeout',
  'auth',
  'model_not_found',
  'context_length',
  'bad_response',
  'stream_error',
  'marked_down',
  'untranslatable',
  'client_error',
  'upstream_redirect',
  'quota_exhausted',
]);

/** fast-check builds some objects without a prototype, which the yaml stringifier mishandles: plain JSON values only. */
const toYaml = (d: unknown) => stringify(JSON.parse(JSON.stringify(d) ?? 'null'));

/**
 * Loads, and checks the only failure is a ConfigError that does not carry the planted key (when
 * `keyOnlyInline`: the key is where keys belong; the loader echoes apiVersion / kind values as they
 * are, so a key moved there would show); returns the plan if any.
 */
function loadChecked(text: string, keyOnlyInline = true): Plan | undefined {
  try {
    return loadPlan([{ name: 'fuzz.yaml', text }], { env: ENV, secretsDir: NO_SECRETS_DIR });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw new Error(`not a ConfigError: ${(err as Error)?.name}: ${(err as Error)?.message}`);
    if (keyOnlyInline && err.message.includes(PLANTED)) throw new Error(`the ConfigError carries the key: ${err.message}`);
    if (err.problems.length === 0) throw new Error('a ConfigError with no problem');
    return undefined;
  }
}

/** What a loaded plan promises the rest of the sidecar. */
function checkPlan(plan: Plan): void {
  if (plan.backends.length === 0) throw new Error('a plan without a Backend');
  for (const b of plan.backends) {
    if (b.groups.length === 0 || b.groups.some((g) => g.length === 0)) throw new Error(`empty priority group in ${b.name}`);
    for (const m of b.groups.flat()) {
      const url = new URL(m.origin);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`origin ${m.origin}`);
      if (!m.path.startsWith('/')) throw new Error(`path ${m.path}`);
      for (const v of [m.timeouts.connectMs, m.timeouts.responseMs, m.timeouts.firstTokenMs, m.timeouts.streamIdleMs])
        if (!Number.isFinite(v) || v < 0) throw new Error(`timeout ${v}`);
      if (JSON.stringify(m).includes(PLANTED)) throw new Error('a serialised target carries the key');
    }
    // a zero deadline is a ConfigError (pinned below): a plan never holds one
    if (!Number.isFinite(b.settings.requestDeadlineMs) || b.settings.requestDeadlineMs <= 0)
      throw new Error(`deadline ${b.settings.requestDeadlineMs}`);
    for (const v of [b.settings.maxResponseBytes, b.settings.maxStreamBytes])
      if (!Number.isFinite(v) || v <= 0) throw new Error(`setting ${v}`);
  }
  if (!plan.routes.some((r) => r.match.type === 'Exact' && r.match.value === '/v1/chat/completions')) throw new Error('no default route');
  createRouter(plan.routes).match('/v1/chat/completions');
  // what startSidecar does with it next: one connection pool per origin
  void new Pools(plan.backends.flatMap((b) => b.groups.flat())).close();
}

// ---- the configuration loader ----

const YAML_TOKENS = [
  'apiVersion: gateway.kgateway.dev/v1alpha1\n',
  'apiVersion: llm-failover.dev/v1alpha1\n',
  'apiVersion: gateway.networking.k8s.io/v1\n',
  'kind: Backend\n',
  'kind: HTTPRoute\n',
  'kind: FailoverPolicy\n',
  'kind: SidecarConfig\n',
  'metadata:\n',
  '  name: x\n',
  'spec:\n',
  '  type: AI\n',
  '  ai:\n',
  '    priorityGroups:\n',
  '    - providers:\n',
  '      - name: a\n',
  '        openai: {model: m, authToken: {kind: Inline, inline: not-a-key}}\n',
  '        openai: {model: m, authToken: {kind: SecretRef, secretRef: {name: openai-secret}}}\n',
  '        hostOverride: {host: 127.0.0.1, port: 8080}\n',
  '  timeouts: {response: 5s}\n',
  '---\n',
  '- ',
  '  ',
  ': ',
  '? ',
  '{',
  '}',
  '[',
  ']',
  ',',
  '"',
  "'",
  '&a ',
  '!!str ',
  '!!int ',
  '!custom ',
  '|\n',
  '>-\n',
  '#',
  '%YAML 1.2\n',
  '...\n',
  '\t',
  '\n',
  '0x1F',
  '1e999',
  '~',
  '.inf',
  'null',
  '__proto__: {}\n',
  'constructor: x\n',
];

t.test('the loader on arbitrary text: a plan or a ConfigError, never a crash or a hang', async (t) => {
  fc.assert(
    // aliases ("*") included: one to a missing anchor is a ConfigError (pinned below)
    fc.property(
      fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.string({ unit: 'binary', maxLength: 300 }),
        fc.array(fc.constantFrom(...YAML_TOKENS), { maxLength: 40 }).map((a) => a.join('')),
      ),
      (text) => {
        const plan = loadChecked(text);
        if (plan) checkPlan(plan);
      },
    ),
    { numRuns: runs(600) },
  );
  t.pass('600 texts');
});

const jsonish = fc.jsonValue({ maxDepth: 3 });
/** A valid value most of the time, anything some of the time. */
const mostly = <T>(valid: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 12, arbitrary: valid }, { weight: 1, arbitrary: jsonish as fc.Arbitrary<unknown> });
const durations = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('500ms', '5s', '1m', '1h30m', '0s', '99999h') },
  fc.string({ maxLength: 8 }),
);
const hosts = fc.oneof(fc.constant('127.0.0.1'), fc.domain(), fc.ipV4(), fc.ipV6());
const authToken = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.constantFrom(
      { kind: 'Inline', inline: PLANTED },
      { kind: 'SecretRef', secretRef: { name: 'openai-secret' } },
      { kind: 'Passthrough' },
    ),
  },
  fc.constantFrom({ kind: 'SecretRef', secretRef: { name: 'missing-secret' } }, { kind: 'Inline' }, { kind: 'SecretRef' }),
  jsonish,
);
const validProvider = fc
  .record(
    {
      kind: fc.constantFrom('openai', 'anthropic'),
      block: fc.record(
        { model: fc.string({ minLength: 1, maxLength: 10 }), authToken, apiVersion: fc.constantFrom('2023-06-01', 'x') },
        { requiredKeys: ['authToken'] },
      ),
      hostOverride: fc.record({ host: hosts, port: fc.integer({ min: 1, max: 65_535 }) }),
      pathOverride: fc.record({ fullPath: fc.constantFrom('/v1/chat/completions', '/v1/messages', '/x') }),
      authHeaderOverride: fc.record(
        { headerName: fc.constantFrom('authorization', 'x-api-key', 'api-key'), prefix: fc.constantFrom('', 'Bearer', 'Token ') },
        { requiredKeys: [] },
      ),
    },
    { requiredKeys: ['kind', 'block'] },
  )
  .map(({ kind, block, ...rest }) => {
    const b: Record<string, unknown> = { ...block };
    if (kind === 'openai') delete b.apiVersion;
    return { [kind]: b, ...rest } as Record<string, unknown>;
  });
const randomProvider = fc.record(
  {
    name: mostly(fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/)),
    openai: mostly(fc.record({ model: mostly(fc.string({ minLength: 1, maxLength: 10 })), authToken }, { requiredKeys: ['authToken'] })),
    anthropic: mostly(
      fc.record(
        { model: fc.string({ minLength: 1, maxLength: 10 }), authToken, apiVersion: fc.constantFrom('2023-06-01', '') },
        { requiredKeys: ['authToken'] },
      ),
    ),
    gemini: jsonish,
    hostOverride: mostly(fc.record({ host: hosts, port: mostly(fc.integer({ min: 0, max: 70_000 })) })),
    pathOverride: mostly(fc.record({ fullPath: fc.oneof(fc.constant('/v1/chat/completions'), fc.string({ maxLength: 10 })) })),
    authHeaderOverride: mostly(
      fc.record({ headerName: fc.string({ maxLength: 10 }), prefix: fc.string({ maxLength: 6 }) }, { requiredKeys: [] }),
    ),
  },
  { requiredKeys: [] },
);
const provider = fc.oneof({ weight: 8, arbitrary: validProvider }, randomProvider as fc.Arbitrary<Record<string, unknown>>);
/** Groups of providers, named uniquely (or not, now and then). */
const groups = fc
  .tuple(
    fc.array(fc.array(provider, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 3 }),
    fc.nat(7).map((n) => n === 0),
  )
  .map(([gs, clash]) => {
    let i = 0;
    return gs.map((g) => ({
      providers: g.map((p) => ('name' in p && typeof p.name !== 'string' ? p : { ...p, name: clash && i > 0 ? 'p0' : `p${i++}` })),
    }));
  });
const backendDoc = fc.record({
  apiVersion: mostly(fc.constant('gateway.kgateway.dev/v1alpha1')),
  kind: mostly(fc.constant('Backend')),
  metadata: mostly(
    fc.record(
      {
        name: fc.oneof({ weight: 8, arbitrary: fc.constant('model-failover') }, fc.constantFrom('b', '')),
        namespace: fc.constantFrom('default', 'kgateway-system'),
      },
      { requiredKeys: ['name'] },
    ),
  ),
  spec: mostly(
    fc.record({
      type: mostly(fc.constant('AI')),
      ai: mostly(fc.oneof({ weight: 4, arbitrary: fc.record({ priorityGroups: mostly(groups) }) }, fc.record({ llm: provider }))),
    }),
  ),
});
const policyDocArb = fc.record({
  apiVersion: fc.constant('llm-failover.dev/v1alpha1'),
  kind: fc.constant('FailoverPolicy'),
  metadata: fc.constant({ name: 'p' }),
  spec: fc.record(
    {
      targetRefs: mostly(fc.constant([{ kind: 'Backend', name: 'model-failover' }])),
      timeouts: mostly(
        fc.record(
          { connect: durations, response: durations, firstToken: durations, streamIdle: durations, request: durations },
          { requiredKeys: [] },
        ),
      ),
      maxAttempts: mostly(fc.integer({ min: -1, max: 101 })),
      maxResponseBytes: mostly(fc.integer({ min: 0, max: 2 ** 31 })),
      maxStreamBytes: mostly(fc.integer({ min: 0, max: 2 ** 41 })),
      cooldown: mostly(fc.record({ afterFailure: durations, maxRetryAfter: durations }, { requiredKeys: [] })),
      providers: mostly(
        fc.dictionary(
          fc.constantFrom('p0', 'p1', 'nobody'),
          fc.record({ tls: mostly(fc.boolean()), timeouts: fc.record({ connect: durations }) }, { requiredKeys: [] }),
        ),
      ),
    },
    { requiredKeys: ['targetRefs'] },
  ),
});
const sidecarDoc = fc.record({
  apiVersion: fc.constant('llm-failover.dev/v1alpha1'),
  kind: fc.constant('SidecarConfig'),
  spec: fc.record(
    {
      listen: mostly(fc.constantFrom('127.0.0.1:0', '[::1]:8080', 'localhost:1', 'nohost')),
      maxBodyBytes: mostly(fc.integer({ min: 0, max: 2 ** 31 })),
      maxConcurrentRequests: mostly(fc.integer({ min: 0, max: 200_000 })),
      headersTimeout: durations,
      logLevel: mostly(fc.constantFrom('info', 'debug', 'loud')),
    },
    { requiredKeys: [] },
  ),
});
const routeDoc = fc.record({
  apiVersion: fc.constant('gateway.networking.k8s.io/v1'),
  kind: fc.constant('HTTPRoute'),
  metadata: fc.constant({ name: 'r' }),
  spec: fc.record({
    rules: mostly(
      fc.array(
        fc.record({
          matches: mostly(
            fc.array(
              fc.record({
                path: fc.record({
                  type: fc.constantFrom('PathPrefix', 'Exact', 'RegularExpression'),
                  value: fc.oneof(
                    fc.constantFrom('/model', '/', '/v1/.*', '/a(b'),
                    fc.string({ maxLength: 8 }).map((s) => `/${s}`),
                  ),
                }),
              }),
              { maxLength: 2 },
            ),
          ),
          backendRefs: mostly(fc.constant([{ name: 'model-failover', group: 'gateway.kgateway.dev', kind: 'Backend' }])),
        }),
        { maxLength: 2 },
      ),
    ),
  }),
});

t.test(
  'the loader on Backend-shaped documents (plus policies, routes, sidecar configs): a well-formed plan or a ConfigError',
  async (t) => {
    let loaded = 0;
    const sometimes = <T>(a: fc.Arbitrary<T>) => fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: a });
    fc.assert(
      fc.property(
        fc.tuple(backendDoc, sometimes(policyDocArb), sometimes(routeDoc), sometimes(sidecarDoc), sometimes(backendDoc)),
        fc.boolean(),
        (all, asJson) => {
          const docs = all.filter((d) => d !== null);
          const text = docs.map((d) => (asJson ? JSON.stringify(d) : toYaml(d))).join('\n---\n');
          const plan = loadChecked(text);
          if (plan) {
            loaded++;
            checkPlan(plan);
          }
        },
      ),
      { numRuns: runs(500) },
    );
    t.ok(loaded > 20, `some documents were valid (${loaded} plans loaded), so the plan checks ran`);
  },
);

/** Every path (as key lists) to a value in a JSON-ish tree. */
function pathsOf(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) out.push(...pathsOf(v, [...prefix, i]));
  } else if (value !== null && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) out.push(...pathsOf(v, [...prefix, k]));
  return out;
}

/** Whether every string holding the planted key is an `inline` field's value. */
function keyOnlyUnderInline(value: unknown): boolean {
  return pathsOf(value).every((p) => {
    let v: unknown = value;
    for (const k of p) v = (v as Record<string | number, unknown>)[k];
    if (typeof v === 'string' && v.includes(PLANTED)) return p.at(-1) === 'inline' && v === PLANTED;
    if (v !== null && typeof v === 'object') return !Object.keys(v).some((k) => k.includes(PLANTED));
    return true;
  });
}

type Mutation = { at: number; op: 'delete' | 'replace' | 'rename' | 'wrap' | 'duplicate' | 'stringify'; value: unknown; key: string };

function mutate(doc: unknown, m: Mutation): unknown {
  const root = structuredClone(doc);
  const paths = pathsOf(root).filter((p) => p.length > 0);
  if (paths.length === 0) return m.value;
  const path = paths[m.at % paths.length];
  let parent = root as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  const current = parent[last];
  switch (m.op) {
    case 'delete':
      if (Array.isArray(parent)) parent.splice(last as number, 1);
      else delete parent[last];
      break;
    case 'replace':
      parent[last] = m.value;
      break;
    case 'rename':
      if (!Array.isArray(parent)) {
        delete parent[last];
        parent[m.key] = current;
      }
      break;
    case 'wrap':
      parent[last] = [current];
      break;
    case 'duplicate':
      if (Array.isArray(parent)) parent.push(structuredClone(current));
      else parent[`${String(last)}2`] = structuredClone(current);
      break;
    case 'stringify':
      parent[last] = JSON.stringify(current) ?? 'undefined';
      break;
  }
  return root;
}

/** The seed documents, with the first provider's key Inline (planted), so a leak would show. */
const SEED_DOCS = SEEDS.map((text) =>
  parseAllDocuments(text)
    .map((d) => d.toJS())
    .map((d) => {
      const s = JSON.stringify(d).replace(
        '{"kind":"SecretRef","secretRef":{"name":"openai-secret"}}',
        `{"kind":"Inline","inline":"${PLANTED}"}`,
      );
      return JSON.parse(s) as unknown;
    }),
);

t.test('the loader on mutations of the seed fixtures: a well-formed plan or a ConfigError that names no key', async (t) => {
  for (const docs of SEED_DOCS) t.ok(loadChecked(docs.map(toYaml).join('---\n')), 'the unmutated seed loads');
  const mutation = fc.record({
    at: fc.nat(),
    op: fc.constantFrom('delete', 'replace', 'rename', 'wrap', 'duplicate', 'stringify'),
    value: fc.oneof(
      { weight: 6, arbitrary: jsonish },
      fc.constantFrom(...PROTO_KEYS).map((k) => JSON.parse(`{${JSON.stringify(k)}:""}`) as unknown),
    ),
    key: fc.constantFrom('kind', 'name', 'inline', 'extra', 'spec', 'apiVersion', 'x'),
  }) as fc.Arbitrary<Mutation>;
  fc.assert(
    fc.property(
      fc.nat({ max: SEED_DOCS.length - 1 }),
      fc.array(fc.tuple(fc.nat(), mutation), { minLength: 1, maxLength: 4 }),
      (seed, ms) => {
        const docs = [...SEED_DOCS[seed]];
        for (const [which, m] of ms) docs[which % docs.length] = mutate(docs[which % docs.length], m);
        const plan = loadChecked(docs.map(toYaml).join('---\n'), docs.every(keyOnlyUnderInline));
        if (plan) checkPlan(plan);
      },
    ),
    { numRuns: runs(500) },
  );
  t.pass('500 mutated seeds');
});

t.test('the loader on byte-level damage next to an Inline key: the ConfigError never carries the key', async (t) => {
  const text = SEED_DOCS[0].map(toYaml).join('---\n');
  const at = text.indexOf(PLANTED);
  t.ok(at > 0, 'the key is in the text');
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.integer({ min: -60, max: 60 }),
          fc.constantFrom('"', "'", ':', '{', '[', '\t', '\n', '#', '&', '*', '!', '|', '>', ' ', '- ', '? ', '%', '@', '`'),
        ),
        { minLength: 1, maxLength: 3 },
      ),
      (edits) => {
        let s = text;
        for (const [offset, ch] of edits) {
          const i = Math.max(0, Math.min(s.length, at + offset));
          s = s.slice(0, i) + ch + s.slice(i);
        }
        loadChecked(s);
      },
    ),
    { numRuns: runs(400) },
  );
  t.pass('400 damaged texts');
});

// ---- the translators ----

const TARGETS: [ProviderAdapter, ModelTarget, string][] = [
  [openaiAdapter, OPENAI_TARGET, 'openai'],
  [anthropicAdapter, ANTHROPIC_TARGET, 'anthropic'],
];

const text = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom('', ' ', '  \n', 'hello', '{"a":1}', 'data:,x', 'data:application/pdf;base64,JVBERi0=', 'https://x/y.png'),
);
const part = fc.oneof(
  fc.record({ type: fc.constant('text'), text }),
  fc.record({ type: fc.constant('refusal'), refusal: text }),
  fc.record({
    type: fc.constant('image_url'),
    image_url: fc.oneof(fc.record({ url: text, detail: fc.constantFrom('low', 'high') }), text),
  }),
  fc.record({ type: fc.constant('file'), file: fc.record({ file_data: text, filename: text, file_id: text }, { requiredKeys: [] }) }),
  fc.record({ type: fc.constant('input_audio'), input_audio: jsonish }),
  jsonish,
);
const content = fc.oneof(text, fc.array(part, { maxLength: 3 }), fc.constant(null), jsonish);
const toolCall = fc.record({
  id: fc.oneof(fc.string({ maxLength: 8 }), jsonish),
  type: fc.constant('function'),
  function: fc.oneof(
    fc.record({
      name: fc.oneof(fc.string({ maxLength: 8 }), jsonish),
      arguments: fc.oneof(fc.constantFrom('', '{}', '{"a":1}', '[1]', '{"cut'), fc.string({ maxLength: 10 }), jsonish),
    }),
    jsonish,
  ),
});
const message = fc.record(
  {
    role: fc.oneof(
      { weight: 5, arbitrary: fc.constantFrom('system', 'developer', 'user', 'assistant', 'tool', 'function') },
      fc.string({ maxLength: 6 }),
    ),
    content,
    name: fc.string({ maxLength: 5 }),
    tool_calls: fc.oneof(fc.array(toolCall, { maxLength: 2 }), jsonish),
    tool_call_id: fc.oneof(fc.string({ maxLength: 8 }), jsonish),
    function_call: fc.oneof(fc.record({ name: fc.string({ maxLength: 5 }), arguments: fc.string({ maxLength: 10 }) }), jsonish),
  },
  { requiredKeys: ['role'] },
);
const tool = fc.oneof(
  fc.record({
    type: fc.constant('function'),
    function: fc.record(
      { name: fc.oneof(fc.string({ maxLength: 6 }), jsonish), description: text, parameters: jsonish, strict: fc.boolean() },
      { requiredKeys: ['name'] },
    ),
  }),
  jsonish,
);
const chatBody = fc.record(
  {
    messages: fc.array(message, { minLength: 1, maxLength: 6 }),
    model: fc.string({ maxLength: 8 }),
    stream: fc.boolean(),
    stream_options: fc.oneof(fc.record({ include_usage: fc.boolean() }), jsonish),
    max_tokens: fc.oneof(fc.integer({ min: -5, max: 100_000 }), jsonish),
    max_completion_tokens: fc.oneof(fc.integer({ min: 0, max: 100_000 }), jsonish),
    temperature: fc.oneof(fc.double({ min: -3, max: 5, noNaN: true }), jsonish),
    top_p: fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), jsonish),
    stop: fc.oneof(text, fc.array(text, { maxLength: 3 }), jsonish),
    tools: fc.oneof(fc.array(tool, { maxLength: 3 }), jsonish),
    functions: fc.oneof(fc.array(fc.record({ name: fc.string({ maxLength: 5 }), parameters: jsonish }), { maxLength: 2 }), jsonish),
    function_call: fc.oneof(fc.constantFrom('auto', 'none'), fc.record({ name: fc.string({ maxLength: 5 }) }), jsonish),
    tool_choice: fc.oneof(
      fc.constantFrom('auto', 'none', 'required'),
      fc.record({ type: fc.constant('function'), function: fc.record({ name: fc.string({ maxLength: 5 }) }) }),
      fc.record({ type: fc.constant('allowed_tools'), allowed_tools: fc.record({ mode: fc.constantFrom('auto', 'required') }) }),
      jsonish,
    ),
    parallel_tool_calls: fc.oneof(fc.boolean(), jsonish),
    response_format: fc.oneof(
      fc.record({ type: fc.constantFrom('text', 'json_object') }),
      fc.record({
        type: fc.constant('json_schema'),
        json_schema: fc.record({ name: text, description: text, schema: jsonish }, { requiredKeys: [] }),
      }),
      jsonish,
    ),
    reasoning_effort: fc.oneof(
      fc.constantFrom('minimal', 'low', 'medium', 'high', 'xhigh', 'none'),
      fc.constantFrom(...PROTO_KEYS),
      jsonish,
    ),
    user: fc.oneof(text, jsonish),
    safety_identifier: text,
    n: fc.integer({ min: 0, max: 5 }),
    seed: fc.integer(),
    metadata: jsonish,
    x_vendor_extension: jsonish,
  },
  { requiredKeys: ['messages'] },
);
/** The request's JSON as a client might frame it: compact, pretty, or padded with whitespace. */
const framed = fc
  .tuple(chatBody, fc.constantFrom(0, 2), fc.constantFrom('', ' ', '\n', '\r\n\t'))
  .map(([body, indent, pad]) => ({ body, raw: Buffer.from(`${pad}${JSON.stringify(body, null, indent)}${pad}`) }));

t.test("openai buildRequest: the body is the client's request with the provider's model, whatever the request", async (t) => {
  let built = 0;
  fc.assert(
    fc.property(framed, ({ raw }) => {
      const req = parsed(raw);
      if (!req) return;
      const up = openaiAdapter.buildRequest(req, OPENAI_TARGET);
      built++;
      const body = JSON.parse(up.body.toString()) as Record<string, unknown>;
      const expected = { ...(JSON.parse(raw.toString()) as Record<string, unknown>), model: 'gpt-4o' };
      const byKey = (o: Record<string, unknown>) => JSON.stringify(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
      if (byKey(body) !== byKey(expected)) throw new Error(`body differs: ${up.body.toString().slice(0, 300)}`);
      const model = (JSON.parse(raw.toString()) as { model?: unknown }).model;
      if (typeof model === 'string') {
        // byte for byte but for the model's value: one changed region, no larger than the values swapped
        const out = Buffer.from(up.body);
        let pre = 0;
        while (pre < raw.length && pre < out.length && raw[pre] === out[pre]) pre++;
        let suf = 0;
        while (suf < raw.length - pre && suf < out.length - pre && raw[raw.length - 1 - suf] === out[out.length - 1 - suf]) suf++;
        if (raw.length - pre - suf > Buffer.byteLength(JSON.stringify(model)) || out.length - pre - suf > '"gpt-4o"'.length)
          throw new Error(`more than the model changed: ${up.body.toString().slice(0, 300)}`);
      }
      if (
        up.path !== OPENAI_TARGET.path ||
        up.headers.authorization !== 'Bearer sk-test-planted-secret-0123456789' ||
        up.headers['content-type'] !== 'application/json'
      )
        throw new Error('headers');
      // a second model of the same request reuses nothing it should not
      const again = openaiAdapter.buildRequest(req, OPENAI_TARGET);
      if (again.body.toString() !== up.body.toString()) throw new Error('not stable');
    }),
    { numRuns: runs(400) },
  );
  t.ok(built > 300, `${built} requests built`);
});

type AnthropicBody = {
  model?: unknown;
  max_tokens?: unknown;
  system?: unknown;
  messages?: { role: string; content: { type: string; text?: string }[] }[];
  temperature?: unknown;
  stop_sequences?: unknown;
};

/** The 400s of simulator/anthropic-validate.ts that no client request may lead to: thinking and what it rules out, sampling ranges, empty or whitespace text, who speaks first, the prefill, tool results first. */
const ANTHROPIC_PROMISES =
  /thinking|temperature|top_k|text content blocks|trailing whitespace|first message|non-empty content|tool_result blocks must come first|^system/;

t.test('anthropic buildRequest: throws (untranslatable) or builds a request in the shape the Messages API requires', async (t) => {
  let built = 0;
  let nonEmpty = 0;
  let thinking = 0;
  fc.assert(
    fc.property(framed, ({ raw }) => {
      const req = parsed(raw);
      if (!req) return;
      let up: ReturnType<ProviderAdapter['buildRequest']>;
      try {
        up = anthropicAdapter.buildRequest(req, ANTHROPIC_TARGET);
      } catch {
        return; // documented: the attempt fails over as untranslatable
      }
      built++;
      if (up.headers['x-api-key'] !== 'sk-test-planted-secret-0123456789' || !up.headers['anthropic-version']) throw new Error('headers');
      const body = JSON.parse(up.body.toString()) as AnthropicBody;
      if (body.model !== 'claude-x') throw new Error('model');
      if (typeof body.max_tokens !== 'number') throw new Error('max_tokens');
      if (body.temperature !== undefined && (typeof body.temperature !== 'number' || body.temperature < 0 || body.temperature > 1))
        throw new Error(`temperature ${body.temperature}`);
      if (
        body.stop_sequences !== undefined &&
        (!Array.isArray(body.stop_sequences) || body.stop_sequences.some((s) => typeof s !== 'string' || s === ''))
      )
        throw new Error('stop_sequences');
      const turns = body.messages ?? [];
      if (turns.length > 0) nonEmpty++;
      turns.forEach((turn, i) => {
        if (turn.role !== (i % 2 === 0 ? 'user' : 'assistant'))
          throw new Error(`turn ${i} is ${turn.role}: roles must alternate, starting with the user`);
        if (!Array.isArray(turn.content) || turn.content.length === 0) throw new Error(`turn ${i} is empty`);
        for (const b of turn.content)
          if (b.type === 'text' && (typeof b.text !== 'string' || b.text.trim() === '')) throw new Error(`turn ${i}: an empty text block`);
        const firstOther = turn.content.findIndex((b) => b.type !== 'tool_result');
        if (firstOther !== -1 && turn.content.slice(firstOther).some((b) => b.type === 'tool_result'))
          throw new Error(`turn ${i}: tool results must come first`);
      });
      const last = turns.at(-1);
      const tail = last?.content.at(-1);
      if (last?.role === 'assistant' && tail?.type === 'text' && tail.text !== tail.text?.trimEnd())
        throw new Error('a prefill ending in whitespace');
      // the strict simulator's verdict, for the rules docs/translation.md says the translation
      // satisfies whatever the client sent (the rest, such as a tool result answering no call, are
      // the client's fault on OpenAI too, and handed back as Anthropic's 400)
      if ((body as { thinking?: unknown }).thinking !== undefined) thinking++;
      const problem = anthropicRequestProblem(body);
      // (a limit below 1 is refused by OpenAI too; raised by the thinking budget it meets the budget rule instead)
      const sent = JSON.parse(raw.toString()) as { max_tokens?: unknown; max_completion_tokens?: unknown };
      const clientsOwn =
        [sent.max_completion_tokens, sent.max_tokens].some((v) => typeof v === 'number' && v < 1) && /budget_tokens/.test(problem ?? '');
      if (problem && ANTHROPIC_PROMISES.test(problem) && !clientsOwn) throw new Error(`Anthropic would refuse it: ${problem}`);
    }),
    { numRuns: runs(400) },
  );
  t.ok(
    built > 300 && nonEmpty > 100 && thinking > 20,
    `${built} requests built, ${nonEmpty} with messages, ${thinking} with extended thinking`,
  );
});

const ANY_BYTES = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
  fc.string({ maxLength: 200 }).map((s) => Buffer.from(s)),
  jsonish.map((j) => Buffer.from(JSON.stringify(j) ?? '')),
);

const openaiCompletion = fc.record(
  {
    id: fc.string({ maxLength: 8 }),
    object: fc.constantFrom('chat.completion', 'x'),
    model: fc.oneof(fc.string({ maxLength: 8 }), jsonish),
    choices: fc.oneof(
      fc.array(
        fc.record({
          index: fc.nat(),
          message: fc.record({ role: fc.constant('assistant'), content: fc.oneof(text, fc.constant(null)) }),
          finish_reason: fc.constantFrom('stop', 'length', null),
        }),
        { maxLength: 2 },
      ),
      jsonish,
    ),
    usage: fc.oneof(fc.record({ prompt_tokens: fc.oneof(fc.nat(), jsonish), completion_tokens: fc.oneof(fc.nat(), jsonish) }), jsonish),
    error: jsonish,
  },
  { requiredKeys: [] },
);
const anthropicBlock = fc.oneof(
  fc.record({ type: fc.constant('text'), text: fc.oneof(text, jsonish) }),
  fc.record({
    type: fc.constant('tool_use'),
    id: fc.oneof(fc.string({ maxLength: 8 }), jsonish),
    name: fc.oneof(fc.string({ maxLength: 6 }), jsonish),
    input: jsonish,
  }),
  fc.record({ type: fc.constantFrom('thinking', 'redacted_thinking', 'server_tool_use'), thinking: text }),
  jsonish,
);
const anthropicUsage = fc.record(
  {
    input_tokens: fc.oneof(fc.nat(), jsonish),
    output_tokens: fc.oneof(fc.nat(), jsonish),
    cache_read_input_tokens: fc.oneof(fc.nat(), jsonish),
    cache_creation_input_tokens: fc.oneof(fc.nat(), jsonish),
  },
  { requiredKeys: [] },
);
const anthropicMessage = fc.record(
  {
    id: fc.oneof(fc.string({ maxLength: 10 }), jsonish),
    type: fc.constantFrom('message', 'error', 'x'),
    role: fc.constant('assistant'),
    model: fc.oneof(fc.string({ maxLength: 8 }), jsonish),
    content: fc.oneof(fc.array(anthropicBlock, { maxLength: 3 }), jsonish),
    stop_reason: fc.oneof(
      fc.constantFrom('end_turn', 'max_tokens', 'tool_use', 'refusal', 'pause_turn', 'stop_sequence', 'model_context_window_exceeded'),
      jsonish,
    ),
    usage: fc.oneof(anthropicUsage, jsonish),
    error: fc.oneof(fc.record({ type: fc.constantFrom('overloaded_error', 'api_error'), message: text }), jsonish),
  },
  { requiredKeys: [] },
);

t.test('translateResponse on arbitrary bytes: a chat.completion or a failure, never a throw', async (t) => {
  const counts = { ok: 0, failed: 0 };
  for (const [adapter, target, name] of TARGETS) {
    const shaped = (name === 'openai' ? openaiCompletion : anthropicMessage).map((j) => Buffer.from(JSON.stringify(j)));
    fc.assert(
      fc.property(fc.oneof(ANY_BYTES, shaped), fc.boolean(), (body, legacy) => {
        const req = parsed(
          Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], ...(legacy ? { functions: [{ name: 'f' }] } : {}) })),
        )!;
        const r = adapter.translateResponse(body, req, target);
        if (!r.ok) {
          counts.failed++;
          if (!REASONS.has(r.failure.reason) || r.failure.reason === 'client_error' || typeof r.failure.message !== 'string')
            throw new Error(`failure ${JSON.stringify(r.failure)}`);
          return;
        }
        counts.ok++;
        const json = JSON.parse(r.body.toString()) as {
          choices?: { message?: { role?: string }; finish_reason?: unknown }[];
          object?: string;
        };
        if (!Array.isArray(json.choices)) throw new Error('no choices');
        // docs/reliability.md: a 200 whose choices are empty, or not objects with a message object, is a bad_response
        if (
          json.choices.length === 0 ||
          !json.choices.every(
            (c) => c !== null && typeof c === 'object' && c.message !== null && typeof c.message === 'object' && !Array.isArray(c.message),
          )
        )
          throw new Error(`choices that prove nothing served: ${r.body}`);
        if (name === 'anthropic') {
          if (json.object !== 'chat.completion' || json.choices.length !== 1 || json.choices[0].message?.role !== 'assistant')
            throw new Error(`not a chat.completion: ${r.body}`);
          if (!['stop', 'length', 'tool_calls', 'function_call', 'content_filter'].includes(String(json.choices[0].finish_reason)))
            throw new Error(`finish_reason ${json.choices[0].finish_reason}`);
        }
        // numbers, whatever the provider claimed (counts near Number.MAX_VALUE may sum to Infinity; OpenAI's are passed on as sent)
        if (r.usage && (Number.isNaN(r.usage.inputTokens) || Number.isNaN(r.usage.outputTokens) || typeof r.usage.inputTokens !== 'number'))
          throw new Error(`usage ${JSON.stringify(r.usage)}`);
      }),
      { numRuns: runs(400) },
    );
  }
  t.ok(counts.ok > 20 && counts.failed > 100, `answers (${counts.ok}) and failures (${counts.failed}) both seen`);
});

const retryHeaders = fc.record(
  {
    'retry-after': fc.oneof(
      fc.constantFrom('7', '0', '1.5', '-1', 'Wed, 21 Oct 2015 07:28:00 GMT', new Date(Date.now() + 9e9).toUTCString()),
      fc.string({ maxLength: 10 }),
    ),
    'retry-after-ms': fc.oneof(fc.constantFrom('4500', '1e9', '99999999999999999999'), fc.string({ maxLength: 10 })),
    'x-ratelimit-reset-requests': fc.oneof(fc.constantFrom('6s', '1m30s', '20ms', '99999h'), fc.string({ maxLength: 10 })),
    'anthropic-ratelimit-requests-reset': fc.oneof(fc.constant(new Date(Date.now() + 12_000).toISOString()), fc.string({ maxLength: 24 })),
  },
  { requiredKeys: [] },
);

t.test('translateError on arbitrary status, headers and bytes: a classified failure and an OpenAI-shaped client body', async (t) => {
  const MAX = 300_000;
  for (const [adapter, , name] of TARGETS) {
    const shaped = (
      name === 'openai'
        ? fc.record({
            error: fc.oneof(
              fc.record(
                {
                  message: fc.oneof(text, jsonish),
                  type: fc.oneof(fc.string({ maxLength: 8 }), jsonish),
                  code: fc.oneof(fc.constantFrom('context_length_exceeded', 'rate_limit_exceeded'), jsonish),
                },
                { requiredKeys: [] },
              ),
              jsonish,
            ),
          })
        : fc.record({
            type: fc.constant('error'),
            error: fc.oneof(
              fc.record(
                {
                  type: fc.constantFrom('overloaded_error', 'invalid_request_error', 'billing_error', 'x', ...PROTO_KEYS),
                  message: fc.oneof(fc.constantFrom('prompt is too long', 'max_tokens: 9 > 8, which is the maximum'), text, jsonish),
                },
                { requiredKeys: [] },
              ),
              jsonish,
            ),
          })
    ).map((j) => Buffer.from(JSON.stringify(j)));
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: 100, max: 199 }), fc.integer({ min: 300, max: 599 })),
        retryHeaders,
        fc.oneof(ANY_BYTES, shaped),
        (status, headers, body) => {
          const { failure, clientBody } = adapter.translateError(status, headers, body, MAX);
          if (!REASONS.has(failure.reason)) throw new Error(`reason ${failure.reason}`);
          if (failure.status !== status) throw new Error('status');
          if (typeof failure.message !== 'string' || failure.message.length > 2000) throw new Error('message');
          if (failure.retryAfterMs !== undefined && !(failure.retryAfterMs >= 0 && failure.retryAfterMs <= MAX))
            throw new Error(`retryAfterMs ${failure.retryAfterMs}`);
          if (status === 429 && failure.reason !== 'rate_limited') throw new Error('429');
          if (status >= 500 && !['upstream_5xx', 'overloaded'].includes(failure.reason)) throw new Error(`${status} -> ${failure.reason}`);
          const json = JSON.parse(clientBody.toString()) as { error?: { type?: unknown; message?: unknown } };
          if (json === null || typeof json !== 'object' || json.error === undefined) throw new Error(`client body ${clientBody}`);
          // Anthropic's errors are rewritten into OpenAI's shape: message and type are always there
          if (name === 'anthropic' && (typeof json.error.type !== 'string' || typeof json.error.message !== 'string'))
            throw new Error(`not OpenAI-shaped: ${clientBody}`);
        },
      ),
      { numRuns: runs(500) },
    );
  }
  t.pass('1000 errors');
});

// ---- streams ----

const chunkData = fc.record(
  {
    id: fc.string({ maxLength: 6 }),
    object: fc.constant('chat.completion.chunk'),
    model: fc.string({ maxLength: 6 }),
    choices: fc.oneof(
      {
        weight: 4,
        arbitrary: fc.array(
          fc.record(
            {
              index: fc.nat(3),
              delta: fc.record(
                {
                  role: fc.constant('assistant'),
                  content: fc.oneof(text, fc.constant(null)),
                  tool_calls: fc.oneof(fc.array(jsonish, { maxLength: 1 }), jsonish),
                  refusal: text,
                },
                { requiredKeys: [] },
              ),
              finish_reason: fc.oneof(fc.constantFrom('stop', null), jsonish),
            },
            { requiredKeys: [] },
          ),
          { maxLength: 2 },
        ),
      },
      jsonish,
    ),
    usage: fc.oneof(fc.record({ prompt_tokens: fc.nat(), completion_tokens: fc.nat() }), jsonish),
    error: jsonish,
  },
  { requiredKeys: [] },
);
const singleLine = (s: string) => !/[\r\n]/.test(s);
/** A chunk as servers write it: compact (OpenAI), spaced (Python's json.dumps), keys in another order, or cut short. */
const chunkText = fc
  .tuple(chunkData, fc.constantFrom('compact', 'spaced'), fc.constantFrom('openai', 'reversed'), fc.nat(), fc.nat(7), fc.nat(3))
  .map(([chunk, spacing, keyOrder, cut, truncate, withError]) => {
    // an error object in one chunk of eight: the attempt ends at the first
    const { error, ...j } = chunk;
    if (withError === 0 && error !== undefined) Object.assign(j, { error });
    const text = serializeJson(j, { spacing: spacing as 'compact' | 'spaced', keyOrder: keyOrder as 'openai' | 'reversed' });
    return truncate === 0 && text.length > 1 ? text.slice(0, 1 + (cut % (text.length - 1))) : text;
  });
const openaiEvent = fc.record({
  event: fc.constantFrom('message', 'message', 'message', 'message', 'message', 'error', 'x'),
  data: fc
    .oneof({ weight: 12, arbitrary: chunkText }, fc.constant('[DONE]'), fc.string({ maxLength: 30 }), fc.constant('{"id" not json'))
    .filter(singleLine),
});

type ChunkJson = { error?: unknown; choices?: unknown; usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } | null };
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
/** docs/reliability.md's commit point: text, a tool call, a refusal, reasoning, a finish reason. */
function carriesContent(choices: Record<string, unknown>[]): boolean {
  return choices.some((c) => {
    if (c.finish_reason) return true;
    const d = c.delta;
    if (!isObj(d)) return false;
    const s = (v: unknown) => typeof v === 'string' && v !== '';
    return (
      s(d.content) ||
      (Array.isArray(d.tool_calls) && d.tool_calls.length > 0) ||
      s(d.refusal) ||
      s(d.reasoning_content) ||
      Boolean(d.function_call)
    );
  });
}

/**
 * What docs/reliability.md says an OpenAI-compatible stream's events mean, one at a time: every
 * event is read, before and after the commit point. `committed`: content was seen before.
 */
function openaiOracle(
  e: SseEvent,
  committed: boolean,
): { error?: FailureReason; out?: string; content?: boolean; usage?: { inputTokens: number; outputTokens: number } } {
  if (e.data === '[DONE]') return committed ? { out: 'data: [DONE]\n\n', content: true } : { error: 'bad_response' }; // ended with no content, no finish reason
  let json: unknown;
  try {
    json = JSON.parse(e.data);
  } catch {
    return { error: 'bad_response' }; // malformed: before content a failover, after it a cut
  }
  if (!isObj(json)) return { error: 'bad_response' };
  const chunk = json as ChunkJson;
  if (chunk.error || e.event === 'error') return { error: 'stream_error' };
  const u = chunk.usage;
  const usage =
    isObj(u) && typeof u.prompt_tokens === 'number' && typeof u.completion_tokens === 'number'
      ? { inputTokens: u.prompt_tokens, outputTokens: u.completion_tokens }
      : undefined;
  if (!Array.isArray(chunk.choices)) return { usage }; // not forwarded: chunk.choices[0] would throw in the app
  if (!chunk.choices.every(isObj)) return { error: 'bad_response' };
  return { out: `data: ${e.data}\n\n`, content: committed || carriesContent(chunk.choices as Record<string, unknown>[]), usage };
}
const anthropicData = fc.oneof(
  fc.record({
    type: fc.constant('message_start'),
    message: fc.oneof(
      fc.record(
        { id: fc.string({ maxLength: 6 }), model: fc.oneof(fc.string({ maxLength: 6 }), jsonish), usage: anthropicUsage },
        { requiredKeys: [] },
      ),
      jsonish,
    ),
  }),
  fc.record({
    type: fc.constant('content_block_start'),
    index: fc.oneof(fc.nat(3), jsonish),
    content_block: fc.oneof(anthropicBlock, jsonish),
  }),
  fc.record({
    type: fc.constant('content_block_delta'),
    index: fc.oneof(fc.nat(3), jsonish),
    delta: fc.oneof(
      fc.record(
        {
          type: fc.constantFrom('text_delta', 'input_json_delta', 'thinking_delta', 'signature_delta', 'citations_delta'),
          text: fc.oneof(text, jsonish),
          partial_json: fc.oneof(text, jsonish),
        },
        { requiredKeys: ['type'] },
      ),
      jsonish,
    ),
  }),
  fc.record({ type: fc.constant('content_block_stop'), index: fc.oneof(fc.nat(3), jsonish) }),
  fc.record({
    type: fc.constant('message_delta'),
    delta: fc.oneof(fc.record({ stop_reason: fc.oneof(fc.constantFrom('end_turn', 'tool_use', 'max_tokens'), jsonish) }), jsonish),
    usage: fc.oneof(anthropicUsage, jsonish),
  }),
  fc.record({ type: fc.constantFrom('message_stop', 'ping') }),
  fc.record({
    type: fc.constant('error'),
    error: fc.oneof(fc.record({ type: fc.constantFrom('overloaded_error', 'api_error'), message: text }), jsonish),
  }),
  jsonish,
);
const anthropicEvent = fc.record({
  event: fc.constantFrom('message_start', 'content_block_delta', 'message_stop', 'error', 'ping', 'message'),
  data: fc
    .oneof({ weight: 6, arbitrary: anthropicData.map((j) => JSON.stringify(j) ?? 'null') }, fc.string({ maxLength: 20 }))
    .filter(singleLine),
});

/** Every event of one translator step's output: `data: <one line>` blocks, nothing else. */
function outEvents(out: string): string[] {
  if (!out.endsWith('\n\n')) throw new Error(`output not framed: ${JSON.stringify(out.slice(-40))}`);
  return out
    .slice(0, -2)
    .split('\n\n')
    .map((block) => {
      if (!block.startsWith('data: ') || block.includes('\n'))
        throw new Error(`not a single data line: ${JSON.stringify(block.slice(0, 80))}`);
      return block.slice(6);
    });
}

t.test('the stream translators on arbitrary SSE events: well-framed output, failures from the vocabulary, never a throw', async (t) => {
  let outputs = 0;
  const perTranslator: Record<string, number> = {};
  for (const [adapter, target, name] of TARGETS) {
    fc.assert(
      fc.property(
        fc.array((name === 'openai' ? openaiEvent : anthropicEvent) as fc.Arbitrary<SseEvent>, { maxLength: 12 }),
        fc.boolean(),
        (events, usage) => {
          const req = parsed(
            Buffer.from(
              JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: usage } }),
            ),
          )!;
          const translator = adapter.streamTranslator(req, target);
          let committed = false;
          for (const e of events) {
            const step = translator.push(e);
            if (name === 'openai') {
              const want = openaiOracle(e, committed);
              const got = { error: step.error?.reason, out: step.out, content: step.content || undefined, usage: step.usage };
              if (
                JSON.stringify(got) !==
                JSON.stringify({ error: want.error, out: want.out, content: want.content || undefined, usage: want.usage })
              )
                throw new Error(
                  `${JSON.stringify(e)} (committed: ${committed}): got ${JSON.stringify(got)}, the docs say ${JSON.stringify(want)}`,
                );
              if (want.content) committed = true;
            }
            if (step.error && (!REASONS.has(step.error.reason) || typeof step.error.message !== 'string'))
              throw new Error(`error ${JSON.stringify(step.error)}`);
            // for OpenAI the attempt ends there (a failover, or a cut after content); Anthropic's translator is pushed on, to prove it never throws
            if (step.error && name === 'openai') break;
            if (step.out === undefined) continue;
            outputs++;
            perTranslator[name] = (perTranslator[name] ?? 0) + 1;
            for (const data of outEvents(step.out)) {
              if (data === '[DONE]') continue;
              const chunk = JSON.parse(data) as { object?: string; choices?: unknown };
              if (!Array.isArray(chunk.choices)) throw new Error(`a chunk without choices reached the client: ${data.slice(0, 100)}`);
              if (name === 'anthropic' && chunk.object !== 'chat.completion.chunk') throw new Error(`not a chunk: ${data.slice(0, 100)}`);
            }
            if (step.done && !step.out.endsWith('data: [DONE]\n\n')) throw new Error('done without [DONE]');
            if ((step.done || step.error) && name === 'openai') break;
          }
        },
      ),
      { numRuns: runs(500) },
    );
  }
  t.ok(outputs > 300, `${outputs} outputs checked (${JSON.stringify(perTranslator)})`);
});

/** A valid SSE stream as text, and the events it holds. */
const sseStream = fc
  .array(
    fc.record({
      event: fc.option(fc.constantFrom('message_start', 'content_block_delta', 'error', 'ünïcödé'), { nil: undefined }),
      data: fc.array(fc.string({ unit: 'grapheme', maxLength: 12 }).filter(singleLine), { minLength: 1, maxLength: 3 }),
      comment: fc.option(fc.string({ maxLength: 8 }).filter(singleLine), { nil: undefined }),
      id: fc.boolean(),
      eol: fc.constantFrom('\n', '\r\n', '\r'),
      end: fc.constantFrom('\n', '\r\n'),
    }),
    { minLength: 1, maxLength: 8 },
  )
  .map((events) => {
    let text = '';
    for (const e of events) {
      if (e.comment !== undefined) text += `:${e.comment}${e.eol}`;
      if (e.event) text += `event: ${e.event}${e.eol}`;
      if (e.id) text += `id: 42${e.eol}retry: 1000${e.eol}`;
      for (const d of e.data) text += `data: ${d}${e.eol}`;
      text += e.eol === '\r' ? '\r\n' : e.end; // "\r" + "\n" would be one line end
    }
    return { bytes: Buffer.from(text), expected: events.map((e) => ({ event: e.event ?? 'message', data: e.data.join('\n') })) };
  });

t.test('SseParser: the same events however the bytes are split (even inside a UTF-8 sequence or a \\r\\n)', async (t) => {
  fc.assert(
    fc.property(sseStream, fc.array(fc.nat(), { maxLength: 12 }), ({ bytes, expected }, cuts) => {
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const parser = new SseParser();
      const got: SseEvent[] = [];
      let from = 0;
      for (const p of [...points, bytes.length]) {
        got.push(...parser.push(bytes.subarray(from, p)));
        from = p;
      }
      if (JSON.stringify(got) !== JSON.stringify(expected))
        throw new Error(`split at ${points}: ${JSON.stringify(got)} != ${JSON.stringify(expected)}`);
    }),
    { numRuns: runs(800) },
  );
  t.pass('800 streams, every chunking');
});

t.test('SseParser: byte by byte equals all at once', async (t) => {
  fc.assert(
    fc.property(sseStream, ({ bytes, expected }) => {
      const parser = new SseParser();
      const got: SseEvent[] = [];
      for (let i = 0; i < bytes.length; i++) got.push(...parser.push(bytes.subarray(i, i + 1)));
      if (JSON.stringify(got) !== JSON.stringify(expected)) throw new Error('byte by byte differs');
    }),
    { numRuns: runs(200) },
  );
  t.pass('200 streams');
});

// ---- bugs found by the fuzzing above, pinned where no other test of the loader holds them ----

t.test('an alias to a missing anchor, or an alias bomb, is a ConfigError (exit 2, the file named), not a raw ReferenceError', async (t) => {
  t.throws(() => loadPlan([{ name: 'alias.yaml', text: 'a: *x\n' }]), ConfigError);
  const lol = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (const [i, n] of ['b', 'c', 'd', 'e'].entries()) lol.push(`${n}: &${n} [${Array(9).fill(`*${'abcd'[i]}`).join(',')}]`);
  t.throws(() => loadPlan([{ name: 'bomb.yaml', text: `${lol.join('\n')}\n` }]), ConfigError);
});

t.test('a hostOverride.host that is not a host name is a ConfigError, not a crash at start', async (t) => {
  for (const host of ['exa mple.com', 'a/b', '[::1]', 'a#b', 'x@evil.com']) {
    const yaml = backendYaml([{ name: 'p', group: 0 }], { p: 8080 }).replace('host: 127.0.0.1', `host: ${JSON.stringify(host)}`);
    t.throws(() => loadPlan([{ name: 'h.yaml', text: yaml }]), ConfigError, `host ${JSON.stringify(host)}`);
  }
});

t.test('a document whose apiVersion is a mapping with a "toString" key is a ConfigError', async (t) => {
  t.throws(() => loadPlan([{ name: 'odd.yaml', text: 'apiVersion: {toString: ""}\nkind: Backend\nmetadata: {name: x}\n' }]), ConfigError);
});

t.test('a zero timeout, deadline or probe interval is a ConfigError', async (t) => {
  const base = backendYaml([{ name: 'p', group: 0 }], { p: 8080 });
  const policy = (spec: string) =>
    `---\napiVersion: llm-failover.dev/v1alpha1\nkind: FailoverPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{kind: Backend, name: model-failover}]\n${spec}\n`;
  for (const spec of [
    '  timeouts: {request: 0s}',
    '  timeouts: {response: 0ms}',
    '  timeouts: {firstToken: 0s}',
    '  timeouts: {streamIdle: 0s}',
    '  timeouts: {connect: 0s}',
    '  health: {probe: {interval: 0s}}',
    '  health: {probe: {idleInterval: 0ms}}',
    '  health: {probe: {timeout: 0s}}',
  ]) {
    t.throws(() => loadPlan([{ name: 'zero.yaml', text: base + policy(spec) }]), ConfigError, spec.trim());
  }
});
