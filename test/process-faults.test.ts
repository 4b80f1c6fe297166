/**
 * Process faults: an error in one request or in a telemetry subscriber never takes the process
 * down; SIGTERM drains streams and plain requests in flight; a restart under load loses nothing
 * that was accepted (every request completes whole or fails visibly, never a silent cut).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Agent } from 'undici';
import type { EventMap } from '../sidecar/observe/events.ts';
import { openaiAdapter } from '../sidecar/translate/openai.ts';
import { startOpenAISimulator } from '../simulator/index.ts';
import { startChildSidecar } from './support/child.ts';
import { HELLO, startHarness } from './support/harness.ts';
import { eventually, sleep } from './support/wait.ts';
import { chatOnce, metric, type Outcome, post, sseData, streamedContent } from './support/wire.ts';
import { backendYaml, TEST_KEY } from './support/yaml.ts';

const TWO = [
  { name: 'primary', group: 0 },
  { name: 'fallback', group: 1 },
];

t.test('an event subscriber that throws breaks no request: every event kind, streamed and not, with failover', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  const kinds: (keyof EventMap)[] = ['request-start', 'attempt-start', 'attempt-end', 'switch', 'health', 'request'];
  const thrown: string[] = [];
  for (const kind of kinds) {
    h.sidecar.events.on(kind, () => {
      thrown.push(kind);
      throw new Error(`boom in ${kind}`);
    });
  }
  // the primary fails once per request kind: a switch and a health change happen too
  for (const stream of [false, true]) {
    h.sims.primary.setFault({ kind: 'refuse' });
    await h.sims.primary.ready();
    const failedOver = await post(`${h.sidecar.url}/model`, { messages: HELLO, stream });
    t.equal(failedOver.status, 200, `stream=${stream}: the request that failed over still succeeds`);
    t.equal(failedOver.headers.get('x-llm-failover-provider'), 'fallback');
    if (stream) t.equal(sseData(failedOver.text).at(-1), '[DONE]');
    h.sims.primary.clearFault();
    await h.sims.primary.ready();
    h.sidecar.health.set(h.sidecar.health.models()[0], 'healthy', 'test reset');
  }
  const others = await Promise.all(
    Array.from({ length: 6 }, (_, i) => post(`${h.sidecar.url}/model`, { messages: HELLO, stream: i % 2 === 0 })),
  );
  t.same(
    others.map((r) => r.status),
    [200, 200, 200, 200, 200, 200],
    'other requests too',
  );
  t.same([...new Set(thrown)].sort(), [...kinds].sort(), 'every kind of subscriber threw');
  t.ok(
    h.logs.some((l) => l.includes('an event subscriber failed') && l.includes('boom in attempt-start')),
    'the failures are logged',
  );
  t.equal(h.sidecar.inFlight(), 0);
});

t.test("an exception inside one request's attempt: that client gets an error it can see, the process serves everyone else", async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  const original = { translateResponse: openaiAdapter.translateResponse, streamTranslator: openaiAdapter.streamTranslator };
  t.teardown(() => Object.assign(openaiAdapter, original));

  // a translator bug on a non-streamed answer: nothing was sent yet, so a 500 in the OpenAI shape
  openaiAdapter.translateResponse = () => {
    throw new Error('translator bug');
  };
  const broken = await post(`${h.sidecar.url}/model`, { messages: HELLO });
  t.equal(broken.status, 500);
  t.equal(broken.json.error?.code, 'internal_error');
  t.equal(broken.json.error?.type, 'server_error');
  openaiAdapter.translateResponse = original.translateResponse;

  // a translator bug mid-stream, after the commit point: an error event or a cut connection, never a clean end
  openaiAdapter.streamTranslator = (req, target) => {
    const inner = original.streamTranslator(req, target);
    let n = 0;
    return {
      push(e) {
        if (++n === 4) throw new Error('translator bug mid-stream');
        return inner.push(e);
      },
    };
  };
  const res = await fetch(`${h.sidecar.url}/model`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: HELLO, stream: true }),
  });
  t.equal(res.status, 200, 'the stream had committed');
  const body = await res.text().then(
    (text) => ({ ok: true, text }),
    (err: Error) => ({ ok: false, text: err.message }),
  );
  t.notOk(body.ok && sseData(body.text).at(-1) === '[DONE]', 'the client does not see a stream that looks finished');
  openaiAdapter.streamTranslator = original.streamTranslator;

  const after = await Promise.all([
    post(`${h.sidecar.url}/model`, { messages: HELLO }),
    post(`${h.sidecar.url}/model`, { messages: HELLO, stream: true }),
  ]);
  t.same(
    after.map((r) => r.status),
    [200, 200],
    'the process serves everyone else',
  );
  t.equal(streamedContent(after[1].text), 'Hello from primary');
  t.ok(
    h.logs.some((l) => l.includes('request handler failed') && l.includes('translator bug')),
    'the failure is logged',
  );
});

t.test('a request handler failure is logged redacted, like every other log line', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  const original = openaiAdapter.translateResponse;
  t.teardown(() => {
    openaiAdapter.translateResponse = original;
  });
  openaiAdapter.translateResponse = () => {
    throw new Error(`translator bug near ${TEST_KEY}`);
  };
  t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).status, 500);
  const logged = h.logs.filter((l) => l.includes('request handler failed'));
  t.equal(logged.length, 1, 'logged');
  t.notOk(logged.join('').includes(TEST_KEY), 'without the key the error message carried');
});

t.test("after an exception inside an attempt the model's in-flight count returns to 0 and the request is recorded", async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  const original = openaiAdapter.translateResponse;
  t.teardown(() => {
    openaiAdapter.translateResponse = original;
  });
  const requests: unknown[] = [];
  h.sidecar.events.on('request', (e) => requests.push(e));
  openaiAdapter.translateResponse = () => {
    throw new Error('translator bug');
  };
  t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).status, 500);
  openaiAdapter.translateResponse = original;
  const status = (await (await fetch(`${h.sidecar.adminUrl}/status`)).json()) as {
    backends: { groups: { models: { inFlight: number }[] }[] }[];
  };
  t.same(
    status.backends[0].groups.flatMap((g) => g.models.map((m) => m.inFlight)),
    [0, 0],
    'nothing left in flight on any model',
  );
  t.equal(requests.length, 1, 'the request is recorded (logs, metrics)');
});

t.test('an upstream answer with a null choice is an invalid answer: bad_response, the request fails over, streamed or not', async (t) => {
  // an "OpenAI-compatible" server that answers {"choices":[null]}: as the whole answer, or as a chunk before its content
  const chunk = (delta: object, finish: string | null = null) =>
    `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', model: 'odd', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
  let oddRequests = 0;
  const odd = createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => (raw += d));
    req.on('end', () => {
      oddRequests++;
      if ((JSON.parse(raw) as { stream?: boolean }).stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(
          `data: {"id":"x","object":"chat.completion.chunk","choices":[null]}\n\n${chunk({ content: 'Hello from odd' })}${chunk({}, 'stop')}data: [DONE]\n\n`,
        );
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"id":"x","object":"chat.completion","model":"odd","choices":[null]}');
      }
    });
  });
  await new Promise<void>((resolve) => odd.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => odd.close(() => resolve())));
  const h = await startHarness(TWO, {
    mapYaml: (y, ports) => y.replace(`port: ${ports.primary}`, `port: ${(odd.address() as AddressInfo).port}`),
  });
  t.teardown(() => h.close());
  const switches: string[] = [];
  h.sidecar.events.on('switch', (e) => switches.push(e.reason));
  for (const stream of [false, true]) {
    h.sidecar.health.set(h.sidecar.health.models()[0], 'healthy', 'test reset');
    const res = await post(`${h.sidecar.url}/model`, { messages: HELLO, stream });
    t.equal(res.status, 200, `stream ${stream}: 200`);
    t.equal(res.headers.get('x-llm-failover-provider'), 'fallback', `stream ${stream}: served by the fallback`);
    t.equal(res.headers.get('x-llm-failover-attempts'), '2', `stream ${stream}: at the second attempt`);
    if (stream) {
      t.equal(
        streamedContent(res.text),
        'Hello from fallback',
        "the fallback's answer alone: nothing of the odd stream reached the client",
      );
      t.equal(sseData(res.text).at(-1), '[DONE]', 'a whole stream');
      t.notMatch(res.text, /null\]|Hello from odd/, 'neither the null choice nor what followed it');
    } else {
      t.equal((res.json.choices as { message: { content: string } }[])[0].message.content, 'Hello from fallback', "the fallback's answer");
    }
  }
  t.equal(oddRequests, 2, 'the odd server was tried once per request');
  t.same(switches, ['bad_response', 'bad_response'], 'each failover names an invalid answer (bad_response)');
  const metrics = await (await fetch(`${h.sidecar.adminUrl}/metrics`)).text();
  t.equal(
    metric(metrics, 'llm_failover_upstream_attempts_total', { provider: 'primary', outcome: 'bad_response' }),
    2,
    'both attempts counted as bad_response',
  );
  t.equal(
    metric(metrics, 'llm_failover_upstream_attempts_total', { provider: 'primary', outcome: 'connect_reset' }),
    undefined,
    'never as a connection reset',
  );
});

t.test('SIGTERM drains concurrent streams and a non-streamed request in flight, then exits 0', async (t) => {
  const sim = await startOpenAISimulator({
    model: 'slow',
    apiKey: TEST_KEY,
    chunkDelayMs: 120,
    reply: () => ({ content: 'one two three four five six seven eight' }),
  });
  t.teardown(() => sim.close());
  const dir = mkdtempSync(join(tmpdir(), 'drain-'));
  const config = join(dir, 'config.yaml');
  writeFileSync(config, backendYaml([{ name: 'slow', group: 0 }], { slow: sim.port }));
  const child = await startChildSidecar(config);
  t.teardown(() => child.kill());

  const streams = Array.from({ length: 4 }, () =>
    fetch(`${child.url}/model`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: HELLO, stream: true }),
    }).then(async (r) => ({ status: r.status, text: await r.text() })),
  );
  t.ok(await eventually(() => sim.inFlight() === 4, 5000), 'four streams under way');
  sim.setFault({ kind: 'slowFirstToken', delayMs: 800 }, { times: 1 });
  const plain = post(`${child.url}/model`, { messages: HELLO });
  t.ok(await eventually(() => sim.inFlight() === 5, 5000), 'and a non-streamed request waiting for its answer');

  child.kill('SIGTERM');
  await sleep(100);
  const ready = await fetch(`${child.adminUrl}/readyz`).then(
    (r) => r.status,
    () => 0,
  );
  t.equal(ready, 503, 'while draining, /readyz says not ready');
  await t.rejects(
    fetch(`${child.url}/model`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: HELLO }),
    }),
    'new connections are refused at once',
  );

  const done = await Promise.all(streams);
  for (const [i, s] of done.entries()) {
    t.equal(s.status, 200, `stream ${i}: 200`);
    t.equal(streamedContent(s.text), 'one two three four five six seven eight', `stream ${i}: whole`);
    t.equal(sseData(s.text).at(-1), '[DONE]', `stream ${i}: ends in [DONE]`);
  }
  const p = await plain;
  t.equal(p.status, 200, 'the non-streamed request: 200');
  t.match((p.json.choices as { message: { content: string } }[])[0].message.content, /one two three/, 'with its whole answer');
  t.equal(await child.exited, 0, 'then the process exits 0');
});

t.test(
  'a restart under load: no 5xx reaches a client, every accepted request completes whole, the rest is refused before acceptance and retried',
  async (t) => {
    const sim = await startOpenAISimulator({ model: 'm', apiKey: TEST_KEY, chunkDelayMs: 8 });
    t.teardown(() => sim.close());
    const dir = mkdtempSync(join(tmpdir(), 'restart-'));
    const config = join(dir, 'config.yaml');
    writeFileSync(config, backendYaml([{ name: 'm', group: 0 }], { m: sim.port }));
    const first = await startChildSidecar(config);
    t.teardown(() => first.kill());
    let second: Awaited<ReturnType<typeof startChildSidecar>> | undefined;
    t.teardown(() => second?.kill());
    const url = first.url;

    const agent = new Agent({ connections: 8 });
    t.teardown(() => agent.destroy().catch(() => undefined));
    const counts: Record<Outcome, number> = { complete: 0, 'error-event': 0, 'http-error': 0, 'no-response': 0, truncated: 0 };
    /** Whatever a client must not see: an error status, a cut body, a stream without [DONE], a failure that is not a refusal or a reset. */
    const bad: string[] = [];
    /** Why requests got no response: only a refused connection or a reset of an idle keep-alive one. */
    const refusals = new Map<string, number>();
    let stop = false;
    let n = 0;
    let completedBySecond = 0;
    let lost = 0;
    const workers = Array.from({ length: 6 }, async () => {
      while (!stop && n < 20_000) {
        const stream = n++ % 2 === 0;
        // one request as an app sends it: retried while the connection is refused or reset, as the SDKs do
        let done = false;
        for (let tries = 0; tries < 200 && !done; tries++) {
          const r = await chatOnce(url, stream, agent);
          counts[r.outcome]++;
          if (r.outcome === 'complete') {
            done = true;
            if (second) completedBySecond++;
          } else if (r.outcome === 'no-response') {
            const why = /ECONNREFUSED|ECONNRESET|other side closed|socket hang up/.exec(r.detail ?? '')?.[0];
            if (why) refusals.set(why, (refusals.get(why) ?? 0) + 1);
            else bad.push(`no response, not refused nor reset: ${r.detail}`);
            await sleep(10); // nothing listening for a moment: do not spin
          } else {
            bad.push(`${r.outcome} ${r.status} ${r.detail}`);
            done = true;
          }
        }
        if (!done) lost++;
      }
    });
    await sleep(800);
    const beforeRestart = counts.complete;
    first.kill('SIGTERM');
    second = await startChildSidecar(config, ['--listen', first.listen]);
    t.equal(second.listen, first.listen, 'the new process listens on the same port');
    const end = Date.now() + 8000;
    while (completedBySecond < 100 && Date.now() < end) await sleep(20);
    stop = true;
    await Promise.all(workers);
    t.comment(`restart under load: ${JSON.stringify(counts)}, refused or reset: ${JSON.stringify(Object.fromEntries(refusals))}`);

    t.ok(beforeRestart > 20, `the first process served (${beforeRestart})`);
    t.ok(completedBySecond >= 100, `the second process serves (${completedBySecond})`);
    t.equal(await first.exited, 0, 'the first process drained and exited 0 (nothing cut, nothing refused with a 503)');
    t.same(
      bad,
      [],
      'no error status (no 5xx), no 200 with a truncated body, no stream without [DONE], no failure but a refusal or a reset',
    );
    t.equal(counts['http-error'], 0, 'not one error status reached a client');
    t.equal(lost, 0, 'every request completed, at worst after retrying a refused or reset connection');
    // a request the sidecar accepted and forwarded reached the model: had one been dropped after
    // that (its client seeing a reset), the model would have served more requests than clients got
    const served = sim.requests.filter((r) => r.body?.messages?.[0]?.content === 'What is kubernetes?').length; // not the probes
    t.equal(served, counts.complete, `every request the model served reached its client (${served} served, ${counts.complete} complete)`);
  },
);
