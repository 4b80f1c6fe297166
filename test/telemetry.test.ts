/**
 * Every switch is visible: the span tree of a failed-over request, health transitions as their
 * own traces linked to their cause, Prometheus metrics, and nothing sensitive anywhere.
 */
import t from 'tap';
import { tracing } from './support/tracing.ts';
import { waitForHealth } from './support/wait.ts';
import { HELLO, startHarness } from './support/harness.ts';
import { post } from './support/wire.ts';
import { TEST_KEY } from './support/yaml.ts';

const CLIENT_TRACE = '0af7651916cd43dd8448eb211c80319c';
const CLIENT_SPAN = 'b7ad6b7169203331';
const SPAN_KIND = { INTERNAL: 0, SERVER: 1, CLIENT: 2 };
const STATUS = { UNSET: 0, OK: 1, ERROR: 2 };

const THREE = [
  { name: 'first', group: 0 },
  { name: 'second', group: 1 },
  { name: 'third', group: 2 },
];

t.test('a request that failed over twice reads as a story: one SERVER span, three CLIENT attempts, two switch events', async (t) => {
  const { finished, tracerProvider } = tracing();
  const h = await startHarness(THREE, { tracerProvider });
  t.teardown(() => h.close());
  h.sims.first.setFault({ kind: 'status', status: 503 });
  h.sims.second.setFault({ kind: 'refuse' });
  const res = await post(
    `${h.sidecar.url}/model`,
    { messages: HELLO, stream_options: undefined },
    { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01` },
  );
  t.equal(res.status, 200);

  const spans = await finished();
  const server = spans.find((s) => s.kind === SPAN_KIND.SERVER)!;
  t.ok(server, 'a SERVER span');
  t.equal(server.name, 'POST /model');
  t.equal(server.spanContext().traceId, CLIENT_TRACE, "it continues the app's trace");
  t.equal(server.parentSpanContext?.spanId, CLIENT_SPAN, "its parent is the app's span");
  t.same(
    [
      server.attributes['http.response.status_code'],
      server.attributes['llm_failover.attempts'],
      server.attributes['llm_failover.served_by'],
      server.attributes['llm_failover.outcome'],
    ],
    [200, 3, 'third', 'ok'],
  );
  t.same(
    server.events.map((e) => [
      e.name,
      e.attributes?.['llm_failover.switch.from'],
      e.attributes?.['llm_failover.switch.to'],
      e.attributes?.['llm_failover.switch.reason'],
    ]),
    [
      ['llm_failover.switch', 'first', 'second', 'upstream_5xx'],
      ['llm_failover.switch', 'second', 'third', 'connect_refused'],
    ],
  );

  const attempts = spans
    .filter((s) => s.kind === SPAN_KIND.CLIENT && s.spanContext().traceId === CLIENT_TRACE)
    .sort((a, b) => Number(a.attributes['llm_failover.attempt']) - Number(b.attributes['llm_failover.attempt']));
  t.same(
    attempts.map((s) => s.name),
    ['chat first', 'chat second', 'chat third'],
  );
  for (const [i, s] of attempts.entries()) {
    t.equal(s.parentSpanContext?.spanId, server.spanContext().spanId, `attempt ${i + 1} is a child of the request`);
    t.equal(s.attributes['gen_ai.operation.name'], 'chat');
    t.equal(s.attributes['gen_ai.provider.name'], 'openai');
    t.equal(s.attributes['server.address'], '127.0.0.1');
    t.equal(s.attributes['llm_failover.priority_group'], i + 1);
    t.equal(s.attributes['llm_failover.health_state'], 'healthy');
  }
  t.same(
    attempts.map((s) => [s.attributes['error.type'], s.status.code]),
    [
      ['upstream_5xx', STATUS.ERROR],
      ['connect_refused', STATUS.ERROR],
      [undefined, STATUS.UNSET],
    ],
  );
  const served = attempts[2];
  t.equal(served.attributes['gen_ai.request.model'], 'third');
  t.equal(served.attributes['gen_ai.response.model'], 'third');
  t.type(served.attributes['gen_ai.usage.input_tokens'], 'number');
  t.type(served.attributes['gen_ai.usage.output_tokens'], 'number');
  t.equal(attempts[0].attributes['http.response.status_code'], 503);
});

t.test('streams record the time to first chunk', async (t) => {
  const { finished, tracerProvider } = tracing();
  const h = await startHarness([{ name: 'only', group: 0 }], { tracerProvider });
  t.teardown(() => h.close());
  const stream = await h.client.chat.completions.create({
    model: undefined as unknown as string,
    messages: HELLO,
    stream: true,
    stream_options: { include_usage: true },
  });
  for await (const _ of stream);
  const attempt = (await finished()).find((s) => s.kind === SPAN_KIND.CLIENT)!;
  t.type(attempt.attributes['gen_ai.response.time_to_first_chunk'], 'number');
  t.equal(attempt.attributes['gen_ai.request.stream'], true);
  t.type(attempt.attributes['gen_ai.usage.output_tokens'], 'number', 'usage from the stream');
});

t.test('a health transition is its own trace, linked to the attempt or probe that caused it', async (t) => {
  const { finished, tracerProvider } = tracing();
  const h = await startHarness(THREE.slice(0, 2), {
    policy: '  health:\n    probe:\n      interval: 100ms\n      timeout: 300ms\n      jitterPercent: 0\n',
    tracerProvider,
    probes: true,
  });
  t.teardown(() => h.close());
  // caused by a user request: a refused connection marks the model down at once
  h.sims.first.setFault({ kind: 'refuse' });
  await post(`${h.sidecar.url}/model`, { messages: HELLO });
  let spans = await finished();
  const down = spans.find((s) => s.name === 'llm_failover.health first unhealthy')!;
  t.ok(down, 'a health span');
  t.equal(down.parentSpanContext, undefined, 'a trace of its own');
  t.equal(down.attributes['llm_failover.health.from'], 'healthy');
  t.equal(down.attributes['llm_failover.health.to'], 'unhealthy');
  t.match(down.attributes['llm_failover.health.cause'], /connect_refused/);
  t.equal(down.status.code, STATUS.ERROR);
  const attempt = spans.find((s) => s.name === 'chat first')!;
  t.equal(down.links.length, 1);
  t.equal(down.links[0].context.spanId, attempt.spanContext().spanId, 'linked to the attempt that found it');

  // caused by a probe: recovery is proven by chat probes
  h.sims.first.clearFault();
  const up = await waitForHealth(h.sidecar, 'first', 'healthy');
  t.equal(up.origin?.kind, 'probe');
  spans = await finished();
  const healed = spans.find((s) => s.name === 'llm_failover.health first healthy')!;
  const probe = spans.find((s) => s.name === 'llm_failover.probe first' && s.spanContext().spanId === healed.links[0]?.context.spanId);
  t.ok(probe, 'linked to the probe span that proved recovery');
  t.equal(probe?.attributes['llm_failover.probe.kind'], 'chat');
  t.equal(healed.status.code, STATUS.UNSET);
});

t.test('nothing sensitive in any span, metric, log line, /status or error: keys, client tokens and prompts', async (t) => {
  const { finished, tracerProvider } = tracing();
  const h = await startHarness(THREE, { tracerProvider });
  t.teardown(() => h.close());
  const PROMPT = 'PROMPT-SENTINEL-4f9c2d';
  const CLIENT_TOKEN = 'sk-client-token-SENTINEL-77aa';
  const messages = [{ role: 'user', content: PROMPT }];
  const faults = [
    { kind: 'status' as const, status: 401, message: `Incorrect API key provided: ${TEST_KEY}.` },
    { kind: 'status' as const, status: 400, message: `Bad request with ${TEST_KEY} in it` },
    { kind: 'status' as const, status: 500 },
    { kind: 'refuse' as const },
    { kind: 'errorEventAfterFirstToken' as const },
    { kind: 'invalidJson' as const },
  ];
  const bodies: string[] = [];
  for (const fault of faults) {
    for (const stream of [false, true]) {
      for (const s of Object.values(h.sims)) s.setFault(fault);
      for (const m of h.sidecar.health.models()) h.sidecar.health.set(m, 'healthy', 'test reset');
      const res = await post(`${h.sidecar.url}/model`, { messages, stream }, { authorization: `Bearer ${CLIENT_TOKEN}` });
      bodies.push(res.text);
      for (const s of Object.values(h.sims)) s.clearFault();
    }
  }
  await post(`${h.sidecar.url}/model`, { messages }, { authorization: `Bearer ${CLIENT_TOKEN}` });
  const spans = JSON.stringify(
    (await finished()).map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, links: s.links, status: s.status })),
  );
  const metrics = await (await fetch(`${h.sidecar.adminUrl}/metrics`)).text();
  const status = await (await fetch(`${h.sidecar.adminUrl}/status`)).text();
  const everything = { spans, metrics, status, logs: h.logs.join(''), responses: bodies.join('\n') };
  t.ok(spans.length > 1000 && h.logs.length > 10 && metrics.includes('llm_failover_switches_total'), 'there is output to search');
  t.match(everything.responses, /all_models_failed|stream_interrupted/, 'the failure paths ran');
  for (const [where, text] of Object.entries(everything)) {
    t.notOk(text.includes(TEST_KEY), `no provider key in ${where}`);
    t.notOk(text.includes(TEST_KEY.slice(-8)), `not even the end of it in ${where}`);
    t.notOk(text.includes(CLIENT_TOKEN), `no client token in ${where}`);
    if (where !== 'responses') t.notOk(text.includes(PROMPT), `no prompt in ${where}`);
  }
});

t.test('metrics: attempts, switches, model state, probes, durations, tokens', async (t) => {
  const h = await startHarness(THREE.slice(0, 2));
  t.teardown(() => h.close());
  h.sims.first.setFault({ kind: 'status', status: 503 });
  for (let i = 0; i < 3; i++) await post(`${h.sidecar.url}/model`, { messages: HELLO });
  const text = await (await fetch(`${h.sidecar.adminUrl}/metrics`)).text();
  const value = (re: RegExp) => Number(text.match(re)?.[1]);
  t.equal(value(/^llm_failover_switches_total\{backend="model-failover",from="first",to="second",reason="upstream_5xx"\} (\d+)$/m), 3);
  t.equal(
    value(
      /^llm_failover_upstream_attempts_total\{backend="model-failover",provider="first",model="first",group="1",outcome="upstream_5xx",status_class="5xx"\} (\d+)$/m,
    ),
    3,
  );
  t.equal(
    value(
      /^llm_failover_upstream_attempts_total\{backend="model-failover",provider="second",model="second",group="2",outcome="success",status_class="2xx"\} (\d+)$/m,
    ),
    3,
  );
  t.equal(
    value(/^llm_failover_model_state\{backend="model-failover",provider="first",model="first",group="1",state="open"\} (\d+)$/m),
    1,
    'the breaker opened',
  );
  t.equal(
    value(/^llm_failover_model_state\{backend="model-failover",provider="first",model="first",group="1",state="healthy"\} (\d+)$/m),
    0,
  );
  t.equal(
    value(/^llm_failover_requests_total\{route="\/model",backend="model-failover",stream="false",outcome="ok",status_code="200"\} (\d+)$/m),
    3,
  );
  t.equal(
    value(/^llm_failover_request_duration_seconds_count\{route="\/model",backend="model-failover",stream="false",outcome="ok"\} (\d+)$/m),
    3,
  );
  t.ok(
    value(
      /^llm_failover_token_usage_count\{backend="model-failover",provider="second",model="second",group="2",token_type="output"\} (\d+)$/m,
    ) === 3,
    'token usage per answer',
  );
  t.equal(value(/^llm_failover_breaker_state\{backend="model-failover",provider="first",state="open"\} (\d+)$/m), 1);
  t.match(text, /^llm_failover_requests_in_flight 0$/m);
  t.match(text, /^process_resident_memory_bytes \d+/m, 'process metrics too');
});
