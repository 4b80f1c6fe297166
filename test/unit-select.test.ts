/**
 * Selection (sidecar/select/balancer.ts) over a health view, in simulated time: priority groups
 * in order, an even round robin inside a group, degraded models only when no healthy peer is
 * left, the next group only when a group has nothing usable, every model as a last resort in
 * priority order, never one inside its provider's stated Retry-After, and a half-open breaker's
 * trial handed to exactly one request when no probe runs it (docs/health.md, docs/architecture.md).
 */
import t from 'tap';
import { HealthMonitor } from '../sidecar/health/monitor.ts';
import { Events } from '../sidecar/observe/events.ts';
import { Balancer } from '../sidecar/select/balancer.ts';
import { failure, PROBES_OFF, rig, settle, T0, tick, unitPlan, useMockClock } from './support/unit.ts';

const MODELS = [
  { name: 'a', group: 0 },
  { name: 'b', group: 0 },
  { name: 'c', group: 0 },
  { name: 'd', group: 1 },
  { name: 'e', group: 1 },
  { name: 'f', group: 2 },
];

function count(names: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of names) out[n] = (out[n] ?? 0) + 1;
  return out;
}

t.test('priority order: every request starts in the first group, and walks the groups in order', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(MODELS));
  t.same(new Set(r.firstPicks(30)), new Set(['a', 'b', 'c']), 'first picks only ever come from group 0');
  for (let i = 0; i < 6; i++) {
    const order = r.order();
    t.same(new Set(order.slice(0, 3)), new Set(['a', 'b', 'c']), 'group 0 first');
    t.same(new Set(order.slice(3, 5)), new Set(['d', 'e']), 'then group 1');
    t.same(order.slice(5), ['f'], 'then group 2, and nothing twice');
  }
  const cursor = r.balancer.cursor(r.backend);
  for (let pick = cursor.next(); pick; pick = cursor.next())
    t.equal(pick.lastResort, false, `${pick.model.name}: usable, not a last resort`);
});

t.test('round robin inside a group is even, and shared by all requests', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(MODELS));
  t.same(count(r.firstPicks(300)), { a: 100, b: 100, c: 100 }, '300 requests: 100 each');
  // the second pick of a request rotates too: a failed-over request does not pile onto one peer
  const seconds: string[] = [];
  for (let i = 0; i < 300; i++) {
    const cursor = r.balancer.cursor(r.backend);
    cursor.next();
    seconds.push(cursor.next()?.model.name ?? '(none)');
  }
  t.same(count(seconds), { a: 100, b: 100, c: 100 }, 'second picks are spread evenly as well');
  // with one peer out, the rest share its traffic evenly
  r.view.set(r.model('b'), 'unhealthy', 'test');
  t.same(count(r.firstPicks(200)), { a: 100, c: 100 }, 'b out: a and c split evenly');
});

t.test('a degraded model is used only when no healthy peer is left in its group', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(MODELS));
  r.view.set(r.model('b'), 'degraded', 'test: slow');
  t.same(count(r.firstPicks(100)), { a: 50, c: 50 }, 'healthy peers take every first pick');
  const order = r.order();
  t.equal(order[2], 'b', 'within one request, b comes after its healthy peers ...');
  t.same(new Set(order.slice(3, 5)), new Set(['d', 'e']), '... and before the next group');

  r.view.set(r.model('a'), 'unhealthy', 'test');
  r.view.set(r.model('c'), 'open', 'test');
  t.same(count(r.firstPicks(20)), { b: 20 }, 'no healthy peer left: the degraded one serves, before group 1');

  r.view.set(r.model('a'), 'degraded', 'test: slow');
  t.same(count(r.firstPicks(20)), { a: 10, b: 10 }, 'two degraded and no healthy: round robin over the degraded');
});

t.test('the next group only when the group has nothing usable', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(MODELS));
  r.view.set(r.model('a'), 'unhealthy', 'test');
  r.view.set(r.model('b'), 'open', 'test');
  r.view.set(r.model('c'), 'cooling', 'test', { until: T0 + 60_000 });
  t.same(count(r.firstPicks(100)), { d: 50, e: 50 }, 'group 0 unusable (unhealthy, open, cooling): group 1, evenly');
  const cursor = r.balancer.cursor(r.backend);
  const first = cursor.next();
  t.equal(first?.lastResort, false, 'group 1 is a normal pick, not a last resort');

  r.view.set(r.model('d'), 'unhealthy', 'test');
  r.view.set(r.model('e'), 'unhealthy', 'test');
  t.same(count(r.firstPicks(10)), { f: 10 }, 'groups 0 and 1 unusable: group 2');

  r.view.set(r.model('b'), 'healthy', 'test: back');
  t.same(count(r.firstPicks(10)), { b: 10 }, 'a higher-priority model takes its traffic back at the next request');
});

t.test('nothing usable: every model is tried anyway, in priority order, as a last resort', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(MODELS));
  const states = { a: 'unhealthy', b: 'open', c: 'unhealthy', d: 'open', e: 'unhealthy', f: 'open' } as const;
  for (const [name, state] of Object.entries(states)) r.view.set(r.model(name), state, 'test');
  for (let i = 0; i < 3; i++) {
    const cursor = r.balancer.cursor(r.backend);
    const picks = [];
    for (let pick = cursor.next(); pick; pick = cursor.next()) picks.push(pick);
    t.same(
      picks.map((p) => p.model.name),
      ['a', 'b', 'c', 'd', 'e', 'f'],
      'priority order, the same for every request (no round robin among the unusable)',
    );
    t.ok(
      picks.every((p) => p.lastResort),
      'each flagged as a last resort',
    );
  }

  // one usable model anywhere: it goes first, then the rest as last resorts in priority order
  r.view.set(r.model('e'), 'healthy', 'test: back');
  const cursor = r.balancer.cursor(r.backend);
  const picks = [];
  for (let pick = cursor.next(); pick; pick = cursor.next()) picks.push(`${pick.model.name}${pick.lastResort ? '*' : ''}`);
  t.same(picks, ['e', 'a*', 'b*', 'c*', 'd*', 'f*'], 'the usable model first, then the last resorts');
});

t.test("never a model inside its provider's stated Retry-After, not even as a last resort", async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(MODELS));
  const settings = r.backend.settings;
  // a told us to wait 30 s; b was rate limited without saying how long (a default cooldown)
  r.passive.onFailure(r.model('a'), failure('rate_limited', { status: 429, retryAfterMs: 30_000 }), settings);
  r.passive.onFailure(r.model('b'), failure('rate_limited', { status: 429 }), settings);
  for (const name of ['c', 'd', 'e', 'f']) r.view.set(r.model(name), 'unhealthy', 'test');
  t.equal(r.view.isHeldBack(r.model('a')), true, 'a is held back (stated wait)');
  t.equal(r.view.isHeldBack(r.model('b')), false, 'b is not (the wait was our own guess)');
  t.same(r.order(), ['b', 'c', 'd', 'e', 'f'], 'last resorts skip a; b, cooling on a guess, is still worth an attempt');

  // every model waiting out a stated Retry-After: nothing is called at all
  r.passive.onFailure(r.model('b'), failure('rate_limited', { status: 429, retryAfterMs: 20_000 }), settings);
  for (const name of ['c', 'd', 'e', 'f'])
    r.passive.onFailure(r.model(name), failure('overloaded', { status: 529, retryAfterMs: 40_000 }), settings);
  t.same(r.order(), [], 'all held back: no attempt (the app gets a 429 with Retry-After)');
  t.equal(r.view.earliestRecovery(r.backend.groups.flat()), T0 + 20_000, "the Retry-After is the earliest stated wait's end");

  tick(20_000);
  t.equal(r.view.state(r.model('b')), 'healthy', "b's wait is over: healthy by itself");
  t.same(r.order(), ['b'], 'and it is the only candidate until the others are over');
  tick(10_000);
  t.same(r.firstPicks(10).sort(), ['a', 'a', 'a', 'a', 'a', 'b', 'b', 'b', 'b', 'b'], "a's wait is over too: back in the round robin");
});

t.test('probes off: the half-open trial goes to exactly one request', async (t) => {
  useMockClock(t);
  const plan = unitPlan(MODELS, PROBES_OFF);
  const r = rig(t, plan);
  const a = r.model('a');
  const { consecutiveFailures, resetTimeoutMs } = a.health.breaker;
  for (let i = 0; i < consecutiveFailures; i++) r.passive.onFailure(a, failure('upstream_5xx', { status: 503 }), r.backend.settings);
  await settle();
  t.equal(r.view.state(a), 'open', `${consecutiveFailures} failures in a row opened the breaker`);
  t.notOk(r.firstPicks(30).includes('a'), 'an open model gets no request');

  tick(resetTimeoutMs - 1);
  t.same(r.halfOpened, [], 'no trial before resetTimeout');
  t.notOk(r.firstPicks(30).includes('a'), 'still no request');
  tick(1);
  t.same(r.halfOpened, ['a'], 'half-open after resetTimeout');
  t.equal(r.view.state(a), 'open', 'the view still says open: the trial has not happened');

  const trial = r.balancer.cursor(r.backend).next();
  t.equal(trial?.model.name, 'a', 'the next request is the trial ...');
  t.equal(trial?.lastResort, false, '... as a normal pick');
  const rest = r.firstPicks(50);
  t.notOk(rest.includes('a'), 'no other request gets it while the trial runs');
  t.same(count(rest), { b: 25, c: 25 }, 'the others go on round robin over b and c');

  // the trial fails: open again, and the next trial only after another resetTimeout
  r.passive.onFailure(a, failure('upstream_5xx', { status: 503 }), r.backend.settings);
  await settle();
  t.equal(r.breakers.stats(a)?.state, 'open', 'a failed trial reopens the breaker');
  t.notOk(r.firstPicks(30).includes('a'), 'no request after a failed trial');
  tick(resetTimeoutMs);
  t.same(r.halfOpened, ['a', 'a'], 'the second trial, one resetTimeout later');
  t.equal(r.balancer.cursor(r.backend).next()?.model.name, 'a', 'the second trial: one request');
  r.passive.onSuccess(a, { stream: true, ttftMs: 200, totalMs: 800 });
  await settle();
  t.equal(r.view.state(a), 'healthy', 'the trial succeeded: healthy');
  t.equal(r.breakers.stats(a)?.state, 'closed', 'and the breaker closed');
  t.same(count(r.firstPicks(30)), { a: 10, b: 10, c: 10 }, 'a is back in the round robin');
});

t.test('probes on: the half-open trial is the probe, never a user request', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(MODELS), { trialByProbe: true });
  const a = r.model('a');
  for (let i = 0; i < a.health.breaker.consecutiveFailures; i++)
    r.passive.onFailure(a, failure('upstream_5xx', { status: 503 }), r.backend.settings);
  tick(a.health.breaker.resetTimeoutMs);
  t.same(r.halfOpened, ['a'], 'half-open');
  t.notOk(r.firstPicks(60).includes('a'), 'no request is the guinea pig');
  r.active.onProbe(a, { kind: 'chat', ok: true, durationMs: 300, ttftMs: 300, trigger: 'trial', id: 'trial-1' });
  await settle();
  t.equal(r.view.state(a), 'healthy', 'the trial probe succeeded: healthy');
  t.ok(r.firstPicks(30).includes('a'), 'and back in rotation');
});

t.test('the same trial through the real HealthMonitor wiring (no prober handed in)', async (t) => {
  useMockClock(t);
  const plan = unitPlan(MODELS, PROBES_OFF);
  const monitor = new HealthMonitor(new Events(), plan.backends);
  t.teardown(() => monitor.stop());
  const backend = plan.backends[0];
  const a = backend.groups[0][0];
  const balancer = new Balancer(monitor.view);
  for (let i = 0; i < a.health.breaker.consecutiveFailures; i++)
    monitor.passive.onFailure(a, failure('upstream_5xx', { status: 503 }), backend.settings);
  await settle();
  t.equal(monitor.view.state(a), 'open', 'open');
  tick(a.health.breaker.resetTimeoutMs);
  const picks = Array.from({ length: 20 }, () => balancer.cursor(backend).next()?.model.name);
  t.equal(picks.filter((n) => n === 'a').length, 1, 'exactly one of 20 requests is the trial');
  t.equal(picks[0], 'a', 'and it is the first one after resetTimeout');
});
