/**
 * When each model is probed, and how (probes/scheduler.ts `plan`, probe kind auto), in simulated
 * time: no probe where real traffic just proved the model, chat probes for the models that carry
 * traffic and the next group in line (generation is what users need), the free model list further
 * down (every idleInterval), chat for down or degraded models, nothing while cooling, and chat
 * where the server has no model list (docs/health.md, "When probes run"). Then the schedule's
 * edge intervals: a first failure, a first success, a fall by real traffic confirmed after
 * `edgeInterval`, and a down model's backoff. The probes run for real against a fake dispatcher:
 * no HTTP server.
 */
import { Readable } from 'node:stream';
import t from 'tap';
import type { BackendPlan, ModelTarget } from '../sidecar/config/plan.ts';
import type { Pools } from '../sidecar/send/pools.ts';
import { ADAPTERS } from '../sidecar/translate/index.ts';
import type { ProviderAdapter } from '../sidecar/translate/provider.ts';
import { ProbeScheduler } from '../probes/scheduler.ts';
import { probe, rig, type Rig, settle, T0, tick, unitPlan, useMockClock } from './support/unit.ts';

type Slot = Parameters<ProbeScheduler['plan']>[0];

const TWO_GROUPS = [
  { name: 'a', group: 0 },
  { name: 'b', group: 1 },
];

const FOUR = [
  { name: 'a', group: 0 },
  { name: 'b', group: 1 },
  { name: 'c', group: 2 },
  { name: 'd', group: 3 },
];

/** A dispatcher that must never be called (plan() alone sends nothing). */
const NO_NETWORK = { for: () => ({ request: () => Promise.reject(new Error('no network in the unit tier')) }) } as unknown as Pools;

function scheduler(t: { teardown(fn: () => void): void }, r: Rig, pools: Pools = NO_NETWORK): ProbeScheduler {
  const s = new ProbeScheduler(
    r.plan.backends,
    r.view,
    r.active,
    { pools, adapters: ADAPTERS as Record<ModelTarget['provider'], ProviderAdapter> },
    r.events,
    () => Date.now(),
  );
  t.teardown(() => s.stop());
  return s;
}

function slotOf(backend: BackendPlan, model: ModelTarget, extra: Partial<Slot> = {}): Slot {
  return { model, backend, downFailures: 0, ...extra };
}

/** A successful model-list probe result, as the scheduler would apply it. */
const listed = () => probe(true, { kind: 'models' });

t.test('no probe for a model that served real traffic within the interval', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(FOUR));
  const s = scheduler(t, r);
  const a = r.model('a');
  const slot = slotOf(r.backend, a);
  const { intervalMs } = a.health.probe;
  t.equal(s.plan(slot), 'chat', 'idle: a chat probe (it carries the traffic)');
  r.passive.onSuccess(a, { stream: true, ttftMs: 400, totalMs: 2_000 });
  t.equal(s.plan(slot), undefined, 'a good streamed request just now: no probe');
  tick(intervalMs - 1);
  t.equal(s.plan(slot), undefined, 'still none just under an interval later');
  tick(1);
  t.equal(s.plan(slot), 'chat', 'an interval without traffic: probed again');

  r.passive.onSuccess(a, { stream: false, totalMs: 1_500 });
  t.equal(s.plan(slot), undefined, 'a quick non-streamed answer counts too');

  const r2 = rig(t, unitPlan(FOUR));
  const s2 = scheduler(t, r2);
  const a2 = r2.model('a');
  r2.passive.onSuccess(a2, { stream: true, ttftMs: a2.health.slowThresholdMs + 1, totalMs: 20_000 });
  t.equal(s2.plan(slotOf(r2.backend, a2)), 'chat', 'a slow answer proves nothing about speed: still probed');
});

t.test('down and degraded models get chat probes', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(FOUR));
  const s = scheduler(t, r);
  const a = r.model('a');
  const slot = slotOf(r.backend, a);
  r.passive.onSuccess(a, { stream: true, ttftMs: 400, totalMs: 2_000 });
  r.view.set(a, 'unhealthy', 'test: refused');
  t.equal(s.plan(slot), 'chat', 'unhealthy: chat, at once (traffic from before the fall proves nothing)');
  r.view.set(a, 'open', 'test: breaker');
  t.equal(s.plan(slot), 'chat', 'open: chat');
  r.view.set(a, 'degraded', 'test: slow');
  tick(a.health.probe.intervalMs);
  t.equal(s.plan(slot), 'chat', 'degraded and idle: chat (latency must be measured)');
  for (const name of ['b', 'c', 'd']) {
    r.view.set(r.model(name), 'unhealthy', 'test');
    t.equal(s.plan(slotOf(r.backend, r.model(name))), 'chat', `${name} down: chat, whatever its group`);
  }
});

t.test('idle healthy models: chat for the active group and the next, the model list every idleInterval further down', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(FOUR));
  const s = scheduler(t, r);
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(r.model);
  const { intervalMs, idleIntervalMs } = a.health.probe;
  const plan = (m: ModelTarget) => s.plan(slotOf(r.backend, m));
  t.equal(plan(a), 'chat', 'a (the group carrying traffic): a chat probe');
  t.equal(plan(b), 'chat', 'b (the next group): a chat probe');
  t.equal(plan(c), 'models', 'c (two groups below): never probed yet, a model list');
  t.equal(plan(d), 'models', 'd (three below): a model list');
  for (const m of [a, b]) r.active.onProbe(m, probe(true));
  for (const m of [c, d]) r.active.onProbe(m, listed());

  tick(intervalMs);
  t.equal(plan(a), 'chat', 'a: chat every interval');
  t.equal(plan(b), 'chat', 'b: chat every interval');
  t.equal(plan(c), undefined, 'c: not at the interval');
  t.equal(plan(d), undefined, 'd: not either');
  tick(idleIntervalMs - intervalMs - 1);
  t.equal(plan(c), undefined, 'c: not just under idleInterval');
  tick(1);
  t.equal(plan(c), 'models', 'c: the model list at idleInterval');
  t.equal(plan(d), 'models', 'd: the model list at idleInterval');

  r.passive.onSuccess(a, { stream: true, ttftMs: 400, totalMs: 2_000 });
  t.equal(plan(a), undefined, 'a model proven by real traffic within the interval: no probe at all');

  // the primary goes down: group 1 carries the traffic, and c is next in line
  for (const m of [c, d]) r.active.onProbe(m, listed());
  r.view.set(a, 'unhealthy', 'test: refused');
  t.equal(plan(b), 'chat', 'b carries the traffic now: chat');
  t.equal(plan(c), 'chat', 'a down: c is next in line now, chat probes');
  t.equal(plan(d), undefined, 'd is two below: still the model list at the idle interval');
  t.equal(plan(a), 'chat', 'and a gets chat probes');
});

t.test('kind models: model lists only, at the interval near the traffic; kind chat: chat everywhere', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(FOUR, '  health:\n    probe:\n      kind: models\n'));
  const s = scheduler(t, r);
  for (const name of ['a', 'b', 'c', 'd']) t.equal(s.plan(slotOf(r.backend, r.model(name))), 'models', `${name}: the model list`);
  const r2 = rig(t, unitPlan(FOUR, '  health:\n    probe:\n      kind: chat\n'));
  const s2 = scheduler(t, r2);
  for (const name of ['a', 'b', 'c', 'd']) t.equal(s2.plan(slotOf(r2.backend, r2.model(name))), 'chat', `${name}: chat`);
});

t.test('nothing while cooling', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(FOUR));
  const s = scheduler(t, r);
  const a = r.model('a');
  const slot = slotOf(r.backend, a);
  r.passive.onFailure(a, { reason: 'rate_limited', status: 429, message: '429', retryAfterMs: 120_000 }, r.backend.settings);
  t.equal(s.plan(slot), undefined, 'cooling: no probe');
  tick(119_999);
  t.equal(s.plan(slot), undefined, 'not even after a long idle stretch inside the wait');
  t.equal(s.plan(slotOf(r.backend, a, { noModelList: { status: 404, at: T0 } })), undefined, 'nor a chat probe in place of a model list');
  tick(1);
  t.equal(r.view.state(a), 'healthy', 'the wait is over');
  t.equal(s.plan(slot), 'chat', 'probed again');
});

t.test('a stated Retry-After holds probes back even under a worse state', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(FOUR));
  const s = scheduler(t, r);
  const a = r.model('a');
  const slot = slotOf(r.backend, a);
  r.passive.onFailure(a, { reason: 'connect_refused', message: 'refused' }, r.backend.settings);
  t.equal(s.plan(slot), 'chat', 'unhealthy: chat probes');
  r.passive.onFailure(a, { reason: 'rate_limited', status: 429, message: '429', retryAfterMs: 30_000 }, r.backend.settings);
  t.equal(r.view.state(a), 'unhealthy', 'still unhealthy (it outranks cooling) ...');
  t.equal(s.plan(slot), undefined, '... but inside the stated wait: no probe');
  tick(30_000);
  t.equal(s.plan(slot), 'chat', 'the wait is over: chat probes again');
  r.passive.onFailure(a, { reason: 'overloaded', status: 529, message: '529' }, r.backend.settings);
  t.equal(s.plan(slot), 'chat', 'an assumed cooldown under unhealthy holds nothing back');
});

t.test('no model list on the server: chat in its place', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(FOUR));
  const s = scheduler(t, r);
  const a = r.model('a');
  const slot = slotOf(r.backend, a, { noModelList: { status: 405, at: T0 } });
  t.equal(s.plan(slot), 'chat', 'an idle healthy model whose server has no list: chat');
  r.passive.onSuccess(a, { stream: true, ttftMs: 400, totalMs: 2_000 });
  t.equal(s.plan(slot), undefined, 'real traffic still counts as the probe');
});

/** A response body as undici hands it over: a Readable with `dump()` (the relay drains a stream's tail with it). */
function body(text: string) {
  const readable = Readable.from([Buffer.from(text)]);
  return Object.assign(readable, {
    async dump() {
      for await (const _ of readable);
    },
  });
}

/** One fake upstream for every model: GET .../models answers `listStatus`, a chat answers a short stream (or `chatStatus`, when it is not 200). */
function fakeUpstream(listStatus: number) {
  const calls: string[] = [];
  const sse = [
    `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { role: 'assistant', content: 'ok' }, finish_reason: null }] })}\n\n`,
    `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
    'data: [DONE]\n\n',
  ].join('');
  const up = {
    calls,
    chatStatus: 200,
    pools: {
      for: (model: ModelTarget) => ({
        request: async (opts: { path: string; method: string }) => {
          calls.push(`${model.name} ${opts.method} ${opts.path}`);
          if (opts.method === 'GET') {
            return {
              statusCode: listStatus,
              headers: { 'content-type': 'application/json' },
              body: body(JSON.stringify({ error: { message: 'no such route' } })),
            };
          }
          if (up.chatStatus !== 200) {
            return {
              statusCode: up.chatStatus,
              headers: { 'content-type': 'application/json' },
              body: body(JSON.stringify({ error: { message: 'overloaded, try later' } })),
            };
          }
          return { statusCode: 200, headers: { 'content-type': 'text/event-stream' }, body: body(sse) };
        },
      }),
    } as unknown as Pools,
  };
  return up;
}

/** Lets the probe's promise chain run (the fake upstream answers at once) until `cond` holds, then lets the scheduler re-arm its timer. */
async function until(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 50 && !cond(); i++) await settle();
  for (let i = 0; i < 3; i++) await settle();
  return cond();
}

/** Advances the mock clock by `ms` in small steps, letting every probe that starts run to its end. */
async function advance(ms: number, step = 50): Promise<void> {
  for (let done = 0; done < ms; done += step) {
    tick(step);
    for (let i = 0; i < 8; i++) await settle();
  }
}

/** Starts the schedule and runs the clock to the end of the first probe (it lands at random in the first interval); from then on the steps of `advance` are aligned on the schedule. */
async function started(s: ProbeScheduler): Promise<void> {
  s.start();
  for (let i = 0; i < 1_000 && s.log.length === 0; i++) await advance(50);
}

/** Three groups: the model list is only for c, the one two groups below the traffic. */
const THREE = [
  { name: 'a', group: 0 },
  { name: 'b', group: 1 },
  { name: 'c', group: 2 },
];

for (const status of [404, 405]) {
  t.test(`a ${status} model list switches the model to chat probes, and counts no failure`, async (t) => {
    useMockClock(t);
    const r = rig(t, unitPlan(THREE));
    const c = r.model('c');
    const up = fakeUpstream(status);
    const s = scheduler(t, r, up.pools);
    const ofC = () => s.log.filter((p) => p.model === 'c');
    const callsOfC = () => up.calls.filter((x) => x.startsWith('c '));
    t.same(s.mode(c), { using: 'auto', note: null }, 'auto before any probe');
    s.start();
    tick(c.health.probe.intervalMs); // the first tick lands somewhere in the first interval
    t.ok(await until(() => ofC().length === 1), 'one probe ran');
    t.same(callsOfC(), ['c GET /v1/models', 'c POST /v1/chat/completions'], 'the model list, then a chat probe at once');
    t.match(ofC()[0], { model: 'c', kind: 'chat', ok: true, trigger: 'schedule' }, 'the probe that counts is the chat one');
    t.equal(r.view.state(c), 'healthy', 'still healthy');
    t.equal(r.view.get(c).probe.failStreak, 0, `the ${status} is no failure of the model`);
    t.match(s.mode(c), { using: 'chat', note: new RegExp(`answered ${status}`) }, '/status says so, and why');

    up.calls.length = 0;
    const { idleIntervalMs, intervalMs, jitterPercent } = c.health.probe;
    await advance((idleIntervalMs + intervalMs) * (1 + jitterPercent / 100), 500);
    t.ok(ofC().length >= 2, 'the next probe of the far model ran');
    t.same([...new Set(callsOfC())], ['c POST /v1/chat/completions'], 'from then on: chat only, no model list');
  });
}

t.test('a model list that fails for real (500) is a failure, and no switch', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(THREE));
  const c = r.model('c');
  const up = fakeUpstream(500);
  const s = scheduler(t, r, up.pools);
  s.start();
  tick(c.health.probe.intervalMs);
  t.ok(await until(() => s.log.filter((p) => p.model === 'c').length === 1), 'one probe ran');
  t.same(
    up.calls.filter((x) => x.startsWith('c ')),
    ['c GET /v1/models'],
    'no chat probe in its place',
  );
  t.match(
    s.log.find((p) => p.model === 'c'),
    { kind: 'models', ok: false },
    'a failed model-list probe',
  );
  t.equal(r.view.get(c).probe.failStreak, 1, 'counted toward unhealthyThreshold');
  t.same(s.mode(c), { using: 'auto', note: null }, 'still auto');
});

// ---- edge intervals: transitions confirmed in seconds, thresholds unchanged ----

const NO_JITTER = '  health:\n    probe:\n      jitterPercent: 0\n';

/** The wait from each scheduled probe's start to the next one's, for one model, rounded down to 100 ms (the steps of `advance`). */
function gaps(s: ProbeScheduler, model: string, from = 0): number[] {
  const runs = s.log.filter((p) => p.model === model && p.startedAt >= from);
  return runs.slice(1).map((p, i) => Math.floor((p.startedAt - runs[i].startedAt) / 100) * 100);
}

t.test(
  'a first failed probe is confirmed after the edge interval; a down model is probed on a backoff; a first success is confirmed after the edge interval',
  async (t) => {
    useMockClock(t);
    const r = rig(t, unitPlan([{ name: 'a', group: 0 }], NO_JITTER));
    const a = r.model('a');
    const { intervalMs, edgeIntervalMs, unhealthyThreshold, healthyThreshold } = a.health.probe;
    t.same([intervalMs, edgeIntervalMs, unhealthyThreshold, healthyThreshold], [10_000, 1_000, 2, 2], 'the defaults');
    const up = fakeUpstream(200);
    const s = scheduler(t, r, up.pools);
    await started(s);
    t.equal(s.log.length, 1, 'the first probe ran in the first interval');
    await advance(intervalMs);
    t.same(gaps(s, 'a'), [intervalMs], 'healthy and passing: every interval');

    up.chatStatus = 503; // the model's chat fails; its model list would still answer 200
    const failedFrom = s.log.at(-1)!.startedAt;
    await advance(intervalMs);
    t.equal(s.log.at(-1)!.ok, false, 'the next probe failed');
    t.equal(r.view.state(a), 'healthy', 'one failure takes nothing down (unhealthyThreshold 2)');
    await advance(edgeIntervalMs);
    t.equal(r.view.state(a), 'unhealthy', 'the confirming probe, one edge interval later, took it down');
    t.match(r.view.get(a).cause, /probe failed: upstream_5xx \(upstream 503\)/);
    await advance(40_000);
    t.same(
      gaps(s, 'a', failedFrom),
      [intervalMs, 1_000, ...Array(10).fill(1_000), 2_000, 4_000, 8_000, 10_000],
      'the confirming probe after 1 s; down: ten probes at the edge interval (most outages are short), then a backoff doubling up to the interval',
    );

    up.chatStatus = 200; // healed
    const lastFailed = s.log.at(-1)!.startedAt;
    const healedAt = Date.now();
    await advance(intervalMs);
    const after = s.log.filter((p) => p.startedAt > healedAt);
    t.equal(after.length >= 2, true, 'probes ran after the heal');
    t.match(after[0], { ok: true }, 'a first success');
    t.equal(Math.floor((after[1].startedAt - after[0].startedAt) / 100) * 100, edgeIntervalMs, 'confirmed after the edge interval');
    t.equal(r.view.state(a), 'healthy', `back after ${healthyThreshold} successes in a row`);
    t.ok(after[0].startedAt - lastFailed <= intervalMs, 'the first success came at most one interval after the last failure');
    await advance(2 * intervalMs);
    t.same(gaps(s, 'a', after[1].startedAt), [intervalMs, intervalMs], 'healthy again: every interval');
  },
);

t.test('a single failure among successes is confirmed quickly and changes nothing (no flapping)', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan([{ name: 'a', group: 0 }], NO_JITTER));
  const a = r.model('a');
  const up = fakeUpstream(200);
  const s = scheduler(t, r, up.pools);
  await started(s);
  up.chatStatus = 503;
  await advance(a.health.probe.intervalMs);
  t.equal(s.log.at(-1)!.ok, false, 'one probe failed');
  up.chatStatus = 200;
  const from = s.log.at(-1)!.startedAt;
  await advance(3 * a.health.probe.intervalMs);
  t.same(gaps(s, 'a', from).slice(0, 3), [1_000, 10_000, 10_000], 'confirmed after 1 s, then the interval again');
  t.same(
    r.transitions.filter((e) => e.model.name === 'a'),
    [],
    'never down',
  );
});

t.test('a model taken down by real traffic gets its first probe after the edge interval', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO_GROUPS, NO_JITTER));
  const a = r.model('a');
  const up = fakeUpstream(200);
  const s = scheduler(t, r, up.pools);
  await started(s);
  for (let i = 0; i < 1_000 && !s.log.some((p) => p.model === 'a'); i++) await advance(50);
  await advance(2_000);
  const before = s.log.filter((p) => p.model === 'a').length;
  t.equal(before, 1, 'probed once so far');
  const fellAt = Date.now();
  r.passive.onFailure(a, { reason: 'connect_refused', message: 'refused' }, r.backend.settings);
  t.equal(r.view.state(a), 'unhealthy', 'a refused user request took it down');
  await advance(1_000);
  const next = s.log.filter((p) => p.model === 'a' && p.startedAt >= fellAt);
  t.equal(next.length, 1, 'probed within the edge interval of the fall, not at the next interval');
  t.equal(Math.floor((next[0].startedAt - fellAt) / 100) * 100, 1_000, 'one edge interval after the fall');
  t.equal(r.view.state(a), 'unhealthy', 'one success brings nothing back (healthyThreshold 2)');
  await advance(1_000);
  t.equal(r.view.state(a), 'healthy', 'the second, one edge interval later, does');
  t.equal(s.log.filter((p) => p.model === 'a' && p.startedAt >= fellAt).length, 2, 'two probes after the fall, no more');
});

t.test('edgeInterval is a setting, and never longer than the interval', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan([{ name: 'a', group: 0 }], '  health:\n    probe:\n      interval: 2s\n      edgeInterval: 5s\n'));
  const s = scheduler(t, r);
  const a = r.model('a');
  t.equal(a.health.probe.edgeIntervalMs, 5_000, 'read from the FailoverPolicy');
  r.view.set(a, 'unhealthy', 'test');
  t.equal(s.delay(slotOf(r.backend, a)), 2_000, 'a down model: at most the interval');
  t.equal(s.delay(slotOf(r.backend, a, { confirm: true })), 2_000, 'a transition to confirm: at most the interval');
});
