/**
 * Streams: failures before the first content chunk fail over invisibly; after it, the client
 * gets an error event and no [DONE], never a cut that looks like success.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { HELLO, startHarness } from './support/harness.ts';
import { post } from './support/wire.ts';

const TWO = [
  { name: 'primary', group: 0 },
  { name: 'fallback', group: 1 },
];
const NO_MODEL = undefined as unknown as string;

async function collect(stream: AsyncIterable<{ choices: { delta: { content?: string | null } }[] }>): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
  return text;
}

t.test('a streamed answer arrives chunk by chunk, ending in [DONE]', async (t) => {
  const h = await startHarness([{ name: 'primary', group: 0 }]);
  t.teardown(() => h.close());
  const { data: stream, response } = await h.client.chat.completions
    .create({ model: NO_MODEL, messages: HELLO, stream: true, stream_options: { include_usage: true } })
    .withResponse();
  t.match(response.headers.get('content-type'), /text\/event-stream/);
  t.equal(response.headers.get('x-llm-failover-provider'), 'primary');
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  t.ok(chunks.length > 3, 'several chunks');
  t.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'Hello from primary');
  t.ok(chunks.at(-1)?.usage, 'the usage chunk the client asked for is forwarded');
  const raw = await fetch(`${h.sidecar.url}/model`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: HELLO, stream: true }),
  });
  t.match(await raw.text(), /data: \[DONE\]\n\n$/);
});

t.test('failures before the first content chunk fail over inside the stream', async (t) => {
  const h = await startHarness(TWO, { policy: '  timeouts:\n    firstToken: 400ms\n    streamIdle: 5s' });
  t.teardown(() => h.close());
  const cases = [
    {
      name: 'in-stream error event before the first token',
      fault: { kind: 'errorEventBeforeFirstToken' as const },
      reason: 'stream_error',
    },
    {
      name: 'first token slower than its timeout',
      fault: { kind: 'slowFirstToken' as const, delayMs: 2000 },
      reason: 'first_token_timeout',
    },
    {
      name: 'stall after the role chunk, before content',
      fault: { kind: 'stallMidStream' as const, afterChunks: 0 },
      reason: 'first_token_timeout',
    },
    { name: '503 before the stream starts', fault: { kind: 'status' as const, status: 503 }, reason: 'upstream_5xx' },
    { name: 'malformed SSE event', fault: { kind: 'invalidJson' as const }, reason: 'bad_response' },
    { name: 'connection reset', fault: { kind: 'reset' as const }, reason: 'connect_reset' },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      h.sidecar.health.set(h.sidecar.health.models()[0], 'healthy', 'test reset');
      h.sims.primary.setFault(c.fault);
      const reasons: string[] = [];
      const onSwitch = (e: { reason: string }) => reasons.push(e.reason);
      h.sidecar.events.on('switch', onSwitch);
      const { data, response } = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO, stream: true }).withResponse();
      t.equal(response.status, 200);
      t.equal(response.headers.get('x-llm-failover-provider'), 'fallback');
      t.equal(await collect(data), 'Hello from fallback', 'the app sees one clean stream');
      t.same(reasons, [c.reason]);
      h.sidecar.events.off('switch', onSwitch);
      h.sims.primary.clearFault();
    });
  }
});

t.test('after the first content chunk a failure ends the stream with an error event and no [DONE]', async (t) => {
  const h = await startHarness(TWO, { policy: '  timeouts:\n    streamIdle: 300ms' });
  t.teardown(() => h.close());
  const cases = [
    { name: 'in-stream error event after the first token', fault: { kind: 'errorEventAfterFirstToken' as const } },
    { name: 'stall mid-stream', fault: { kind: 'stallMidStream' as const, afterChunks: 2 } },
    { name: 'reset mid-stream', fault: { kind: 'resetMidBody' as const } },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      h.sidecar.health.set(h.sidecar.health.models()[0], 'healthy', 'test reset');
      h.sims.primary.setFault(c.fault);
      const res = await fetch(`${h.sidecar.url}/model`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: HELLO, stream: true }),
      });
      t.equal(res.status, 200, 'the stream had started');
      const text = await res.text();
      t.match(text, /"content":"Hello"/, 'the content sent before the fault arrived');
      t.match(text, /data: \{"error":\{"message":"the stream from the model broke after it started/, 'an error event says it broke');
      t.notMatch(text, /\[DONE\]/, 'no [DONE]: the cut never looks like success');
      // the official SDK raises on it
      h.sidecar.health.set(h.sidecar.health.models()[0], 'healthy', 'test reset');
      const stream = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO, stream: true });
      await t.rejects(collect(stream), 'the SDK raises an error');
      t.equal(h.sims.fallback.requests.length, 0, 'a committed stream is never replayed elsewhere');
      h.sims.primary.clearFault();
    });
  }
});

t.test('a client that goes away stops the upstream request and starts no other', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  for (const stream of [false, true]) {
    h.sims.primary.setFault({ kind: 'hang' });
    const controller = new AbortController();
    const pending = fetch(`${h.sidecar.url}/model`, {
      method: 'POST',
      signal: controller.signal,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: HELLO, stream }),
    });
    while (h.sims.primary.inFlight() === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    await t.rejects(pending);
    while (h.sims.primary.inFlight() > 0) await new Promise((r) => setTimeout(r, 5));
    t.pass(`stream=${stream}: the upstream request was aborted`);
    await new Promise((r) => setTimeout(r, 50));
    t.equal(h.sims.fallback.requests.length, 0, `stream=${stream}: no further attempt started`);
    t.equal(h.sidecar.health.state(h.sidecar.health.models()[0]), 'healthy', 'a client leaving says nothing of the model');
  }
});

t.test('finished streams hand their upstream connection back, even when its end comes apart from the final event', async (t) => {
  for (const kind of ['openai', 'anthropic'] as const) {
    const h = await startHarness([{ name: 'primary', group: 0, kind }]);
    t.teardown(() => h.close());
    h.sims.primary.setFault({ kind: 'slowEnd', delayMs: 30 }, { times: 5 });
    for (let i = 0; i < 10; i++) {
      const stream = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO, stream: true });
      t.equal(await collect(stream), 'Hello from primary', `${kind}: stream ${i + 1} whole`);
      await sleep(60); // the end of the body arrives meanwhile
    }
    t.equal(h.sims.primary.requests.length, 10);
    t.equal(h.sims.primary.connectionsAccepted, 1, `${kind}: the pool reused its one connection`);
  }
});

t.test('a body that never ends after its final event is dropped after streamIdle, the answer already whole', async (t) => {
  const h = await startHarness([{ name: 'primary', group: 0 }], { policy: '  timeouts:\n    streamIdle: 200ms' });
  t.teardown(() => h.close());
  h.sims.primary.setFault({ kind: 'slowEnd', delayMs: 60_000 }, { times: 1 });
  const stream = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO, stream: true });
  t.equal(await collect(stream), 'Hello from primary', 'the client has its whole answer at the final event');
  t.equal(h.sims.primary.inFlight(), 1, 'the upstream is still sending its end');
  const deadline = Date.now() + 5000;
  while (h.sims.primary.inFlight() > 0 && Date.now() < deadline) await sleep(20);
  t.equal(h.sims.primary.inFlight(), 0, 'the sidecar let go of the lingering upstream');
  t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).status, 200, 'and serves on');
});
