/**
 * Provider faults that used to be misread (issue 13): a redirect from a provider's API, every
 * model waiting out a stated Retry-After, and model names that cannot go into a header as
 * they are.
 */
import OpenAI from 'openai';
import t from 'tap';
import { HELLO, startHarness } from './support/harness.ts';
import { eventually } from './support/wait.ts';
import { metric, post } from './support/wire.ts';

const TWO = [
  { name: 'primary', group: 0 },
  { name: 'fallback', group: 1 },
];

t.test("a 3xx from a provider is the provider's fault: the request fails over and the model is charged", async (t) => {
  const h = await startHarness(TWO, { policy: '  health:\n    breaker: {consecutiveFailures: 2, volumeThreshold: 20}\n' });
  t.teardown(() => h.close());
  h.sims.primary.setFault({ kind: 'status', status: 302, message: 'Found' });
  const reasons: string[] = [];
  h.sidecar.events.on('switch', (e) => reasons.push(e.reason));
  for (const stream of [false, true]) {
    const res = await post(`${h.sidecar.url}/model`, { messages: HELLO, stream });
    t.equal(res.status, 200, `stream ${stream}: the client gets the fallback's answer`);
    t.equal(res.headers.get('x-llm-failover-provider'), 'fallback');
  }
  t.same(reasons, ['upstream_redirect', 'upstream_redirect'], 'each switch names the redirect');
  const primary = h.sidecar.health.models()[0];
  t.equal(h.sidecar.health.state(primary), 'open', "two redirects in a row opened the primary's breaker");
  const metrics = await (await fetch(`${h.sidecar.adminUrl}/metrics`)).text();
  t.equal(
    metric(metrics, 'llm_failover_upstream_attempts_total', { provider: 'primary', outcome: 'upstream_redirect', status_class: '3xx' }),
    2,
    'counted against the primary',
  );
});

t.test(
  "while every model waits out its provider's Retry-After, no request reaches a provider; the app gets a 429 with the earliest recovery",
  async (t) => {
    const h = await startHarness(TWO);
    t.teardown(() => h.close());
    h.sims.primary.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '30' } });
    h.sims.fallback.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '20' } });
    const first = await post(`${h.sidecar.url}/model`, { messages: HELLO });
    t.equal(first.status, 429, 'both models answered 429: the app is told it is rate-limited');
    t.equal(first.json.error?.code, 'all_models_rate_limited');
    const firstWait = Number(first.headers.get('retry-after'));
    t.ok(firstWait >= 19 && firstWait <= 20, `Retry-After is the earliest recovery (the fallback's 20 s), got ${firstWait}`);
    t.equal(h.sims.primary.requests.length + h.sims.fallback.requests.length, 2, 'one call each so far');

    const client = new OpenAI({ baseURL: `${h.sidecar.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0
          ? post(`${h.sidecar.url}/model`, { messages: HELLO, stream: i % 4 === 0 })
          : client.chat.completions.create({ model: '', messages: HELLO }).then(
              () => ({ status: 200, headers: new Headers() }),
              (e: { status?: number; headers?: Headers }) => ({ status: e.status ?? 0, headers: e.headers ?? new Headers() }),
            ),
      ),
    );
    for (const r of results) {
      t.equal(r.status, 429, 'a 429, as the OpenAI SDK raises it (RateLimitError)');
      const wait = Number(r.headers.get('retry-after'));
      t.ok(wait >= 1 && wait <= 20, `with Retry-After (${wait})`);
    }
    t.equal(
      h.sims.primary.requests.length + h.sims.fallback.requests.length,
      2,
      'not one call inside the stated waits, not even as a last resort',
    );
  },
);

/** A 429 that states no wait: OpenAI's own, its x-ratelimit-reset-* headers left out. */
const NO_STATED_WAIT = { 'x-ratelimit-reset-requests': null, 'x-ratelimit-reset-tokens': null };

t.test('a model cooling on a default cooldown (no stated wait) is still tried as a last resort', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  h.sims.primary.setFault({ kind: 'status', status: 429, headers: NO_STATED_WAIT });
  h.sims.fallback.setFault({ kind: 'status', status: 503 });
  t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).status, 503);
  h.sims.primary.clearFault();
  const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
  t.equal(res.status, 200, "the primary (cooling on the sidecar's own guess) answered as a last resort");
  t.equal(res.headers.get('x-llm-failover-provider'), 'primary');
});

t.test('the 503 after every model refused its connection carries Retry-After (probes on: no timed state to read it from)', async (t) => {
  const h = await startHarness(TWO, { probes: true, policy: '  health:\n    probe: {interval: 1m, idleInterval: 1m}\n' });
  t.teardown(() => h.close());
  for (const s of Object.values(h.sims)) s.setFault({ kind: 'refuse' });
  await Promise.all(Object.values(h.sims).map((s) => s.ready()));
  for (const stream of [false, true]) {
    const res = await post(`${h.sidecar.url}/model`, { messages: HELLO, stream });
    t.equal(res.status, 503);
    t.equal(res.json.error?.code, 'all_models_failed');
    t.ok(Number(res.headers.get('retry-after')) >= 1, `stream ${stream}: Retry-After ${res.headers.get('retry-after')}`);
  }
});

t.test('a model name that is not visible ASCII is sent in JSON as it is and percent-encoded in the header', async (t) => {
  const name = 'qwen-通义千问';
  const h = await startHarness([{ name: 'primary', model: name, group: 0 }]);
  t.teardown(() => h.close());
  for (const stream of [false, true]) {
    const res = await post(`${h.sidecar.url}/model`, { messages: HELLO, stream });
    t.equal(res.status, 200, `stream ${stream}: served`);
    t.match(res.headers.get('content-type'), stream ? /text\/event-stream/ : /application\/json/, 'with its content type');
    t.equal(res.headers.get('x-llm-failover-model'), encodeURIComponent(name), 'the header is percent-encoded');
    t.equal(decodeURIComponent(res.headers.get('x-llm-failover-model') ?? ''), name);
    if (!stream) t.equal((res.json as { model?: string }).model, name, 'the answer names the model as it is');
    else t.match(res.text, /data: \[DONE\]/, 'the stream is whole');
  }
  t.equal(h.sims.primary.requests[0].body.model, name, 'the provider got the name as it is, in JSON');
});

t.test("a client model with CR/LF (passed through to a provider entry without a model) cannot break the answer's headers", async (t) => {
  const h = await startHarness([{ name: 'primary', group: 0 }], { mapYaml: (y) => y.replace(/\n\s+model: "primary"/, '') });
  t.teardown(() => h.close());
  const model = 'evil\r\nx-injected: 1';
  for (const stream of [false, true]) {
    const res = await post(`${h.sidecar.url}/model`, { model, messages: HELLO, stream });
    t.equal(res.status, 200, `stream ${stream}: served`);
    t.equal(res.headers.get('x-injected'), null, 'no header injected');
    t.equal(res.headers.get('x-llm-failover-model'), encodeURIComponent(model));
  }
  t.equal(h.sims.primary.requests[0].body.model, model, "the provider got the client's model as it is");
});

t.test("OpenAI's insufficient_quota 429 is no short cooldown: the key has no credit left, like a 402", async (t) => {
  // the simulator's real shape: type and code insufficient_quota, OpenAI's message; once as it
  // comes, once with a retry-after a proxy might add, which no more ends it
  for (const headers of [undefined, { 'retry-after': '1' }]) {
    await t.test(headers ? 'with a retry-after: 1' : 'as OpenAI sends it', async (t) => {
      const h = await startHarness(TWO, { policy: '  cooldown:\n    afterFailure: 2s\n    afterAuthFailure: 10m\n' });
      t.teardown(() => h.close());
      h.sims.primary.setFault({ kind: 'status', status: 429, errorType: 'insufficient_quota', headers });
      const reasons: string[] = [];
      h.sidecar.events.on('switch', (e) => reasons.push(e.reason));
      for (const stream of [false, true]) {
        const res = await post(`${h.sidecar.url}/model`, { messages: HELLO, stream });
        t.equal(res.status, 200, `stream ${stream}: the request failed over`);
        t.equal(res.headers.get('x-llm-failover-provider'), 'fallback');
      }
      t.same(
        reasons,
        ['quota_exhausted'],
        'understood as quota_exhausted, not rate_limited; the second request did not try the primary first',
      );
      t.equal(h.sims.primary.requests.length, 1, 'one call on the empty key');
      const health = h.sidecar.health.get(h.sidecar.health.models()[0]);
      t.equal(health.state, 'unhealthy', 'out of the rotation, not cooling');
      t.ok(
        (health.until ?? 0) - Date.now() > 5 * 60_000,
        'for the auth/quota cooldown (probes off), not the short afterFailure nor the retry-after',
      );
      const metrics = await (await fetch(`${h.sidecar.adminUrl}/metrics`)).text();
      t.equal(
        metric(metrics, 'llm_failover_upstream_attempts_total', { provider: 'primary', outcome: 'quota_exhausted' }),
        1,
        'counted as quota_exhausted',
      );
    });
  }
});

t.test(
  "OpenAI's rate-limit 429 as it comes (x-ratelimit-reset-requests 120ms, no retry-after): the model cools for the stated 120 ms, not the guessed afterFailure",
  async (t) => {
    const h = await startHarness(TWO, { policy: '  cooldown:\n    afterFailure: 30s\n' });
    t.teardown(() => h.close());
    const cooled: { until?: number; at: number }[] = [];
    h.sidecar.events.on('health', (e) => {
      if (e.model.name === 'primary' && e.to === 'cooling') cooled.push(e);
    });
    h.sims.primary.setFault({ kind: 'status', status: 429 }, { times: 1 });
    const first = await post(`${h.sidecar.url}/model`, { messages: HELLO });
    t.equal(first.status, 200);
    t.equal(first.headers.get('x-llm-failover-provider'), 'fallback', 'failed over');
    t.equal(cooled.length, 1, 'the primary cooled');
    const wait = (cooled[0]?.until ?? 0) - (cooled[0]?.at ?? 0);
    t.ok(wait > 0 && wait <= 120, `for the provider's longest stated reset (120 ms), got ${wait} ms`);
    // once the stated wait is over the primary serves again, long before the 30 s afterFailure
    t.ok(await eventually(() => h.sidecar.health.state(h.sidecar.health.models()[0]) === 'healthy', 3000), 'healthy again by itself');
    const next = await post(`${h.sidecar.url}/model`, { messages: HELLO });
    t.equal(next.headers.get('x-llm-failover-provider'), 'primary', 'and serves the next request');
  },
);
