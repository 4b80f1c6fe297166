/**
 * When each model is probed, and how (probes/scheduler.ts `plan`, probe kind auto), in simulated
 * time: no probe where real traffic just proved the model, chat for down or degraded models, the
 * free model list for idle healthy ones (every interval while they may be needed next, every
 * idleInterval further down), nothing while cooling, and chat where the server has no model list
 * (docs/health.md, "When probes run"). The model-list switch runs the real probes against a fake
 * dispatcher: no HTTP server.
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
  return { model, backend, ...extra };
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
  t.equal(s.plan(slot), 'models', 'idle: a model-list probe');
  r.passive.onSuccess(a, { stream: true, ttftMs: 400, totalMs: 2_000 });
  t.equal(s.plan(slot), undefined, 'a good streamed request just now: no probe');
  tick(intervalMs - 1);
  t.equal(s.plan(slot), undefined, 'still none just under an interval later');
  tick(1);
  t.equal(s.plan(slot), 'models', 'an interval without traffic: probed again');

  r.passive.onSuccess(a, { stream: false, totalMs: 1_500 });
  t.equal(s.plan(slot), undefined, 'a quick non-streamed answer counts too');

  const r2 = rig(t, unitPlan(FOUR));
  const s2 = scheduler(t, r2);
  const a2 = r2.model('a');
  r2.passive.onSuccess(a2, { stream: true, ttftMs: a2.health.slowThresholdMs + 1, totalMs: 20_000 });
  t.equal(s2.plan(slotOf(r2.backend, a2)), 'models', 'a slow answer proves nothing about speed: still probed');
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

t.test('idle healthy models: the model list, every interval near the traffic, every idleInterval further down', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(FOUR));
  const s = scheduler(t, r);
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(r.model);
  const { intervalMs, idleIntervalMs } = a.health.probe;
  const plan = (m: ModelTarget) => s.plan(slotOf(r.backend, m));
  for (const m of [a, b, c, d]) t.equal(plan(m), 'models', `${m.name}: never probed yet, a model list`);
  for (const m of [a, b, c, d]) r.active.onProbe(m, listed());

  tick(intervalMs);
  t.equal(plan(a), 'models', 'a (the group carrying traffic): every interval');
  t.equal(plan(b), 'models', 'b (the next group): every interval');
  t.equal(plan(c), undefined, 'c (two groups below): not at the interval');
  t.equal(plan(d), undefined, 'd (three below): not either');
  tick(idleIntervalMs - intervalMs - 1);
  t.equal(plan(c), undefined, 'c: not just under idleInterval');
  tick(1);
  t.equal(plan(c), 'models', 'c: at idleInterval');
  t.equal(plan(d), 'models', 'd: at idleInterval');

  // the primary goes down: group 1 carries the traffic, and c is next in line
  for (const m of [a, b, c, d]) r.active.onProbe(m, listed());
  r.view.set(a, 'unhealthy', 'test: refused');
  t.equal(plan(c), 'models', 'a down: c is one group below the traffic now, every interval');
  t.equal(plan(d), undefined, 'd is two below: still the idle interval');
  t.equal(plan(a), 'chat', 'and a gets chat probes');
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
  t.equal(s.plan(slot), 'models', 'probed again');
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

/** One fake upstream for every model: GET .../models answers `listStatus`, a chat answers a short stream. */
function fakeUpstream(listStatus: number) {
  const calls: string[] = [];
  const sse = [
    `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { role: 'assistant', content: 'ok' }, finish_reason: null }] })}\n\n`,
    `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
    'data: [DONE]\n\n',
  ].join('');
  const pools = {
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
        return { statusCode: 200, headers: { 'content-type': 'text/event-stream' }, body: body(sse) };
      },
    }),
  } as unknown as Pools;
  return { pools, calls };
}

/** Lets the probe's promise chain run (the fake upstream answers at once) until `cond` holds, then lets the scheduler re-arm its timer. */
async function until(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 50 && !cond(); i++) await settle();
  for (let i = 0; i < 3; i++) await settle();
  return cond();
}

for (const status of [404, 405]) {
  t.test(`a ${status} model list switches the model to chat probes, and counts no failure`, async (t) => {
    useMockClock(t);
    const r = rig(t, unitPlan([{ name: 'a', group: 0 }]));
    const a = r.model('a');
    const up = fakeUpstream(status);
    const s = scheduler(t, r, up.pools);
    t.same(s.mode(a), { using: 'auto', note: null }, 'auto before any probe');
    s.start();
    tick(a.health.probe.intervalMs); // the first tick lands somewhere in the first interval
    t.ok(await until(() => s.log.length === 1), 'one probe ran');
    t.same(up.calls, ['a GET /v1/models', 'a POST /v1/chat/completions'], 'the model list, then a chat probe at once');
    t.match(s.log[0], { model: 'a', kind: 'chat', ok: true, trigger: 'schedule' }, 'the probe that counts is the chat one');
    t.equal(r.view.state(a), 'healthy', 'still healthy');
    t.equal(r.view.get(a).probe.failStreak, 0, `the ${status} is no failure of the model`);
    t.match(s.mode(a), { using: 'chat', note: new RegExp(`answered ${status}`) }, '/status says so, and why');

    up.calls.length = 0;
    const maxInterval = a.health.probe.intervalMs * (1 + a.health.probe.jitterPercent / 100);
    tick(maxInterval);
    t.ok(await until(() => s.log.length === 2), 'the next scheduled probe ran');
    t.same(up.calls, ['a POST /v1/chat/completions'], 'from then on: chat only, no model list');
  });
}

t.test('a model list that fails for real (500) is a failure, and no switch', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan([{ name: 'a', group: 0 }]));
  const a = r.model('a');
  const up = fakeUpstream(500);
  const s = scheduler(t, r, up.pools);
  s.start();
  tick(a.health.probe.intervalMs);
  t.ok(await until(() => s.log.length === 1), 'one probe ran');
  t.same(up.calls, ['a GET /v1/models'], 'no chat probe in its place');
  t.match(s.log[0], { kind: 'models', ok: false }, 'a failed model-list probe');
  t.equal(r.view.get(a).probe.failStreak, 1, 'counted toward unhealthyThreshold');
  t.same(s.mode(a), { using: 'auto', note: null }, 'still auto');
});
