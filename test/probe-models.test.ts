/**
 * The model-list probe: what its failures say, and what they must never carry.
 * - a 401 that echoes the key (as providers and proxies do) leaves no piece of the key in /status;
 * - a server without GET /v1/models (404 / 405; many OpenAI-compatible servers) is probed with
 *   chat probes instead, and does not flap.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { loadPlan } from '../sidecar/config/load.ts';
import { startSidecar } from '../sidecar/runtime/main.ts';
import type { HealthEvent } from '../sidecar/observe/events.ts';
import { createLogger } from '../sidecar/observe/log.ts';
import { failoverYaml } from '../simulator/config.ts';
import { startOpenAISimulator } from '../simulator/index.ts';
import { HELLO } from './support/harness.ts';
import { post } from './support/wire.ts';
import { LOOPBACK_SERVER, policyYaml } from './support/yaml.ts';

const FAST_PROBES = `  health:
    probe:
      interval: 100ms
      idleInterval: 100ms
      timeout: 1s
      jitterPercent: 0
      healthyThreshold: 2
      unhealthyThreshold: 2
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

/** Every 10-character piece of `key` that appears in `text`. */
function pieces(text: string, key: string): string[] {
  const found: string[] = [];
  for (let i = 0; i + 10 <= key.length; i++) if (text.includes(key.slice(i, i + 10))) found.push(key.slice(i, i + 10));
  return found;
}

// not shaped like any known key (no sk-, no Bearer in the echo): only the plan's own keys catch it
const KEY = 'probe7Q2mZx9LkP4vW8rT1yB6nC3hJ5dF0gSaE';

for (const kind of ['openai', 'anthropic'] as const) {
  t.test(`a ${kind} model-list probe whose 401 echoes the key leaves no piece of it in /status`, async (t) => {
    // the key lands across the 200th character of the body, where a cut before scrubbing would leave a piece
    const echo = await listen((req, res) => {
      const got = String(req.headers['x-api-key'] ?? req.headers.authorization ?? '').replace(/^Bearer /, '');
      const lead = '{"error":{"message":"';
      const say = 'Incorrect API key provided: ';
      const message = `${'The credentials you sent were not accepted by this proxy. '.repeat(4).slice(0, 188 - lead.length - say.length)}${say}${got}. Check it.`;
      req.resume();
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message, type: 'authentication_error' } }));
    });
    const yaml = failoverYaml([{ name: 'primary', kind, group: 0, port: echo.port, token: KEY }]);
    // the model-list probe is what this is about: the operator chose it (auto probes a model this close to traffic with chat)
    const plan = loadPlan(
      [
        {
          name: 't.yaml',
          text: yaml + LOOPBACK_SERVER + policyYaml(FAST_PROBES.replace('    probe:\n', '    probe:\n      kind: models\n')),
        },
      ],
      { env: {} },
    );
    const sidecar = await startSidecar({ plan, logger: createLogger('silent'), env: {} });
    t.teardown(async () => {
      await sidecar.close();
      echo.server.close();
    });
    const log = sidecar.probes.log;
    while (!log.some((p) => p.kind === 'models')) await sleep(20);
    const model = sidecar.health.models()[0];
    t.equal(sidecar.health.state(model), 'unhealthy', 'a 401 on the model list takes the model out');
    const status = await (await fetch(`${sidecar.adminUrl}/status`)).text();
    t.match(status, /upstream 401/, 'the failure is on /status');
    t.match(status, /Incorrect API key provided: \[redacted\]/, 'with the key scrubbed where it was echoed');
    t.same(pieces(status, KEY), [], 'no 10-character piece of the key');
  });
}

/** The simulator behind a proxy that answers GET .../models with `status`, like a server without a model list. */
async function withoutModelList(status: number) {
  const sim = await startOpenAISimulator({ model: 'fallback' });
  const front = await listen((req, res) => {
    if (req.method === 'GET' && req.url?.endsWith('/models')) {
      req.resume();
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 404 ? '404 page not found' : 'Method Not Allowed');
      return;
    }
    const up = request({ host: '127.0.0.1', port: sim.port, path: req.url, method: req.method, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  return { sim, front };
}

for (const status of [404, 405]) {
  t.test(`a fallback whose server answers ${status} on GET /v1/models is probed with chat instead, and never flaps`, async (t) => {
    const primary = await startOpenAISimulator({ model: 'primary' });
    const { sim, front } = await withoutModelList(status);
    const yaml = failoverYaml([
      { name: 'primary', group: 0, port: primary.port, token: 'sk-a' },
      { name: 'fallback', group: 1, port: front.port, token: 'sk-b' },
    ]);
    // the operator chose model-list probes for the fallback (auto would prove a model this close to traffic with chat anyway)
    const policy = `${FAST_PROBES}  providers:\n    fallback:\n      health:\n        probe:\n          kind: models\n`;
    const plan = loadPlan([{ name: 't.yaml', text: yaml + LOOPBACK_SERVER + policyYaml(policy) }], { env: {} });
    const sidecar = await startSidecar({ plan, logger: createLogger('silent'), env: {} });
    t.teardown(async () => {
      await sidecar.close();
      front.server.close();
      await sim.close();
      await primary.close();
    });
    const changes: HealthEvent[] = [];
    sidecar.events.on('health', (e) => changes.push(e));
    const scheduler = sidecar.probes;
    const fallbackProbes = () => scheduler.log.filter((p) => p.model === 'fallback');
    // several probe intervals
    while (fallbackProbes().length < 8) await sleep(20);
    t.same(
      changes.map((c) => `${c.model.name}: ${c.from}->${c.to} (${c.cause})`),
      [],
      'no health transition at all',
    );
    t.ok(
      fallbackProbes().every((p) => p.ok),
      'every probe of the fallback succeeded',
    );
    t.same([...new Set(fallbackProbes().map((p) => p.kind))], ['chat'], 'it is probed with chat probes');
    t.ok(sim.requests.length >= 8, 'the chat probes reached its server');
    const fallback = sidecar.health.models().find((m) => m.name === 'fallback')!;
    const mode = scheduler.mode(fallback);
    t.equal(mode.using, 'chat');
    t.match(mode.note, new RegExp(`GET /v1/models answered ${status}`));
    t.same(scheduler.mode(sidecar.health.models()[0]), { using: 'auto', note: null }, 'the primary keeps its configured probes');
    const statusDoc = (await (await fetch(`${sidecar.adminUrl}/status`)).json()) as {
      backends: { groups: { models: { name: string; probe: { using: string; note: string | null } }[] }[] }[];
    };
    const shown = statusDoc.backends[0].groups.flatMap((g) => g.models).find((m) => m.name === 'fallback');
    t.equal(shown?.probe.using, 'chat', '/status says the fallback is probed with chat');
    t.match(shown?.probe.note, /has no model list/, 'and why');
    t.equal(sidecar.health.get(fallback).failures, 0, 'nothing was counted against it');
    primary.setFault({ kind: 'status', status: 503 });
    const res = await post(`${sidecar.url}/model`, { messages: HELLO });
    t.equal(res.status, 200, res.text);
    t.equal(res.headers.get('x-llm-failover-provider'), 'fallback', 'and it serves when needed');
  });
}
