/**
 * Honest answers: a stream or a body that proved nothing is no success; idle means no model
 * progress and the request's deadline always holds; compressed answers are decoded, not thrown
 * away; the client's body goes out byte for byte but for its model; and every OpenAI chunk is
 * read, whatever its spacing, so an error or a cut after the first token is never a success.
 */
import t from 'tap';
import { loadPlan } from '../sidecar/config/load.ts';
import type { AttemptEndEvent } from '../sidecar/observe/events.ts';
import { Pools } from '../sidecar/send/pools.ts';
import { startOpenAISimulator } from '../simulator/index.ts';
import { type Harness, HELLO, startHarness } from './support/harness.ts';
import { post, sseData, streamedContent } from './support/wire.ts';
import { backendYaml, type ModelSpec } from './support/yaml.ts';

const TWO: ModelSpec[] = [
  { name: 'primary', group: 0 },
  { name: 'fallback', group: 1 },
];
const NO_MODEL = undefined as unknown as string;

/** A streamed request with plain fetch: status, headers, the whole SSE text (bounded, so a hang fails the test instead of stalling it). */
async function streamRaw(h: Harness, body: Record<string, unknown> = {}, ms = 5000) {
  const res = await fetch(`${h.sidecar.url}/model`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: HELLO, stream: true, ...body }),
    signal: AbortSignal.timeout(ms),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Every attempt-end and switch of the harness, from now on. */
function record(h: Harness) {
  const attempts: AttemptEndEvent[] = [];
  const switches: string[] = [];
  h.sidecar.events.on('attempt-end', (e) => attempts.push(e));
  h.sidecar.events.on('switch', (e) => switches.push(e.reason));
  return { attempts, switches, outcomes: () => attempts.map((a) => `${a.model.name}:${a.outcome}`) };
}

const sse = (data: string) => `data: ${data}\n\n`;
const ROLE = sse(
  '{"id":"c1","object":"chat.completion.chunk","model":"primary","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
);
const TEXT = (s: string) =>
  sse(
    `{"id":"c1","object":"chat.completion.chunk","model":"primary","choices":[{"index":0,"delta":{"content":${JSON.stringify(s)}},"finish_reason":null}]}`,
  );
const FINISH = sse(
  '{"id":"c1","object":"chat.completion.chunk","model":"primary","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
);
const DONE = sse('[DONE]');

// ---- 1. a stream that proved nothing ----

t.test('a stream with no content and no finish reason is a failed attempt: it fails over before the commit point', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  const cases = [
    { name: 'events that are JSON but carry no choices, then [DONE]', body: [sse('{"foo":"bar"}'), sse('{"foo":"baz"}'), DONE] },
    { name: 'only [DONE]', body: [DONE] },
    { name: 'a role chunk, then [DONE]', body: [ROLE, DONE] },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      h.sidecar.health.set(h.sidecar.health.models()[0], 'healthy', 'test reset');
      const r = record(h);
      h.sims.primary.setFault({ kind: 'raw', body: c.body }, { times: 1 });
      const res = await streamRaw(h);
      t.equal(res.status, 200);
      t.equal(res.headers.get('x-llm-failover-provider'), 'fallback', 'served by the next model');
      t.equal(streamedContent(res.text), 'Hello from fallback');
      t.match(res.text, /data: \[DONE\]\n\n$/);
      t.same(r.switches, ['bad_response'], 'the failure is a bad_response');
      t.same(r.outcomes(), ['primary:bad_response', 'fallback:success']);
    });
  }
});

t.test('events without a choices array are not forwarded; the usage chunk (choices: []) is', async (t) => {
  const h = await startHarness([{ name: 'primary', group: 0 }]);
  t.teardown(() => h.close());
  const usage = sse(
    '{"id":"c1","object":"chat.completion.chunk","model":"primary","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}',
  );
  h.sims.primary.setFault({
    kind: 'raw',
    body: [ROLE, TEXT('Hel'), sse('{"foo":"bar"}'), TEXT('lo'), sse('{"object":"keepalive"}'), FINISH, usage, DONE],
  });
  const res = await streamRaw(h);
  t.equal(res.status, 200);
  t.notMatch(res.text, /foo|keepalive/, 'no event without choices reaches the client');
  t.ok(sseData(res.text).includes(usage.slice(6, -2)), 'the usage chunk is forwarded');
  // the official SDK reads chunk.choices[0]: it gets a clean stream
  const chunks = [];
  for await (const c of await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO, stream: true })) chunks.push(c);
  t.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'Hello');
  t.ok(
    chunks.every((c) => Array.isArray(c.choices)),
    'every chunk the app sees has choices',
  );
});

// ---- 2. a non-streamed answer that proved nothing ----

t.test('a non-streamed 200 with empty choices, or choices that are not messages, is a bad_response: fail over', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  for (const body of ['{"choices":[]}', '{"choices":[null]}', '{"choices":[{"index":0}]}', '{"choices":[{"index":0,"message":"hi"}]}']) {
    h.sidecar.health.set(h.sidecar.health.models()[0], 'healthy', 'test reset');
    const r = record(h);
    h.sims.primary.setFault({ kind: 'raw', body }, { times: 1 });
    const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
    t.equal(res.status, 200, body);
    t.equal(res.headers.get('x-llm-failover-provider'), 'fallback', `${body}: served by the next model`);
    t.same(r.switches, ['bad_response'], `${body}: bad_response`);
  }
});

// ---- 3. idle means no progress; the deadline always holds ----

t.test('after the first token, keep-alives are no progress: the stream ends with an error event after streamIdle', async (t) => {
  const cases = [
    { name: 'openai: SSE comments', kind: 'openai' as const, as: 'comment' as const },
    { name: 'openai: empty-delta chunks', kind: 'openai' as const, as: 'event' as const },
    { name: 'anthropic: ping events', kind: 'anthropic' as const, as: 'event' as const },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const h = await startHarness([{ name: 'primary', group: 0, kind: c.kind }], {
        policy: '  timeouts:\n    streamIdle: 300ms\n    request: 20s',
      });
      t.teardown(() => h.close());
      const r = record(h);
      h.sims.primary.setFault({ kind: 'keepAliveStall', afterChunks: 1, everyMs: 50, as: c.as });
      const res = await streamRaw(h, {}, 4000);
      t.equal(res.status, 200, 'the stream had started');
      t.match(streamedContent(res.text), /^Hello/, 'the content sent before the stall arrived');
      t.match(res.text, /"code":"stream_interrupted"/, 'an error event says it broke');
      t.notMatch(res.text, /\[DONE\]/);
      t.same(r.outcomes(), ['primary:stream_stalled']);
    });
  }
});

t.test('a thinking model streaming thinking deltas is not idle', async (t) => {
  // guard for the rule above: thinking is progress, though the client sees none of it
  const h = await startHarness(
    [
      {
        name: 'primary',
        group: 0,
        kind: 'anthropic',
        sim: {
          chunkDelayMs: 80,
          reply: () => ({ thinking: 'one two three four five six seven eight nine ten', content: 'Done thinking' }),
        },
      },
    ],
    { policy: '  timeouts:\n    streamIdle: 400ms\n    firstToken: 10s' },
  );
  t.teardown(() => h.close());
  const res = await streamRaw(h);
  t.equal(streamedContent(res.text), 'Done thinking');
  t.match(res.text, /data: \[DONE\]\n\n$/);
});

t.test('the request deadline holds after the commit point: a stream still making progress ends with the error event', async (t) => {
  const h = await startHarness(
    [{ name: 'primary', group: 0, sim: { chunkDelayMs: 50, reply: () => ({ content: 'word '.repeat(200) }) } }],
    { policy: '  timeouts:\n    streamIdle: 5s\n    request: 600ms' },
  );
  t.teardown(() => h.close());
  const r = record(h);
  const res = await streamRaw(h, {}, 5000);
  t.equal(res.status, 200);
  t.match(streamedContent(res.text), /^word /, 'the answer had started');
  t.match(res.text, /"code":"stream_interrupted"/);
  t.match(res.text, /deadline/, 'the error says the deadline ran out');
  t.notMatch(res.text, /\[DONE\]/);
  t.same(r.outcomes(), ['primary:deadline_exceeded'], 'not charged to the model as a stall or timeout');
  t.equal(h.sidecar.health.state(h.sidecar.health.models()[0]), 'healthy');
});

t.test('before the commit point, the deadline running out is a 504 that blames no model', async (t) => {
  const h = await startHarness(TWO, { policy: '  timeouts:\n    firstToken: 10s\n    response: 10s\n    request: 400ms' });
  t.teardown(() => h.close());
  for (const stream of [true, false]) {
    h.sims.primary.setFault({ kind: 'slowFirstToken', delayMs: 3000 }, { times: 1 });
    const res = await post(`${h.sidecar.url}/model`, { messages: HELLO, stream });
    t.equal(res.status, 504, `stream=${stream}`);
    t.equal(res.json.error?.code, 'request_deadline_exceeded');
    t.same(
      ((res.json.error?.attempts ?? []) as { reason: string }[]).map((a) => a.reason),
      ['deadline_exceeded'],
      `stream=${stream}: the attempt ran out of the request's time, not its own`,
    );
    t.equal(h.sims.fallback.requests.length, 0, 'no attempt started without time left');
  }
});

// ---- 4. compressed answers ----

t.test('every upstream request asks for identity; a server that compresses when allowed is then answered plainly', async (t) => {
  const h = await startHarness([
    { name: 'primary', group: 0, sim: { compress: { encoding: 'gzip' } } },
    { name: 'fallback', group: 1 },
  ]);
  t.teardown(() => h.close());
  for (const stream of [false, true]) {
    const res = await post(`${h.sidecar.url}/model`, { messages: HELLO, stream });
    t.equal(res.status, 200);
    t.equal(res.headers.get('x-llm-failover-provider'), 'primary', `stream=${stream}: the primary served`);
    t.equal(h.sims.primary.requests.at(-1)?.headers['accept-encoding'], 'identity');
  }
});

t.test('a gzip or br answer sent anyway is decoded, streamed and not, and counts as a success', async (t) => {
  for (const encoding of ['gzip', 'br', 'deflate'] as const) {
    await t.test(encoding, async (t) => {
      const h = await startHarness([
        { name: 'primary', group: 0, sim: { compress: { encoding, always: true } } },
        { name: 'fallback', group: 1 },
      ]);
      t.teardown(() => h.close());
      const r = record(h);
      const plain = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO });
      t.equal(plain.choices[0].message.content, 'Hello from primary', 'non-streamed');
      const res = await streamRaw(h, { stream_options: { include_usage: true } });
      t.equal(res.headers.get('x-llm-failover-provider'), 'primary');
      t.equal(streamedContent(res.text), 'Hello from primary', 'streamed');
      t.match(res.text, /data: \[DONE\]\n\n$/);
      t.same(r.outcomes(), ['primary:success', 'primary:success'], 'no failover, nothing charged to the model');
      t.ok(r.attempts[1].usage, "the stream's usage is read");
      // a compressed error body is read too: a client error is handed back legibly
      h.sims.primary.setFault({ kind: 'status', status: 400, message: 'Invalid value for temperature.' }, { times: 1 });
      const bad = await post(`${h.sidecar.url}/model`, { messages: HELLO });
      t.equal(bad.status, 400);
      t.equal(bad.json.error?.message, 'Invalid value for temperature.');
    });
  }
});

t.test('a compressed stream is decoded as it arrives: content before a stall reaches the client', async (t) => {
  const h = await startHarness(
    [
      { name: 'primary', group: 0, sim: { compress: { encoding: 'gzip', always: true } } },
      { name: 'fallback', group: 1 },
    ],
    { policy: '  timeouts:\n    streamIdle: 300ms' },
  );
  t.teardown(() => h.close());
  h.sims.primary.setFault({ kind: 'stallMidStream', afterChunks: 2 });
  const res = await streamRaw(h);
  t.equal(res.headers.get('x-llm-failover-provider'), 'primary', 'committed on the decoded first chunk');
  t.match(streamedContent(res.text), /^Hello from/);
  t.match(res.text, /"code":"stream_interrupted"/);
});

t.test('the pools decode for every caller: the models probe reads a compressed model list', async (t) => {
  const sim = await startOpenAISimulator({ model: 'm', compress: { encoding: 'br', always: true } });
  t.teardown(() => sim.close());
  const plan = loadPlan([{ name: 'p.yaml', text: backendYaml([{ name: 'm', group: 0 }], { m: sim.port }) }]);
  const model = plan.backends[0].groups[0][0];
  const pools = new Pools([model]);
  t.teardown(() => pools.close());
  const res = await pools.for(model).request({ path: '/v1/models', method: 'GET' });
  t.equal(res.statusCode, 200);
  t.equal(((await res.body.json()) as { data: { id: string }[] }).data[0].id, 'm');
});

// ---- 5. the client's body, byte for byte ----

t.test('a request naming a model goes out byte for byte but for the model: big seeds and 1.0 survive', async (t) => {
  const h = await startHarness([{ name: 'primary', group: 0 }]);
  t.teardown(() => h.close());
  const messages = JSON.stringify(HELLO);
  // each body, and the same body with every top-level model value replaced: nothing else may change
  const cases: [string, string][] = [
    [
      `{"model":"gpt-client","seed":12345678901234567890,"temperature":1.0,"messages":${messages},"top_p":1e0}`,
      `{"model":"primary","seed":12345678901234567890,"temperature":1.0,"messages":${messages},"top_p":1e0}`,
    ],
    // duplicate keys, one spelled with an escape: JSON.parse keeps the last, so every one is replaced
    [
      `{ "model" : "a",\n  "messages": ${messages},\n  "mod\\u0065l": "b", "seed": 12345678901234567890, "temperature": 1.0 }`,
      `{ "model" : "primary",\n  "messages": ${messages},\n  "mod\\u0065l": "primary", "seed": 12345678901234567890, "temperature": 1.0 }`,
    ],
    // a nested model and a string that looks like a model key are not the request's model
    [
      `{"messages":${messages},"metadata":{"model":"nested stays"},"model":"x","seed":12345678901234567890,"temperature":1.0,"note":"\\"model\\":\\"q\\""}`,
      `{"messages":${messages},"metadata":{"model":"nested stays"},"model":"primary","seed":12345678901234567890,"temperature":1.0,"note":"\\"model\\":\\"q\\""}`,
    ],
  ];
  for (const [body, expected] of cases) {
    const res = await post(`${h.sidecar.url}/model`, body);
    t.equal(res.status, 200);
    const got = h.sims.primary.requests.at(-1);
    t.equal(got?.body.model, 'primary', 'the provider sees its model');
    t.match(got?.raw, /"seed": ?12345678901234567890/, "the seed's 20 digits, as sent");
    t.match(got?.raw, /"temperature": ?1\.0/, '1.0 as sent');
    t.equal(got?.raw, expected, 'nothing else changed');
  }
  t.equal(h.sims.primary.requests[2].body.metadata.model, 'nested stays', "a nested model key is not the request's");
});

t.test('deep nesting beside a client model is forwarded as is, no longer refused', async (t) => {
  const h = await startHarness([{ name: 'primary', group: 0 }]);
  t.teardown(() => h.close());
  const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
  const res = await post(`${h.sidecar.url}/model`, `{"model":"gpt-4o","messages":${JSON.stringify(HELLO)},"x_extra":${deep}}`);
  t.equal(res.status, 200, `served, got ${res.status} ${res.json?.error?.code}`);
  t.match(h.sims.primary.requests[0].raw, /^\{"model":"primary",/);
});

// ---- 6. every OpenAI chunk is read ----

t.test('spaced JSON (as Python servers write it) and other key orders: usage is read, content is whole', async (t) => {
  for (const sim of [
    { jsonStyle: 'spaced' as const },
    { keyOrder: 'reversed' as const },
    { jsonStyle: 'spaced' as const, keyOrder: 'reversed' as const },
  ]) {
    const h = await startHarness([{ name: 'primary', group: 0, sim }]);
    t.teardown(() => h.close());
    const r = record(h);
    const res = await streamRaw(h, { stream_options: { include_usage: true } });
    t.equal(streamedContent(res.text), 'Hello from primary', JSON.stringify(sim));
    t.same(r.outcomes(), ['primary:success']);
    t.ok(r.attempts[0].usage && r.attempts[0].usage.outputTokens > 0, `${JSON.stringify(sim)}: the token usage is read`);
    const plain = await post(`${h.sidecar.url}/model`, { messages: HELLO });
    t.equal(plain.status, 200);
    t.ok(r.attempts[1].usage, `${JSON.stringify(sim)}: non-streamed usage is read`);
  }
});

t.test('an error object after content, even inside a chunk and followed by [DONE], ends the stream with the error event', async (t) => {
  for (const sim of [{}, { jsonStyle: 'spaced' as const }]) {
    const h = await startHarness([
      { name: 'primary', group: 0, sim },
      { name: 'fallback', group: 1 },
    ]);
    t.teardown(() => h.close());
    const r = record(h);
    h.sims.primary.setFault({ kind: 'errorThenDone' });
    const res = await streamRaw(h);
    t.equal(res.status, 200, 'the stream had started');
    t.match(streamedContent(res.text), /^Hello/);
    t.match(res.text, /"code":"stream_interrupted"/, 'the error event');
    t.notMatch(res.text, /\[DONE\]/, "no [DONE]: the upstream's terminator after its error is not passed on");
    t.same(r.outcomes(), ['primary:stream_error'], 'counted as a failure');
    await t.rejects(
      (async () => {
        for await (const _ of await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO, stream: true })) void _;
      })(),
      'the SDK raises',
    );
    t.equal(h.sims.fallback.requests.length, 0, 'a committed stream is never replayed');
  }
});

t.test('a truncated chunk after content is a cut, not a success', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  const r = record(h);
  h.sims.primary.setFault({ kind: 'truncatedChunk' });
  const res = await streamRaw(h);
  t.match(streamedContent(res.text), /^Hello/);
  t.match(res.text, /"code":"stream_interrupted"/);
  t.match(res.text, /malformed stream event/);
  t.notMatch(res.text, /\[DONE\]/);
  t.same(r.outcomes(), ['primary:bad_response']);
});
