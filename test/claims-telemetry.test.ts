/**
 * Claims of docs/observability.md that no other suite checks (issue 22):
 * - `llm_failover_probes_total` and `llm_failover_probe_duration_seconds` after probes, by kind
 *   and result;
 * - `llm_failover_rejected_requests_total` for a 413, a 431, a 408 (slow headers) and an
 *   overload 503 (`sidecar_overloaded`);
 * - attempt spans: `llm_failover.outcome` for each non-ok outcome (with an error status), and
 *   `llm_failover.last_resort` when models marked down are tried anyway.
 */
import t from 'tap';
import { tracing } from './support/tracing.ts';
import { type Harness, HELLO, startHarness } from './support/harness.ts';
import { eventually, sleep, within } from './support/wait.ts';
import { metric, parseRawResponse, post, rawConnect, rawExchange } from './support/wire.ts';

const TWO = [
  { name: 'primary', group: 0 },
  { name: 'fallback', group: 1 },
];
const SPAN_KIND_CLIENT = 2;
const STATUS_ERROR = 2;

const metricsOf = async (h: Harness) => (await fetch(`${h.sidecar.adminUrl}/metrics`)).text();
const portOf = (h: Harness) => Number(new URL(h.sidecar.url).port);

t.test('probe metrics: llm_failover_probes_total by kind, trigger and result; llm_failover_probe_duration_seconds per probe', async (t) => {
  const h = await startHarness(TWO, {
    probes: true,
    // the primary on model-list probes (the operator's choice), the fallback on auto: both kinds get counted
    policy:
      '  health:\n    probe:\n      interval: 50ms\n      idleInterval: 50ms\n      timeout: 500ms\n      jitterPercent: 0\n  providers:\n    primary:\n      health:\n        probe:\n          kind: models\n',
  });
  t.teardown(() => h.close());
  // the fallback's probes fail: two failures take it out, then chat probes on it go on failing
  h.sims.fallback.setFault({ kind: 'status', status: 503 });
  const fallback = h.sidecar.health.models()[1];
  t.ok(await eventually(() => h.sidecar.health.state(fallback) === 'unhealthy', 5000), 'the failing probes took the fallback out');
  t.ok(
    await eventually(() => h.sidecar.probes.log.some((p) => p.model === 'fallback' && p.kind === 'chat'), 3000),
    'and it is chat-probed since',
  );
  t.ok(
    await eventually(() => h.sidecar.probes.log.filter((p) => p.model === 'primary' && p.kind === 'models' && p.ok).length >= 2, 3000),
    'the primary passed model-list probes meanwhile',
  );
  h.sidecar.probes.stop();
  await sleep(50);
  const text = await metricsOf(h);
  const probes = (labels: Record<string, string>) =>
    metric(text, 'llm_failover_probes_total', { backend: 'model-failover', ...labels }) ?? 0;
  const count = (labels: Record<string, string>) =>
    metric(text, 'llm_failover_probe_duration_seconds_count', { backend: 'model-failover', ...labels }) ?? 0;
  const log = h.sidecar.probes.log;
  const primaryOk = log.filter((p) => p.model === 'primary' && p.kind === 'models' && p.ok).length;
  t.ok(primaryOk >= 2, 'the primary was probed by model list');
  t.equal(
    probes({ provider: 'primary', kind: 'models', trigger: 'schedule', result: 'success' }),
    primaryOk,
    'every successful model-list probe of the primary is counted',
  );
  t.equal(
    probes({ provider: 'fallback', kind: 'models', trigger: 'schedule', result: 'upstream_5xx' }),
    log.filter((p) => p.model === 'fallback' && p.kind === 'models').length,
    "the fallback's failed model-list probes, by failure reason",
  );
  t.equal(
    probes({ provider: 'fallback', kind: 'chat', result: 'upstream_5xx' }),
    log.filter((p) => p.model === 'fallback' && p.kind === 'chat').length,
    'and its chat probes',
  );
  for (const [provider, kind] of [
    ['primary', 'models'],
    ['fallback', 'models'],
    ['fallback', 'chat'],
  ]) {
    t.equal(count({ provider, kind }), probes({ provider, kind }), `${provider} ${kind}: one duration observed per probe`);
  }
  t.match(text, /^llm_failover_probe_duration_seconds_bucket\{[^}]*provider="primary"[^}]*\} \d+$/m, 'a histogram with buckets');
});

t.test('llm_failover_rejected_requests_total counts 413, 431, 408 and the overload 503, by status and code', async (t) => {
  const h = await startHarness(TWO, {
    server: '  maxBodyBytes: 4096\n  headersTimeout: 500ms\n  maxConcurrentRequests: 1\n  maxQueuedRequests: 0\n',
  });
  t.teardown(() => h.close());
  const port = portOf(h);

  const big = await post(`${h.sidecar.url}/model`, { messages: [{ role: 'user', content: 'x'.repeat(8000) }] });
  t.equal(big.status, 413, '413');

  const body = JSON.stringify({ messages: HELLO });
  const huge = parseRawResponse(
    await rawExchange(
      port,
      `POST /model HTTP/1.1\r\nhost: x\r\nx-big: ${'b'.repeat(40_000)}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
    ),
  );
  t.equal(huge.status, 431, '431');

  const slow = await rawConnect(port);
  const headers = `POST /model HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-padding: ${'p'.repeat(400)}\r\n\r\n`;
  for (let i = 0; i < headers.length && slow.received() === '' && !slow.isClosed(); i++) {
    slow.socket.write(headers[i]);
    await sleep(20);
  }
  await within(slow.closed, 2000);
  t.equal(parseRawResponse(slow.received()).status, 408, '408 for headers sent too slowly');
  slow.socket.destroy();

  h.sims.primary.setFault({ kind: 'hang' }, { times: 1 });
  const holder = new AbortController();
  const held = fetch(`${h.sidecar.url}/model`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal: holder.signal,
  }).catch(() => undefined);
  t.ok(await eventually(() => h.sims.primary.inFlight() === 1), 'one request holds the only slot');
  const shed = await post(`${h.sidecar.url}/model`, { messages: HELLO });
  t.same([shed.status, shed.json.error?.code], [503, 'sidecar_overloaded'], 'the next is shed');
  holder.abort();
  await held;

  const text = await metricsOf(h);
  for (const [status, code] of [
    ['413', 'request_too_large'],
    ['431', 'headers_too_large'],
    ['408', 'request_timeout'],
    ['503', 'sidecar_overloaded'],
  ]) {
    t.equal(
      metric(text, 'llm_failover_rejected_requests_total', { status_code: status, code }),
      1,
      `rejected ${status} ${code}: counted once`,
    );
  }
  t.equal(h.sims.fallback.requests.length, 0, 'none of them reached a provider');
});

t.test(
  'attempt spans carry llm_failover.outcome: the failure reason on failed attempts (error status), success on the one that served',
  async (t) => {
    const { finished, tracerProvider } = tracing();
    const models = [
      { name: 'm5xx', group: 0 },
      { name: 'mrefused', group: 1 },
      { name: 'mlimited', group: 2 },
      { name: 'mok', group: 3 },
    ];
    const h = await startHarness(models, { tracerProvider });
    t.teardown(() => h.close());
    h.sims.m5xx.setFault({ kind: 'status', status: 503 });
    h.sims.mrefused.setFault({ kind: 'refuse' });
    await h.sims.mrefused.ready();
    h.sims.mlimited.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '30' } });
    const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
    t.equal(res.status, 200);
    const attempts = (await finished())
      .filter((s) => s.kind === SPAN_KIND_CLIENT && s.name.startsWith('chat '))
      .sort((a, b) => Number(a.attributes['llm_failover.attempt']) - Number(b.attributes['llm_failover.attempt']));
    t.same(
      attempts.map((s) => [
        s.attributes['llm_failover.provider'],
        s.attributes['llm_failover.outcome'],
        s.status.code === STATUS_ERROR,
        s.attributes['llm_failover.last_resort'],
      ]),
      [
        ['m5xx', 'upstream_5xx', true, false],
        ['mrefused', 'connect_refused', true, false],
        ['mlimited', 'rate_limited', true, false],
        ['mok', 'success', false, false],
      ],
    );

    // a provider's own 400 (the request's fault): handed back, and its span says client_error
    h.sims.mok.setFault({ kind: 'status', status: 400, message: 'Invalid value for temperature' }, { times: 1 });
    for (const m of h.sidecar.health.models()) if (m.name !== 'mok') h.sidecar.health.set(m, 'unhealthy', 'test: out of the way');
    const bad = await post(`${h.sidecar.url}/model`, { messages: HELLO, temperature: 9 });
    t.equal(bad.status, 400);
    const last = (await finished()).filter((s) => s.kind === SPAN_KIND_CLIENT && s.name.startsWith('chat ')).at(-1)!;
    t.same(
      [last.attributes['llm_failover.provider'], last.attributes['llm_failover.outcome'], last.status.code],
      ['mok', 'client_error', STATUS_ERROR],
    );
  },
);

t.test('llm_failover.last_resort: true on attempts at models marked down that are tried anyway, false otherwise', async (t) => {
  const { finished, tracerProvider, reset } = tracing();
  const h = await startHarness(TWO, { tracerProvider });
  t.teardown(() => h.close());
  const [primary, fallback] = h.sidecar.health.models();
  const attemptSpans = async () =>
    (await finished())
      .filter((s) => s.kind === SPAN_KIND_CLIENT && s.name.startsWith('chat '))
      .sort((a, b) => Number(a.attributes['llm_failover.attempt']) - Number(b.attributes['llm_failover.attempt']))
      .map((s) => [
        s.attributes['llm_failover.provider'],
        s.attributes['llm_failover.health_state'],
        s.attributes['llm_failover.last_resort'],
        s.attributes['llm_failover.outcome'],
      ]);

  // only the primary is down: the fallback serves, no last resort
  h.sidecar.health.set(primary, 'unhealthy', 'test: marked down');
  t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).headers.get('x-llm-failover-provider'), 'fallback');
  t.same(await attemptSpans(), [['fallback', 'healthy', false, 'success']], 'a healthy model is no last resort');

  // both down: tried anyway in priority order, each attempt flagged
  reset();
  h.sidecar.health.set(fallback, 'unhealthy', 'test: marked down');
  h.sims.primary.setFault({ kind: 'status', status: 503 }, { times: 1 });
  const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
  t.equal(res.status, 200, 'an attempt beats a certain error');
  t.same(
    await attemptSpans(),
    [
      ['primary', 'unhealthy', true, 'upstream_5xx'],
      ['fallback', 'unhealthy', true, 'success'],
    ],
    'both attempts were last resorts',
  );
});
