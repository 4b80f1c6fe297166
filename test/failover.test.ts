/**
 * Failover inside the request (non-streamed): every failure kind a provider produces moves the
 * request to the next model and the app sees a normal 200; the request's own errors do not.
 */
import t from 'tap';
import type { Fault } from '../simulator/index.ts';
import { HELLO, startHarness } from './support/harness.ts';
import { post } from './support/wire.ts';
import { policyYaml } from './support/yaml.ts';

const TWO = [
  { name: 'primary', group: 0 },
  { name: 'fallback', group: 1 },
];

// The app names no model: the sidecar picks one.
const NO_MODEL = undefined as unknown as string;

/**
 * `after`: what the failure teaches the health view about the primary. Unreachable and
 * credential failures mark it down at once, a 429 cools it, a transient failure counts in its
 * breaker's window (one failure does not flap a model), too long a prompt says nothing.
 */
const FAILURES: { name: string; fault: Fault; after: 'unhealthy' | 'cooling' | 'breaker' | 'nothing' }[] = [
  { name: 'connection refused', fault: { kind: 'refuse' }, after: 'unhealthy' },
  { name: 'connection reset before headers', fault: { kind: 'reset' }, after: 'breaker' },
  { name: '500', fault: { kind: 'status', status: 500 }, after: 'breaker' },
  { name: '502', fault: { kind: 'status', status: 502 }, after: 'breaker' },
  { name: '503', fault: { kind: 'status', status: 503 }, after: 'breaker' },
  { name: '504', fault: { kind: 'status', status: 504 }, after: 'breaker' },
  { name: '408', fault: { kind: 'status', status: 408 }, after: 'breaker' },
  { name: '429', fault: { kind: 'status', status: 429, headers: { 'retry-after': '7' } }, after: 'cooling' },
  { name: '401', fault: { kind: 'status', status: 401 }, after: 'unhealthy' },
  { name: '403', fault: { kind: 'status', status: 403 }, after: 'unhealthy' },
  { name: '404', fault: { kind: 'status', status: 404 }, after: 'unhealthy' },
  {
    name: '400 context length exceeded',
    fault: {
      kind: 'status',
      status: 400,
      errorType: 'context_length_exceeded',
      message: "This model's maximum context length is 8192 tokens.",
    },
    after: 'nothing',
  },
  { name: 'invalid JSON body', fault: { kind: 'invalidJson' }, after: 'breaker' },
  { name: 'truncated JSON body', fault: { kind: 'truncatedJson' }, after: 'breaker' },
  { name: 'empty 200 body', fault: { kind: 'emptyBody' }, after: 'breaker' },
  { name: 'reset mid-body', fault: { kind: 'resetMidBody' }, after: 'breaker' },
];

t.test('every provider failure fails over to the next group and the app sees 200', async (t) => {
  for (const { name, fault, after } of FAILURES) {
    await t.test(name, async (t) => {
      // a sidecar per case: a clean health view and breaker window
      const h = await startHarness(TWO);
      t.teardown(() => h.close());
      const primary = h.sidecar.health.models()[0];
      h.sims.primary.setFault(fault);
      await h.sims.primary.ready();
      const { data, response } = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO }).withResponse();
      t.equal(response.status, 200);
      t.equal(data.choices[0].message.content, 'Hello from fallback');
      t.equal(response.headers.get('x-llm-failover-provider'), 'fallback');
      t.equal(response.headers.get('x-llm-failover-group'), '2');
      t.equal(response.headers.get('x-llm-failover-attempts'), '2');
      t.equal(h.sims.fallback.requests.length, 1, 'the fallback served it once');
      if (fault.kind !== 'refuse') t.equal(h.sims.primary.requests.length, 1, 'the primary was tried first');
      const state = h.sidecar.health.state(primary);
      const breakerFailures = h.sidecar.monitor.breakers.stats(primary)?.failures ?? 0;
      if (after === 'unhealthy' || after === 'cooling') t.equal(state, after, `the primary is ${after}`);
      else t.equal(state, 'healthy', 'one failure alone does not take the model out');
      t.equal(
        breakerFailures,
        after === 'breaker' ? 1 : 0,
        after === 'breaker' ? 'counted in the breaker window' : 'not a breaker failure',
      );
    });
  }
});

t.test('a model that failed is skipped while it cools down; a 429 Retry-After sets how long', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  h.sims.primary.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '30' } }, { times: 1 });
  const first = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO }).withResponse();
  t.equal(first.response.headers.get('x-llm-failover-provider'), 'fallback');
  const primary = h.sidecar.health.models()[0];
  const health = h.sidecar.health.get(primary);
  t.equal(health.state, 'cooling');
  t.ok(health.until! - Date.now() > 25_000 && health.until! - Date.now() <= 30_000, 'cools for the Retry-After of 30 s');
  for (let i = 0; i < 3; i++) {
    const next = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO }).withResponse();
    t.equal(next.response.headers.get('x-llm-failover-attempts'), '1', 'the cooling primary is not tried again');
  }
  t.equal(h.sims.primary.requests.length, 1);
});

t.test("a 400 that is the request's own fault goes back to the client unchanged, not retried", async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  h.sims.primary.setFault({ kind: 'status', status: 400, errorType: 'invalid_request_error', message: "Invalid value for 'temperature'" });
  const res = await post(`${h.sidecar.url}/model`, { messages: HELLO, temperature: 9 });
  t.equal(res.status, 400);
  t.equal(res.json.error?.type, 'invalid_request_error');
  t.match(res.json.error?.message, /temperature/);
  t.equal(h.sims.fallback.requests.length, 0, 'not retried on the fallback');
  const primary = h.sidecar.health.models()[0];
  t.equal(h.sidecar.health.state(primary), 'healthy', 'a client error says nothing of the model');
  t.equal(h.sidecar.health.get(primary).failures, 0, 'no failure is recorded against it');
  t.same(
    h.sidecar.monitor.breakers.stats(primary),
    { state: 'closed', fires: 0, failures: 0, successes: 0 },
    'and its breaker counted nothing, neither a failure nor a success',
  );
});

t.test('round robin inside a group is even', async (t) => {
  const h = await startHarness([
    { name: 'a', group: 0 },
    { name: 'b', group: 0 },
    { name: 'c', group: 0 },
    { name: 'spare', group: 1 },
  ]);
  t.teardown(() => h.close());
  for (let i = 0; i < 30; i++) await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO });
  t.same(
    ['a', 'b', 'c', 'spare'].map((n) => h.sims[n].requests.length),
    [10, 10, 10, 0],
  );
});

t.test('a failing model in a group is tried until its breaker opens, then the rest of its group carries the traffic', async (t) => {
  const h = await startHarness([
    { name: 'a', group: 0 },
    { name: 'b', group: 0 },
    { name: 'c', group: 0 },
    { name: 'spare', group: 1 },
  ]);
  t.teardown(() => h.close());
  h.sims.b.setFault({ kind: 'status', status: 503 });
  const failed: number[] = [];
  for (let i = 0; i < 21; i++) {
    const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
    if (res.status !== 200) failed.push(res.status);
  }
  t.same(failed, [], 'every request succeeded');
  t.equal(h.sims.b.requests.length, 3, 'b is tried until its breaker opens (3 of 3 failed in the window), then skipped');
  t.equal(h.sidecar.health.state(h.sidecar.health.models()[1]), 'open');
  t.equal(h.sims.a.requests.length + h.sims.c.requests.length, 21, 'the rest of its group carries the traffic');
  t.ok(Math.abs(h.sims.a.requests.length - h.sims.c.requests.length) <= 1, 'evenly');
  t.equal(h.sims.spare.requests.length, 0, 'the next group is not needed');
});

t.test('the upstream request names the chosen model and carries the provider key; a client model is replaced', async (t) => {
  const h = await startHarness([{ name: 'primary', model: 'gpt-4o', group: 0 }]);
  t.teardown(() => h.close());
  await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO });
  await h.client.chat.completions.create({ model: 'gpt-3.5-turbo', messages: HELLO, temperature: 0.5 });
  const [first, second] = h.sims.primary.requests;
  t.equal(first.body.model, 'gpt-4o');
  t.same(first.body.messages, HELLO);
  t.equal(second.body.model, 'gpt-4o', 'the client-supplied model is replaced');
  t.equal(second.body.temperature, 0.5, 'everything else passes through');
  t.match(String(first.headers.authorization), /^Bearer sk-test-planted/);
});

t.test('when every model fails: 503 in the OpenAI shape, each attempt named, Retry-After from the earliest cooldown', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  h.sims.primary.setFault({ kind: 'status', status: 503 });
  h.sims.fallback.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '20' } });
  const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
  t.equal(res.status, 503);
  t.equal(res.json.error?.type, 'service_unavailable');
  t.equal(res.json.error?.code, 'all_models_failed');
  t.match(res.json.error?.message, /primary: upstream 503.*fallback: upstream 429/);
  t.notMatch(res.json.error?.message, /sk-test-planted/, 'no key in the error');
  t.same(
    ((res.json.error?.attempts ?? []) as { provider: string; reason: string; status: number }[]).map((a) => [
      a.provider,
      a.reason,
      a.status,
    ]),
    [
      ['primary', 'upstream_5xx', 503],
      ['fallback', 'rate_limited', 429],
    ],
  );
  const retryAfter = Number(res.headers.get('retry-after'));
  t.ok(retryAfter >= 19 && retryAfter <= 20, `Retry-After ${retryAfter} is the fallback's cooldown, the only one known`);
});

t.test('when every model is down, they are tried anyway in priority order before giving up', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  h.sims.primary.setFault({ kind: 'refuse' });
  h.sims.fallback.setFault({ kind: 'status', status: 401 });
  t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).status, 503);
  t.same(
    h.sidecar.health.models().map((m) => h.sidecar.health.state(m)),
    ['unhealthy', 'unhealthy'],
  );
  h.sims.primary.clearFault();
  h.sims.fallback.clearFault();
  await h.sims.primary.ready();
  // both marked down, both recovered upstream: the next request still gets through
  const res = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO }).withResponse();
  t.equal(res.response.headers.get('x-llm-failover-provider'), 'primary', 'the highest priority first');
  t.equal(h.sidecar.health.state(h.sidecar.health.models()[0]), 'healthy', 'and a success heals it');
});

t.test('the attempt budget bounds a request', async (t) => {
  const h = await startHarness(
    [
      { name: 'a', group: 0 },
      { name: 'b', group: 1 },
      { name: 'c', group: 2 },
    ],
    { policy: '  maxAttempts: 2' },
  );
  t.teardown(() => h.close());
  h.sims.a.setFault({ kind: 'status', status: 500 });
  h.sims.b.setFault({ kind: 'status', status: 500 });
  const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
  t.equal(res.status, 503);
  t.match(res.json.error?.message, /attempt budget \(2\)/);
  t.equal(h.sims.c.requests.length, 0);
});

t.test('a hang fails over after the response timeout', async (t) => {
  const h = await startHarness(TWO, { policy: '  timeouts:\n    response: 300ms' });
  t.teardown(() => h.close());
  h.sims.primary.setFault({ kind: 'hang' });
  const res = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO }).withResponse();
  t.equal(res.data.choices[0].message.content, 'Hello from fallback');
  const line = h.logs.find((l) => l.includes('"event":"request"'));
  t.match(line, /"outcome":"response_timeout"/);
});

t.test('DNS and TLS failures fail over', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  // re-point the primary at a name that does not resolve, then at a plain-HTTP port spoken to in TLS
  const { loadPlan } = await import('../sidecar/config/load.ts');
  const { startSidecar } = await import('../sidecar/runtime/main.ts');
  const { createLogger } = await import('../sidecar/observe/log.ts');
  const { backendYaml, LOOPBACK_SERVER } = await import('./support/yaml.ts');
  const base = backendYaml(TWO, { primary: h.sims.primary.port, fallback: h.sims.fallback.port });
  const cases = [
    { name: 'dns', yaml: base.replace('host: 127.0.0.1', 'host: no-such-host.invalid'), reason: 'dns' },
    { name: 'tls', yaml: base + policyYaml(`  providers:\n    primary:\n      tls: true`), reason: 'tls' },
  ];
  for (const c of cases) {
    const plan = loadPlan([{ name: 't.yaml', text: c.yaml + LOOPBACK_SERVER }]);
    const sidecar = await startSidecar({ plan, logger: createLogger('silent') });
    const reasons: string[] = [];
    sidecar.events.on('switch', (e) => reasons.push(e.reason));
    const res = await post(`${sidecar.url}/model`, { messages: HELLO });
    t.equal(res.status, 200, `${c.name}: served`);
    t.equal(res.headers.get('x-llm-failover-provider'), 'fallback');
    t.same(reasons, [c.reason], `${c.name}: switch reason`);
    await sidecar.close();
  }
});
