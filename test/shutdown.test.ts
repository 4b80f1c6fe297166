/**
 * Shutdown and signals, on the sidecar as a child process: when `drainGrace` runs out, every
 * request still in flight is told why (a committed stream ends with a `sidecar_shutting_down`
 * error event, a request that has sent nothing gets a 503 with Retry-After), its upstream request
 * is aborted without trying another model, and the exit code and last log line say what was cut.
 * SIGHUP reloads the configuration and keeps streams in flight.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startOpenAISimulator } from '../simulator/index.ts';
import { spawnCli, startChildSidecar } from './support/child.ts';
import { HELLO, startHarness } from './support/harness.ts';
import { eventually } from './support/wait.ts';
import { metric, sseData, streamedContent, userRequests } from './support/wire.ts';
import { backendYaml, sidecarConfigYaml, TEST_KEY } from './support/yaml.ts';

const LONG = Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ');

function chat(url: string, stream: boolean) {
  return fetch(`${url}/model`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: HELLO, stream }),
  });
}

function configFile(yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'shutdown-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, yaml);
  return file;
}

const lastLine = (out: string) => out.trim().split('\n').at(-1) ?? '';

t.test(
  'drain grace ends: streams get a shutting-down error event, waiting requests a 503, nothing is retried elsewhere, exit 1',
  async (t) => {
    const slow = await startOpenAISimulator({ model: 'slow', apiKey: TEST_KEY, chunkDelayMs: 100, reply: () => ({ content: LONG }) });
    const fallback = await startOpenAISimulator({ model: 'fallback', apiKey: TEST_KEY });
    t.teardown(() => Promise.all([slow.close(), fallback.close()]));
    const config = configFile(
      backendYaml(
        [
          { name: 'slow', group: 0 },
          { name: 'fallback', group: 1 },
        ],
        { slow: slow.port, fallback: fallback.port },
      ) + sidecarConfigYaml('  drainGrace: 500ms\n  maxConcurrentRequests: 3\n  maxQueuedRequests: 4\n'),
    );
    const child = await startChildSidecar(config);
    t.teardown(() => child.kill());

    // two committed streams, one non-streamed request waiting for its answer, one request queued for a slot
    const streams = await Promise.all([chat(child.url, true), chat(child.url, true)]);
    t.same(
      streams.map((r) => r.status),
      [200, 200],
      'two streams committed',
    );
    const bodies = streams.map((r) => r.text().catch((err: Error) => `(cut: ${err.message})`));
    slow.setFault({ kind: 'hang' }, { times: 1 });
    const waiting = chat(child.url, false).catch(() => undefined);
    t.ok(await eventually(() => slow.inFlight() === 3, 5000), 'a non-streamed request waits upstream');
    const queued = chat(child.url, false).catch(() => undefined);
    const inFlight = async () => metric(await (await fetch(`${child.adminUrl}/metrics`)).text(), 'llm_failover_requests_in_flight');
    let seen: number | undefined;
    for (let i = 0; i < 100 && seen !== 4; i++) seen = await inFlight();
    t.equal(seen, 4, 'and a fourth waits in the queue');

    child.kill('SIGTERM');
    for (const [i, text] of (await Promise.all(bodies)).entries()) {
      const events = sseData(text);
      t.ok(streamedContent(text).length > 0, `stream ${i}: it had started`);
      t.notOk(events.includes('[DONE]'), `stream ${i}: no [DONE]`);
      const last = JSON.parse(events.at(-1) ?? '{}') as { error?: { code?: string; message?: string } };
      t.equal(last.error?.code, 'sidecar_shutting_down', `stream ${i}: ends with the shutting-down error event`);
      t.match(last.error?.message, /shutting down/, `stream ${i}: which says so`);
    }
    for (const [name, p] of [
      ['waiting upstream', waiting],
      ['queued', queued],
    ] as const) {
      const res = await p;
      if (!res) {
        t.fail(`${name}: no response at all`);
        continue;
      }
      t.equal(res.status, 503, `${name}: 503`);
      t.equal(res.headers.get('retry-after'), '1', `${name}: Retry-After`);
      const body = (await res.json()) as { error?: { code?: string; message?: string } };
      t.equal(body.error?.code, 'sidecar_shutting_down', `${name}: sidecar_shutting_down`);
      t.match(body.error?.message, /shutting down/, `${name}: a message that says why`);
    }
    t.equal(await child.exited, 1, 'exit 1: requests were cut');
    t.match(lastLine(child.out()), /shutdown: drain grace ended; cut 2 streams, refused 2 requests/, 'the last log line says what was cut');
    t.ok(await eventually(() => slow.inFlight() === 0, 3000), 'every upstream request was aborted');
    t.equal(userRequests(fallback.requests).length, 0, 'no other model was tried');
  },
);

t.test('everything drained within the grace: exit 0, and the last log line says so', async (t) => {
  const sim = await startOpenAISimulator({ model: 'm', apiKey: TEST_KEY, chunkDelayMs: 50 });
  t.teardown(() => sim.close());
  const child = await startChildSidecar(
    configFile(backendYaml([{ name: 'm', group: 0 }], { m: sim.port }) + sidecarConfigYaml('  drainGrace: 5s\n')),
  );
  t.teardown(() => child.kill());
  const res = await chat(child.url, true);
  child.kill('SIGTERM');
  t.equal(sseData(await res.text()).at(-1), '[DONE]', 'the stream finished whole');
  t.equal(await child.exited, 0);
  t.match(lastLine(child.out()), /shutdown: every request drained/);
});

t.test('SIGHUP reloads the configuration; the stream in flight continues', async (t) => {
  const a = await startOpenAISimulator({ model: 'model-a', apiKey: TEST_KEY, chunkDelayMs: 60 });
  const b = await startOpenAISimulator({ model: 'model-b', apiKey: TEST_KEY });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const ports = { a: a.port, b: b.port };
  const config = configFile(
    backendYaml(
      [
        { name: 'a', model: 'model-a', group: 0 },
        { name: 'b', model: 'model-b', group: 1 },
      ],
      ports,
    ),
  );
  const child = await startChildSidecar(config);
  t.teardown(() => child.kill());

  const stream = await chat(child.url, true);
  t.equal(stream.status, 200);
  const body = stream.text();
  child.kill('SIGHUP');
  t.ok(await eventually(() => /SIGHUP/.test(child.out()), 3000), 'SIGHUP is logged');
  t.match(child.out(), /"msg":"SIGHUP: [^"]*unchanged/, 'an unchanged configuration is said to be unchanged');

  // the file changes and SIGHUP says so (the watcher's own poll is 2 s away)
  writeFileSync(
    config,
    backendYaml(
      [
        { name: 'b', model: 'model-b', group: 0 },
        { name: 'a', model: 'model-a', group: 1 },
      ],
      ports,
    ),
  );
  child.kill('SIGHUP');
  t.ok(await eventually(() => /configuration 2 applied/.test(child.out()), 3000), 'the changed configuration is applied');
  // (the file watcher may have seen the change a moment before the signal did)
  t.ok(
    await eventually(
      () => /SIGHUP: configuration re-read: (changed, now|unchanged, still) serving configuration 2/.test(child.out()),
      3000,
    ),
    'SIGHUP reports the configuration now served',
  );
  const fresh = await chat(child.url, false);
  t.equal(fresh.headers.get('x-llm-failover-provider'), 'b', 'new requests follow it');
  await fresh.text();

  t.match(await body, /data: \[DONE\]\n\n$/, 'the stream in flight finished whole');
  t.equal(child.child.exitCode, null, 'the process is still running');
  child.kill('SIGTERM');
  t.equal(await child.exited, 0);
});

t.test('SIGHUP in the demo (no --config): nothing to reload, it keeps serving', async (t) => {
  const p = spawnCli(['--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
  t.teardown(() => p.child.kill('SIGKILL'));
  t.ok(await eventually(() => /curl -s http:\/\/127\.0\.0\.1:\d+\/model/.test(p.out()), 15_000), 'the demo started');
  const url = /curl -s (http:\/\/127\.0\.0\.1:\d+)\/model/.exec(p.out())?.[1] ?? '';
  p.child.kill('SIGHUP');
  t.ok(await eventually(() => /SIGHUP/.test(p.out()), 3000), 'SIGHUP is reported');
  t.match(p.out(), /SIGHUP: no --config \(the demo\): nothing to reload/);
  const res = await chat(url, false);
  t.equal(res.status, 200, 'and it keeps serving');
  await res.text();
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);
});

t.test('over HTTP/2 too: drain() ends a committed stream with the error event and answers a waiting request 503', async (t) => {
  const h = await startHarness([{ name: 'slow', group: 0, sim: { chunkDelayMs: 100, reply: () => ({ content: LONG }) } }]);
  t.teardown(() => h.close());
  const session = http2.connect(h.sidecar.url);
  session.on('error', () => undefined);
  t.teardown(() => session.destroy());
  const open = (stream: boolean) => {
    const req = session.request({ ':method': 'POST', ':path': '/model', 'content-type': 'application/json' });
    req.on('error', () => undefined);
    req.end(JSON.stringify({ messages: HELLO, stream }));
    let status = 0;
    let headers: http2.IncomingHttpHeaders = {};
    let text = '';
    req.on('response', (hs) => {
      status = Number(hs[':status']);
      headers = hs;
    });
    req.on('data', (d) => (text += d));
    const ended = new Promise<void>((resolve) => req.once('close', () => resolve()));
    return { status: () => status, headers: () => headers, text: () => text, ended };
  };
  const stream = open(true);
  t.ok(await eventually(() => streamedContent(stream.text()).length > 0, 5000), 'the stream committed');
  h.sims.slow.setFault({ kind: 'hang' }, { times: 1 });
  const waiting = open(false);
  t.ok(await eventually(() => h.sims.slow.inFlight() === 2, 5000), 'a request waits upstream');

  t.same(await h.sidecar.drain(200), { cut: 1, refused: 1 }, 'drain() says what it cut');
  await Promise.all([stream.ended, waiting.ended]);
  const last = JSON.parse(sseData(stream.text()).at(-1) ?? '{}') as { error?: { code?: string } };
  t.equal(last.error?.code, 'sidecar_shutting_down', 'the stream ends with the shutting-down event');
  t.notOk(sseData(stream.text()).includes('[DONE]'), 'no [DONE]');
  t.equal(waiting.status(), 503, 'the waiting request: 503');
  t.equal(waiting.headers()['retry-after'], '1');
  t.equal((JSON.parse(waiting.text()) as { error?: { code?: string } }).error?.code, 'sidecar_shutting_down');
  t.ok(await eventually(() => h.sims.slow.inFlight() === 0, 3000), 'both upstream requests were aborted');
});
