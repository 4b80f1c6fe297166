/**
 * Settings and provider facts: one layered merge (defaults, then the FailoverPolicy, then its
 * per-provider override) of schema outputs whose durations the schema already converted; the
 * defaults the plan runs with; every registered provider has its facts, its block in the
 * schema and its adapter, so a new provider is its module and its adapter and nothing else.
 */
import t from 'tap';
import { duration } from '../sidecar/config/fields.ts';
import { loadPlan } from '../sidecar/config/load.ts';
import { DEFAULT_FAILOVER, DEFAULT_HEALTH, DEFAULT_SERVER } from '../sidecar/config/plan.ts';
import { ANTHROPIC_VERSION } from '../sidecar/config/providers/anthropic.ts';
import { PROVIDER_KINDS, providerFacts } from '../sidecar/config/providers/index.ts';
import { llmProvider, UNSERVED_PROVIDERS } from '../sidecar/config/schema.ts';
import { HEALTH_DEFAULTS, type HealthSpec, layered } from '../sidecar/config/settings.ts';
import { ADAPTERS } from '../sidecar/translate/index.ts';

t.test('durations: the schema converts them to milliseconds, with the same message for a bad one', async (t) => {
  t.equal(duration.parse('1m30s'), 90_000);
  t.equal(duration.parse('500ms'), 500);
  for (const bad of ['0s', '5 minutes', '', '1d']) {
    const r = duration.safeParse(bad);
    t.notOk(r.success, bad);
    t.equal(r.error?.issues[0].message, 'a duration above zero, such as "500ms", "30s", "5m" or "1h"', bad);
  }
});

t.test('layered: a layer replaces the fields it sets, nested groups merged, nothing but settings read', async (t) => {
  const merged = layered<HealthSpec>(HEALTH_DEFAULTS, { probe: { interval: 3_000 }, breaker: { enabled: false } }, undefined, {
    probe: { kind: 'chat' },
    slowThreshold: 1_000,
  });
  t.same(merged.probe, { ...HEALTH_DEFAULTS.probe, interval: 3_000, kind: 'chat' });
  t.same(merged.breaker, { ...HEALTH_DEFAULTS.breaker, enabled: false });
  t.equal(merged.slowThreshold, 1_000);
  t.equal(merged.suspectAfter, HEALTH_DEFAULTS.suspectAfter);
  t.equal(layered<HealthSpec>(HEALTH_DEFAULTS), HEALTH_DEFAULTS, 'no layer: the defaults themselves');
  const withExtra = layered<HealthSpec>(HEALTH_DEFAULTS, { targetRefs: [{ name: 'x' }], slowThreshold: 2 } as HealthSpec);
  t.notOk('targetRefs' in withExtra, 'a field the defaults do not have is not a setting');
  t.same(HEALTH_DEFAULTS.probe.interval, 10_000, 'the defaults are not written to');
});

t.test('the defaults the plan runs with', async (t) => {
  t.same(DEFAULT_SERVER, {
    listen: '127.0.0.1:8080',
    admin: '127.0.0.1:15000',
    maxBodyBytes: 33_554_432,
    maxConcurrentRequests: 4096,
    maxQueuedRequests: 1024,
    queueTimeoutMs: 10_000,
    maxConnections: 4096,
    headersTimeoutMs: 30_000,
    requestBodyTimeoutMs: 60_000,
    drainGraceMs: 25_000,
    logLevel: 'info',
  });
  t.same(DEFAULT_FAILOVER, {
    timeouts: { connectMs: 5_000, responseMs: 300_000, firstTokenMs: 30_000, streamIdleMs: 30_000 },
    requestDeadlineMs: 600_000,
    maxAttempts: 0,
    cooldownAfterFailureMs: 10_000,
    cooldownAfterAuthFailureMs: 60_000,
    maxRetryAfterMs: 300_000,
    maxResponseBytes: 8_388_608,
    maxStreamBytes: 67_108_864,
  });
  t.same(DEFAULT_HEALTH, {
    probe: {
      kind: 'auto',
      intervalMs: 10_000,
      idleIntervalMs: 60_000,
      edgeIntervalMs: 1_000,
      timeoutMs: 5_000,
      jitterPercent: 20,
      healthyThreshold: 2,
      unhealthyThreshold: 2,
      prompt: 'Reply with the single word: ok',
      maxTokens: 16,
    },
    slowThresholdMs: 8_000,
    suspectAfterMs: 3_000,
    breaker: {
      enabled: true,
      consecutiveFailures: 5,
      windowMs: 10_000,
      errorThresholdPercentage: 50,
      volumeThreshold: 3,
      resetTimeoutMs: 10_000,
    },
  });
});

const YAML = `apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata: {name: b}
spec:
  type: AI
  ai:
    priorityGroups:
    - providers:
      - name: a
        openai: {authToken: {kind: Inline, inline: k}}
      - name: c
        anthropic: {authToken: {kind: Inline, inline: k}}
---
apiVersion: llm-failover.dev/v1alpha1
kind: FailoverPolicy
metadata: {name: p}
spec:
  targetRefs: [{kind: Backend, name: b}]
  timeouts: {connect: 1s, request: 1m}
  health: {probe: {interval: 3s}, breaker: {window: 20s}}
  providers:
    c:
      timeouts: {streamIdle: 7s, request: 1s}
      health: {probe: {timeout: 500ms}}
`;

t.test('a model runs with the defaults, then the policy, then its override', async (t) => {
  const plan = loadPlan([{ name: 'p.yaml', text: YAML }]);
  const b = plan.backends[0];
  const [a, c] = b.groups[0];
  t.equal(b.settings.requestDeadlineMs, 60_000, "the policy's request deadline");
  t.same(a.timeouts, { ...DEFAULT_FAILOVER.timeouts, connectMs: 1_000 });
  t.same(
    c.timeouts,
    { ...DEFAULT_FAILOVER.timeouts, connectMs: 1_000, streamIdleMs: 7_000 },
    "an override's timeouts.request is not a model's",
  );
  t.same([a.health.probe.intervalMs, a.health.probe.timeoutMs, a.health.breaker.windowMs], [3_000, 5_000, 20_000]);
  t.same([c.health.probe.intervalMs, c.health.probe.timeoutMs, c.health.breaker.windowMs], [3_000, 500, 20_000]);
});

t.test('every provider the registry serves has its facts, its schema block and its adapter', async (t) => {
  const blocks: Record<string, unknown> = llmProvider.shape;
  for (const kind of PROVIDER_KINDS) {
    const facts = providerFacts(kind);
    t.ok(ADAPTERS[kind], `${kind}: an adapter`);
    t.ok(blocks[kind], `${kind}: a block in the Backend schema`);
    t.notOk((UNSERVED_PROVIDERS as readonly string[]).includes(kind), `${kind}: not also unserved`);
    t.match(facts.origin, /^https:\/\/[^/]+$/, `${kind}: an origin`);
    t.match(facts.chatPath, /^\//, `${kind}: a chat path`);
    t.equal(facts.auth.header, facts.auth.header.toLowerCase(), `${kind}: the auth header in lower case`);
    t.ok(facts.auth.prefix === '' || facts.auth.prefix.endsWith(' '), `${kind}: the prefix ends in a space`);
    const plan = loadPlan([
      {
        name: 'x.yaml',
        text: `apiVersion: gateway.kgateway.dev/v1alpha1\nkind: Backend\nmetadata: {name: b}\nspec:\n  type: AI\n  ai:\n    llm:\n      ${kind}: {authToken: {kind: Inline, inline: k}}\n`,
      },
    ]);
    const m = plan.backends[0].groups[0][0];
    t.same(
      [m.provider, m.origin, m.path, m.auth.header, m.auth.prefix],
      [kind, facts.origin, facts.chatPath, facts.auth.header, facts.auth.prefix],
      `${kind}: a target from its facts`,
    );
    t.match(facts.modelsProbe(m).path, /\/models$/, `${kind}: the model list beside the chat path`);
  }
});

t.test("Anthropic's facts: the version header on chat and probes alike", async (t) => {
  const plan = loadPlan([{ name: 'p.yaml', text: YAML }]);
  const c = plan.backends[0].groups[0][1];
  t.equal(c.apiVersion, ANTHROPIC_VERSION);
  t.same(providerFacts('anthropic').headers(c), { 'anthropic-version': ANTHROPIC_VERSION });
  t.same(providerFacts('anthropic').modelsProbe(c), { path: '/v1/models', headers: { 'anthropic-version': ANTHROPIC_VERSION } });
  t.same(providerFacts('openai').modelsProbe(plan.backends[0].groups[0][0]), { path: '/v1/models', headers: {} });
});
