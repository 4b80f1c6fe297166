/**
 * The common real outage, end to end: a primary whose chat endpoint answers 503 while its model
 * list answers 200. Idle, it is found by chat probes (probe kind auto proves generation on the
 * group carrying traffic and the next) before any user request pays for it; healed, it is serving
 * again after a few edge intervals (docs/health.md, "When probes run"). The outage is a small
 * proxy in front of the primary's simulator that fails chat requests only. Counted in probes, not
 * in wall time.
 */
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import type { HealthEvent } from '../sidecar/observe/events.ts';
import { HELLO, startHarness } from './support/harness.ts';
import { sleep, waitForHealth } from './support/wait.ts';
import { post, PROBE_PROMPT } from './support/wire.ts';
import { TEST_KEY } from './support/yaml.ts';

const PROMPT = PROBE_PROMPT;

/** Forwards everything to the simulator on `target`; while `broken`, a chat request gets OpenAI's 503 instead. */
async function chatOutageProxy() {
  const state = { target: 0, broken: false, userChats: 0, listAnswers: [] as number[] };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const isChat = req.method === 'POST';
      if (isChat && !body.toString('utf8').includes(PROMPT)) state.userChats++;
      if (isChat && state.broken) {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'The engine is currently overloaded', type: 'server_error', code: null } }));
        return;
      }
      const up = httpRequest({ host: '127.0.0.1', port: state.target, method: req.method, path: req.url, headers: req.headers }, (r) => {
        if (!isChat) state.listAnswers.push(r.statusCode ?? 0);
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { state, port: (server.address() as AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const POLICY = `  health:
    probe:
      interval: 400ms
      idleInterval: 400ms
      edgeInterval: 50ms
      timeout: 300ms
      jitterPercent: 0
      healthyThreshold: 2
      unhealthyThreshold: 2
`;

t.test(
  'an idle primary whose chat answers 503 while its model list answers 200: down by probes before any user request, back after a few edge intervals',
  async (t) => {
    const proxy = await chatOutageProxy();
    t.teardown(() => proxy.close());
    const h = await startHarness(
      [
        { name: 'primary', group: 0 },
        { name: 'fallback', group: 1 },
      ],
      {
        probes: true,
        policy: POLICY,
        mapYaml: (yaml, ports) => {
          proxy.state.target = ports.primary;
          return yaml.replace(`port: ${ports.primary}`, `port: ${proxy.port}`);
        },
      },
    );
    t.teardown(() => h.close());
    const health: HealthEvent[] = [];
    h.sidecar.events.on('health', (e) => e.model.name === 'primary' && health.push(e));

    proxy.state.broken = true;
    const down = await waitForHealth(h.sidecar, 'primary', 'unhealthy');
    t.match(down.cause, /probe failed: upstream_5xx \(upstream 503\)/, 'the probes found the 503');
    t.equal(proxy.state.userChats, 0, 'before any user request');
    const list = await fetch(`http://127.0.0.1:${proxy.port}/v1/models`, { headers: { authorization: `Bearer ${TEST_KEY}` } });
    t.equal(list.status, 200, 'while its model list answers 200 (a model-list probe would have seen nothing)');
    const log = () => h.sidecar.probes.log.filter((p) => p.model === 'primary');
    t.same([...new Set(log().map((p) => p.kind))], ['chat'], 'the idle primary got chat probes only');

    const during = await post(`${h.sidecar.url}/model`, { messages: HELLO });
    t.equal(during.status, 200, 'a user request during the outage is served');
    t.equal(during.headers.get('x-llm-failover-provider'), 'fallback', 'by the fallback');
    t.equal(during.headers.get('x-llm-failover-attempts'), '1', 'at the first attempt: the primary was known down');
    t.equal(proxy.state.userChats, 0, 'no user request reached the primary');

    proxy.state.broken = false;
    const healedAt = Date.now();
    let servedAt: number | undefined;
    for (let i = 0; i < 200 && servedAt === undefined; i++) {
      const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
      if (res.headers.get('x-llm-failover-provider') === 'primary') servedAt = Date.now();
      else await sleep(10);
    }
    t.ok(servedAt !== undefined, 'the healed primary serves again');
    // probes that answered after the heal (one may have started just before it) and started before the primary served
    const between = log().filter((p) => p.at >= healedAt && p.startedAt <= (servedAt ?? 0));
    t.ok(
      between.length <= 3,
      `healthyThreshold (2) probes, and at most one more in flight, between the heal and the first request it served (${between.length})`,
    );
    t.equal(between.filter((p) => p.ok).length, 2, 'healthyThreshold (2) successful chat probes, no more');
    const up = health.find((e) => e.to === 'healthy');
    t.match(up?.cause, /probe succeeded 2 times in a row/, 'the thresholds still decide');
  },
);
