/**
 * Health ahead of user traffic: probes, breakers and cooldowns mark models up and down, and
 * selection skips a model that is down, slow or rate-limited before a user request pays for it.
 */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { waitForHealth } from './support/wait.ts';
import { loadPlan } from '../sidecar/config/load.ts';
import { startSidecar } from '../sidecar/runtime/main.ts';
import type { HealthEvent } from '../sidecar/observe/events.ts';
import { createLogger } from '../sidecar/observe/log.ts';
import type { SimulatedProvider } from '../simulator/index.ts';
import { type Harness, HELLO, startHarness } from './support/harness.ts';
import { post, PROBE_PROMPT } from './support/wire.ts';
import { backendYaml, LOOPBACK_SERVER, policyYaml } from './support/yaml.ts';

const PROMPT = PROBE_PROMPT;
const FAST_PROBES = `  health:
    probe:
      interval: 100ms
      idleInterval: 100ms
      timeout: 300ms
      jitterPercent: 0
      healthyThreshold: 2
      unhealthyThreshold: 2
    slowThreshold: 250ms
    suspectAfter: 250ms
    breaker:
      resetTimeout: 300ms
`;

const TWO = [
  { name: 'primary', group: 0 },
  { name: 'fallback', group: 1 },
];

/** Chat requests that came from users, not from probes. */
const userRequests = (sim: SimulatedProvider, since = 0) =>
  sim.requests.filter((r) => r.at >= since && r.body?.messages?.[0]?.content !== PROMPT);
const probeRequests = (sim: SimulatedProvider) => sim.requests.filter((r) => r.body?.messages?.[0]?.content === PROMPT);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test(
  'an outage of an idle primary is found by probes; after detection no user request reaches it; recovery brings traffic back',
  async (t) => {
    const h = await startHarness(TWO, { policy: FAST_PROBES, probes: true });
    t.teardown(() => h.close());
    h.sims.primary.setFault({ kind: 'status', status: 503 });
    const down = await waitForHealth(h.sidecar, 'primary', 'unhealthy');
    t.match(down.cause, /probe failed: upstream_5xx \(upstream 503\)/);
    const detectedAt = Date.now();
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
      statuses.push(res.status);
      t.equal(res.headers.get('x-llm-failover-attempts'), '1', 'served by the fallback at the first attempt');
    }
    t.same(statuses, Array(10).fill(200), 'every user request during the outage succeeded');
    t.equal(userRequests(h.sims.primary, detectedAt).length, 0, 'zero user requests reached the primary after detection');
    t.equal(userRequests(h.sims.fallback).length, 10);

    h.sims.primary.clearFault();
    const up = await waitForHealth(h.sidecar, 'primary', 'healthy');
    t.match(up.cause, /probe succeeded 2 times in a row/);
    t.ok(probeRequests(h.sims.primary).length >= 2, 'recovery was proven by chat probes, not user requests');
    const back = await post(`${h.sidecar.url}/model`, { messages: HELLO });
    t.equal(back.headers.get('x-llm-failover-provider'), 'primary', 'traffic returns to the primary by itself');
  },
);

t.test('a slowed model is marked degraded and traffic moves to its healthy peer; it comes back when fast again', async (t) => {
  const h = await startHarness(
    [
      { name: 'primary', group: 0 },
      { name: 'peer', group: 0 },
    ],
    {
      extraYaml: // slow (over 250 ms) is not stuck (2 s): the model is degraded, not down
        policyYaml(FAST_PROBES.replace('timeout: 300ms', 'timeout: 2s').replace('suspectAfter: 250ms', 'suspectAfter: 2s')),
      probes: true,
    },
  );
  t.teardown(() => h.close());
  h.sims.primary.setFault({ kind: 'slowFirstToken', delayMs: 500 });
  const degraded = waitForHealth(h.sidecar, 'primary', 'degraded');
  // streamed user traffic measures time to first token; two slow samples in a row mark it
  for (let i = 0; i < 6 && h.sidecar.health.state(h.sidecar.health.models()[0]) === 'healthy'; i++) {
    const stream = await h.client.chat.completions.create({ model: undefined as unknown as string, messages: HELLO, stream: true });
    for await (const _ of stream);
  }
  const e = await degraded;
  t.match(e.cause, /first token after \d+ ms, over the 250 ms threshold 2 times in a row/);
  const served = new Set<string>();
  for (let i = 0; i < 6; i++)
    served.add((await post(`${h.sidecar.url}/model`, { messages: HELLO })).headers.get('x-llm-failover-provider')!);
  t.same([...served], ['peer'], 'a degraded model is used only when no healthy peer is left');
  h.sims.primary.clearFault();
  await waitForHealth(h.sidecar, 'primary', 'healthy');
  t.pass('fast chat probes bring it back');
});

t.test('a flaky model (1 probe in 10 fails) does not flap', async (t) => {
  const h = await startHarness([{ name: 'flaky', group: 0 }], {
    policy: FAST_PROBES.replace('interval: 100ms', 'interval: 30ms').replace(
      '      idleInterval: 100ms\n',
      '      idleInterval: 30ms\n      kind: chat\n',
    ),
    probes: true,
  });
  t.teardown(() => h.close());
  const changes: HealthEvent[] = [];
  h.sidecar.events.on('health', (e) => changes.push(e));
  const scheduler = h.sidecar.probes;
  while (scheduler.log.length < 40) {
    const before = scheduler.log.length;
    while (scheduler.log.length < before + 9) await sleep(10);
    h.sims.flaky.setFault({ kind: 'status', status: 500 }, { times: 1 });
  }
  t.ok(scheduler.log.filter((p) => !p.ok).length >= 3, 'several probes failed');
  t.same(
    changes.map((c) => `${c.from}->${c.to}`),
    [],
    'the state never changed',
  );
});

t.test('a flaky model under real traffic (1 request in 10 fails) keeps its traffic', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  for (let i = 0; i < 40; i++) {
    if (i % 10 === 5) h.sims.primary.setFault({ kind: 'status', status: 500 }, { times: 1 });
    const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
    t.equal(res.status, 200);
  }
  t.equal(h.sidecar.health.state(h.sidecar.health.models()[0]), 'healthy', 'its breaker stays closed: 4 failures in 40');
  t.ok(userRequests(h.sims.primary).length >= 40, 'the primary kept its traffic');
});

t.test('a 429 with Retry-After cools the model for that long, unprobed, then it returns by itself', async (t) => {
  const h = await startHarness(TWO, { policy: FAST_PROBES, probes: true });
  t.teardown(() => h.close());
  const events: HealthEvent[] = [];
  h.sidecar.events.on('health', (e) => events.push(e));
  // until the user's request is answered (not `times: 1`: the primary's own chat probe may meet it first)
  h.sims.primary.setFault({ kind: 'status', status: 429, headers: { 'retry-after-ms': '600' } });
  const first = await post(`${h.sidecar.url}/model`, { messages: HELLO });
  // (a probe may have met the 429 first: the primary cools either way)
  h.sims.primary.clearFault();
  t.equal(first.headers.get('x-llm-failover-provider'), 'fallback');
  const primary = h.sidecar.health.models()[0];
  t.equal(h.sidecar.health.state(primary), 'cooling');
  const cooled = events.findLast((e) => e.model.name === 'primary' && e.to === 'cooling')!;
  const until = cooled.until!;
  t.ok(until - cooled.at > 500 && until - cooled.at <= 600, 'cooling for the retry-after-ms of 600');
  while (!events.some((e) => e.model.name === 'primary' && e.to === 'healthy' && e.at >= cooled.at)) await sleep(20);
  const healthy = events.find((e) => e.model.name === 'primary' && e.to === 'healthy' && e.at >= cooled.at)!;
  t.ok(healthy.at >= until, 'not before the Retry-After ended');
  t.equal(
    h.sidecar.probes.log.filter((p) => p.model === 'primary' && p.startedAt > cooled.at && p.startedAt < until).length,
    0,
    'no probe started while cooling',
  );
  t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).headers.get('x-llm-failover-provider'), 'primary');
});

t.test('with probes off the breaker trips from real traffic alone; one request is the half-open trial', async (t) => {
  const h = await startHarness(TWO, { policy: '  health:\n    breaker:\n      resetTimeout: 300ms\n' });
  t.teardown(() => h.close());
  h.sims.primary.setFault({ kind: 'status', status: 500 });
  const opened = waitForHealth(h.sidecar, 'primary', 'open');
  for (let i = 0; i < 3; i++) t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).status, 200);
  const e = await opened;
  t.match(e.cause, /breaker opened: 3 of 3 attempts failed/);
  const before = h.sims.primary.requests.length;
  for (let i = 0; i < 3; i++) await post(`${h.sidecar.url}/model`, { messages: HELLO });
  t.equal(h.sims.primary.requests.length, before, 'an open breaker is skipped');
  h.sims.primary.clearFault();
  await sleep(400); // past resetTimeout: half-open
  const parallel = await Promise.all(Array.from({ length: 4 }, () => post(`${h.sidecar.url}/model`, { messages: HELLO })));
  t.equal(parallel.filter((r) => r.headers.get('x-llm-failover-provider') === 'primary').length, 1, 'exactly one request was the trial');
  t.equal(h.sidecar.health.state(h.sidecar.health.models()[0]), 'healthy', 'the trial closed the breaker');
});

t.test('a sudden outage under steady traffic opens the breaker after 5 failures in a row, not after the window ages', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  for (let i = 0; i < 30; i++) await post(`${h.sidecar.url}/model`, { messages: HELLO });
  h.sims.primary.setFault({ kind: 'status', status: 503 });
  const opened = waitForHealth(h.sidecar, 'primary', 'open');
  for (let i = 0; i < 8; i++) t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).status, 200);
  const e = await opened;
  t.match(e.cause, /breaker opened: 5 attempts failed in a row/, '30 successes in the window do not delay it');
  t.equal(userRequests(h.sims.primary).length, 35, 'the primary saw 30 successes and 5 failures, then no more');
});

t.test('with probes on, the half-open trial is a probe, never a user request', async (t) => {
  const h = await startHarness(TWO, { policy: FAST_PROBES, probes: true });
  t.teardown(() => h.close());
  // until the breaker opens (not `times: 3`: the primary's own chat probes take from a count too)
  h.sims.primary.setFault({ kind: 'status', status: 500 });
  const opened = waitForHealth(h.sidecar, 'primary', 'open');
  // concurrent traffic, so the primary keeps real evidence and the breaker sees 3 failures
  await Promise.all(Array.from({ length: 3 }, () => post(`${h.sidecar.url}/model`, { messages: HELLO })));
  await opened;
  h.sims.primary.clearFault();
  const openedAt = Date.now();
  const healthy = await waitForHealth(h.sidecar, 'primary', 'healthy');
  t.match(healthy.cause, /breaker closed|probe succeeded/);
  t.equal(userRequests(h.sims.primary, openedAt).length, 0, 'no user request was the guinea pig');
  t.equal(healthy.origin?.kind, 'probe', 'a probe closed it (the half-open trial, or a scheduled chat probe that came first)');
});

t.test('a model whose secret was wrong heals when the mounted secret changes', async (t) => {
  const { startOpenAISimulator } = await import('../simulator/index.ts');
  const sim = await startOpenAISimulator({ model: 'gpt-4o', apiKey: 'sk-right' });
  const fallback = await startOpenAISimulator({ model: 'backup' });
  const dir = mkdtempSync(join(tmpdir(), 'secrets-'));
  mkdirSync(join(dir, 'openai-secret'));
  writeFileSync(join(dir, 'openai-secret', 'Authorization'), 'Bearer sk-wrong');
  const yaml = backendYaml(TWO, { primary: sim.port, fallback: fallback.port }).replace(
    'kind: Inline\n            inline: sk-test-planted-secret-0123456789',
    'kind: SecretRef\n            secretRef: {name: openai-secret}',
  );
  const plan = loadPlan([{ name: 't.yaml', text: yaml + LOOPBACK_SERVER + policyYaml(FAST_PROBES) }], {
    secretsDir: dir,
    secretPollMs: 50,
  });
  const sidecar = await startSidecar({ plan, logger: createLogger('silent') });
  t.teardown(async () => {
    await sidecar.close();
    await sim.close();
    await fallback.close();
  });
  const h = { sidecar } as Harness;
  const down = waitForHealth(h.sidecar, 'primary', 'unhealthy');
  const res = await post(`${sidecar.url}/model`, { messages: HELLO });
  t.equal(res.headers.get('x-llm-failover-provider'), 'fallback', 'a 401 fails over');
  t.match((await down).cause, /auth \(upstream 401\)/);
  await sleep(300);
  t.equal(sidecar.health.state(sidecar.health.models()[0]), 'unhealthy', 'it stays down while the secret is wrong');
  writeFileSync(join(dir, 'openai-secret', 'Authorization'), 'Bearer sk-right');
  await waitForHealth(h.sidecar, 'primary', 'healthy');
  t.equal(
    (await post(`${sidecar.url}/model`, { messages: HELLO })).headers.get('x-llm-failover-provider'),
    'primary',
    'the rotated key serves',
  );
});

t.test('probes are skipped for models that just served real traffic; the idle next group gets chat probes', async (t) => {
  const h = await startHarness(TWO, { policy: FAST_PROBES, probes: true });
  t.teardown(() => h.close());
  const start = Date.now();
  while (Date.now() - start < 800) await post(`${h.sidecar.url}/model`, { messages: HELLO });
  const log = h.sidecar.probes.log.filter((p) => p.at > start + 150);
  t.equal(log.filter((p) => p.model === 'primary').length, 0, 'the busy primary was not probed');
  const fallbackProbes = log.filter((p) => p.model === 'fallback');
  t.ok(fallbackProbes.length >= 3, 'the idle fallback was probed');
  t.same([...new Set(fallbackProbes.map((p) => p.kind))], ['chat'], 'with chat probes: generation is what the next in line must prove');
  t.ok(probeRequests(h.sims.fallback).length >= 3, 'the probe prompt reached the fallback');
});

t.test(
  'generation hangs on the busy primary (its model list still answers): a stuck request triggers the probe that marks it down, and requests in flight move on',
  async (t) => {
    const h = await startHarness(TWO, { policy: `${FAST_PROBES}  timeouts:\n    response: 60s\n`, probes: true });
    t.teardown(() => h.close());
    const stop = { now: false };
    const results: { status: number; by: string | null }[] = [];
    const loops = Array.from({ length: 4 }, async () => {
      while (!stop.now) {
        const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
        results.push({ status: res.status, by: res.headers.get('x-llm-failover-provider') });
      }
    });
    await sleep(200);
    h.sims.primary.setFault({ kind: 'slowFirstToken', delayMs: 30_000 });
    const down = await waitForHealth(h.sidecar, 'primary', 'unhealthy');
    t.match(
      down.cause,
      /probe failed: first_token_timeout while a request was stuck on it/,
      'suspicion: a chat probe confirmed the stuck request',
    );
    const suspicion = h.sidecar.probes.log.find((p) => p.model === 'primary' && p.trigger === 'suspicion')!;
    t.equal(
      userRequests(h.sims.primary, suspicion.startedAt + 50).length,
      0,
      'while the suspicion probe ran, new requests went elsewhere instead of piling onto the hang',
    );
    await sleep(300);
    stop.now = true;
    await Promise.all(loops);
    t.same(
      results.filter((r) => r.status !== 200),
      [],
      'no request failed',
    );
    const requestLines = h.logs.filter((l) => l.includes('"event":"request"'));
    const moved = requestLines.filter((l) => l.includes('"outcome":"marked_down"'));
    t.ok(moved.length >= 1, `requests stuck on the primary were moved (${moved.length})`);
    t.equal(requestLines.filter((l) => l.includes('"outcome":"response_timeout"')).length, 0, 'none waited for the response timeout');
    h.sidecar.probes.stop();
    for (let i = 0; i < 100 && h.sims.primary.inFlight() > 0; i++) await sleep(20);
    t.equal(h.sims.primary.inFlight(), 0, 'nothing is left hanging on the primary');
  },
);
