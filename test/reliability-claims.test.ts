/**
 * Rows of docs/reliability.md that had no test (issue 22): a connect timeout against a listener
 * that never accepts, one SSE event over 4 MiB, and a request one provider cannot express.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import type { TapTest } from './support/child.ts';
import { HELLO, startHarness } from './support/harness.ts';
import { post } from './support/wire.ts';

const TWO = [
  { name: 'primary', group: 0 },
  { name: 'fallback', group: 1 },
];

/**
 * A TCP listener that never accepts, its accept queue already full: the kernel drops every new
 * SYN, so a connect neither succeeds nor is refused (what an overloaded or black-holed host does).
 */
async function blackHole(t: TapTest): Promise<number> {
  const py: ChildProcess = spawn(
    'python3',
    [
      '-c',
      "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(120)",
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.teardown(() => py.kill());
  const port = await new Promise<number>((resolve) => py.stdout?.once('data', (d) => resolve(Number(String(d).trim()))));
  const fillers: Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    fillers.push(s);
  }
  t.teardown(() => {
    for (const s of fillers) s.destroy();
  });
  await new Promise((r) => setTimeout(r, 100));
  return port;
}

t.test('a connect timeout (a listener that never accepts) fails over and marks the model unhealthy', async (t) => {
  const port = await blackHole(t);
  const h = await startHarness(TWO, {
    policy: '  timeouts:\n    connect: 300ms\n',
    mapYaml: (yaml, ports) => yaml.replace(`port: ${ports.primary}`, `port: ${port}`),
  });
  t.teardown(() => h.close());
  const reasons: string[] = [];
  h.sidecar.events.on('switch', (e) => reasons.push(e.reason));
  for (const stream of [false, true]) {
    const res = await post(`${h.sidecar.url}/model`, { messages: HELLO, stream });
    t.equal(res.status, 200, `stream ${stream}: served`);
    t.equal(res.headers.get('x-llm-failover-provider'), 'fallback');
    // the model is marked down by the first timeout: the second request does not try it again
    if (!stream) t.equal(h.sidecar.health.state(h.sidecar.health.models()[0]), 'unhealthy', 'unhealthy at once');
  }
  t.same(reasons, ['connect_timeout'], 'the first request switched on a connect timeout; the second went straight to the fallback');
});

/** An OpenAI-compatible server whose stream opens with one event that never ends. */
async function endlessEvent(): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const piece = 'x'.repeat(64 * 1024);
      let sent = 0;
      const push = () => {
        while (sent < 6 * 1024 * 1024) {
          sent += piece.length;
          if (!res.write(sent === piece.length ? `data: ${piece}` : piece)) return res.once('drain', push);
        }
        res.end('\n\n');
      };
      push();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

t.test('one SSE event over 4 MiB that never ends is a malformed answer: the stream fails over before content', async (t) => {
  const upstream = await endlessEvent();
  t.teardown(() => upstream.close());
  const h = await startHarness(TWO, {
    mapYaml: (yaml, ports) => yaml.replace(`port: ${ports.primary}`, `port: ${(upstream.address() as AddressInfo).port}`),
  });
  t.teardown(() => h.close());
  const reasons: string[] = [];
  h.sidecar.events.on('switch', (e) => reasons.push(e.reason));
  const res = await post(`${h.sidecar.url}/model`, { messages: HELLO, stream: true });
  t.equal(res.status, 200);
  t.equal(res.headers.get('x-llm-failover-provider'), 'fallback');
  t.match(res.text, /Hello from fallback|data: \[DONE\]/, "the fallback's whole stream");
  t.same(reasons, ['bad_response']);
});

t.test('a request the first provider cannot express moves on to one that can, and says nothing about the model', async (t) => {
  const h = await startHarness([
    { name: 'claude', kind: 'anthropic', group: 0 },
    { name: 'gpt', group: 1 },
  ]);
  t.teardown(() => h.close());
  const reasons: string[] = [];
  h.sidecar.events.on('switch', (e) => reasons.push(e.reason));
  // only an audio part: Anthropic has no equivalent, so there is no message to send it
  const messages = [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] }];
  const res = await post(`${h.sidecar.url}/model`, { messages });
  t.equal(res.status, 200);
  t.equal(res.headers.get('x-llm-failover-provider'), 'gpt');
  t.same(reasons, ['untranslatable']);
  t.equal(h.sims.claude.requests.length, 0, 'nothing was sent to Anthropic');
  const claude = h.sidecar.health.models()[0];
  t.equal(h.sidecar.health.state(claude), 'healthy', 'the model is not to blame');
  t.equal(h.sidecar.health.get(claude).failures, 0);
});
