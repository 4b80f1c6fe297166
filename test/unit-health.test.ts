/**
 * The health view and what writes it (sidecar/health/*.ts), in simulated time: timed states that
 * end by themselves, the Retry-After a refusal carries (`earliestRecovery`), streaks that start
 * over at every transition, what every failure reason of a real attempt does, the breaker (the
 * streak, the window, the half-open trial), and probe thresholds on both edges, slowness
 * included (docs/health.md).
 */
import t from 'tap';
import type { FailureReason } from '../sidecar/core/failure.ts';
import type { HealthState } from '../sidecar/core/health-state.ts';
import { HealthView } from '../sidecar/health/view.ts';
import { Events } from '../sidecar/observe/events.ts';
import { failure, probe, PROBES_OFF, rig, settle, T0, tick, unitPlan, useMockClock } from './support/unit.ts';

const TWO = [
  { name: 'a', group: 0 },
  { name: 'b', group: 1 },
];

// ---------------------------------------------------------------------------------------------
// the health view
// ---------------------------------------------------------------------------------------------

t.test('a cooling state ends by itself at `until`', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO));
  const a = r.model('a');
  r.view.set(a, 'cooling', 'test: 429', { until: T0 + 5_000 });
  t.equal(r.view.isUsable(a), false, 'cooling is not usable');
  tick(4_999);
  t.equal(r.view.state(a), 'cooling', 'still cooling 1 ms before until');
  tick(1);
  t.equal(r.view.state(a), 'healthy', 'healthy at until, with nothing else happening');
  t.match(r.transitions.at(-1), { from: 'cooling', to: 'healthy', cause: 'cooling ended' }, 'its own health event says why');

  // a later set() supersedes the earlier timer: the model does not come back at the first until
  r.view.set(a, 'cooling', 'test: 429', { until: Date.now() + 1_000 });
  r.view.set(a, 'cooling', 'test: 429 again', { until: Date.now() + 8_000 });
  tick(1_000);
  t.equal(r.view.state(a), 'cooling', 'the first, superseded end does not free it');
  tick(7_000);
  t.equal(r.view.state(a), 'healthy', 'the second one does');

  // with probes off, unhealthy is timed too
  const off = rig(t, unitPlan(TWO, PROBES_OFF));
  const offA = off.model('a');
  off.passive.onFailure(offA, failure('connect_refused'), off.backend.settings);
  t.equal(off.view.state(offA), 'unhealthy', 'probes off: refused is unhealthy ...');
  tick(off.backend.settings.cooldownAfterFailureMs);
  t.equal(off.view.state(offA), 'healthy', '... for cooldownAfterFailure, then healthy by itself');
});

t.test('a timer that fires early waits out the rest', async (t) => {
  useMockClock(t);
  // The view's timers run on the (mocked) monotonic timers; `until` is wall time from its `now`.
  // A wall clock that falls behind the timers (NTP stepping it back 1 s) makes the timer fire
  // 1 s before `until`.
  let lag = 0;
  const plan = unitPlan(TWO);
  const models = plan.backends[0].groups.flat();
  const view = new HealthView(new Events(), models, () => Date.now() - lag);
  t.teardown(() => view.close());
  const a = models[0];
  view.set(a, 'cooling', 'test: 429', { until: T0 + 5_000 });
  lag = 1_000;
  tick(5_000);
  t.equal(view.state(a), 'cooling', 'the timer fired at wall time until - 1 s: still cooling');
  tick(999);
  t.equal(view.state(a), 'cooling', 'still cooling 1 ms before until');
  tick(1);
  t.equal(view.state(a), 'healthy', 'healthy once the wall clock reaches until: never cooling forever');
});

t.test('earliestRecovery: the Retry-After every refusal carries', async (t) => {
  useMockClock(t);
  const plan = unitPlan([
    { name: 'a', group: 0 },
    { name: 'b', group: 0 },
    { name: 'c', group: 1 },
  ]);
  const r = rig(t, plan);
  const [a, b, c] = ['a', 'b', 'c'].map(r.model);
  const { intervalMs } = a.health.probe;
  const { resetTimeoutMs } = a.health.breaker;
  const all = [a, b, c];

  t.equal(r.view.earliestRecovery(all), T0 + 1_000, 'nothing down: a second');

  r.view.set(a, 'cooling', 'test', { until: T0 + 7_000 });
  t.equal(r.view.earliestRecovery(all), T0 + 7_000, "a timed state: its end (the provider's Retry-After)");
  r.view.set(a, 'cooling', 'test', { until: T0 + 300 });
  t.equal(r.view.earliestRecovery(all), T0 + 1_000, 'never less than a second');
  r.view.set(a, 'healthy', 'test');

  r.view.set(b, 'unhealthy', 'test: refused');
  t.equal(r.view.earliestRecovery(all), T0 + intervalMs, 'a down model: its next probe, one interval from now');
  tick(3_000);
  t.equal(r.view.earliestRecovery(all), Date.now() + intervalMs, 'still an interval from now (the probe comes every interval)');

  // an open breaker: its trial, resetTimeout after it opened
  for (let i = 0; i < c.health.breaker.consecutiveFailures; i++) r.breakers.record(c, false);
  await settle();
  t.equal(r.view.state(c), 'open', 'c open');
  const openedAt = Date.now();
  t.equal(r.view.earliestRecovery([c]), openedAt + resetTimeoutMs, 'an open breaker: its trial');
  tick(4_000);
  t.equal(r.view.earliestRecovery([c]), openedAt + resetTimeoutMs, 'the trial does not move as time passes');
  t.equal(r.view.earliestRecovery(all), Math.min(openedAt + resetTimeoutMs, Date.now() + intervalMs), 'several: the earliest');

  r.view.set(a, 'cooling', 'test', { until: Date.now() + 2_000 });
  t.equal(r.view.earliestRecovery(all), Date.now() + 2_000, 'a cooldown ending sooner wins');
});

// issue 15: the view went open -> open without moving `since`, so Retry-After fell back to 1 s
t.test('earliestRecovery right after a failed trial (the number a client would see)', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO, PROBES_OFF));
  const a = r.model('a');
  const { resetTimeoutMs, consecutiveFailures } = a.health.breaker;
  for (let i = 0; i < consecutiveFailures; i++) r.passive.onFailure(a, failure('upstream_5xx', { status: 503 }), r.backend.settings);
  await settle();
  tick(resetTimeoutMs);
  r.balancer.cursor(r.backend).next();
  r.passive.onFailure(a, failure('upstream_5xx', { status: 503 }), r.backend.settings);
  await settle();
  t.equal(r.breakers.stats(a)?.state, 'open', 'reopened');
  t.equal(r.view.earliestRecovery([a]) - Date.now(), resetTimeoutMs, `Retry-After: the next trial, ${resetTimeoutMs} ms away`);
});

t.test('streaks start over at every transition, whoever made it', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO));
  const a = r.model('a');
  const { healthyThreshold, unhealthyThreshold } = a.health.probe;
  t.equal(healthyThreshold, 2, 'default healthyThreshold');
  t.equal(unhealthyThreshold, 2, 'default unhealthyThreshold');

  // a long run of good probes, then user traffic takes the model down
  for (let i = 0; i < 7; i++) r.active.onProbe(a, probe(true));
  t.equal(r.view.get(a).probe.okStreak, 7, '7 good probes in a row');
  r.passive.onFailure(a, failure('connect_refused'), r.backend.settings);
  t.equal(r.view.state(a), 'unhealthy', 'a refused user request took it down');
  t.equal(r.view.get(a).probe.okStreak, 0, 'the ok streak started over');
  r.active.onProbe(a, probe(true));
  t.equal(r.view.state(a), 'unhealthy', 'one good probe is not enough (it would be, counting the 7 before)');
  r.active.onProbe(a, probe(true));
  t.equal(r.view.state(a), 'healthy', 'healthyThreshold good probes after the fall bring it back');
  t.match(r.transitions.at(-1)?.cause, /probe succeeded 2 times in a row/, 'and the cause counts only those');

  // a failed probe, then a transition by a timer (a cooldown that ends): the fail streak restarts
  r.active.onProbe(a, probe(false));
  t.equal(r.view.get(a).probe.failStreak, 1, 'one failed probe');
  r.passive.onFailure(a, failure('rate_limited', { status: 429, retryAfterMs: 2_000 }), r.backend.settings);
  tick(2_000);
  t.equal(r.view.state(a), 'healthy', 'the cooldown ended by itself');
  t.equal(r.view.get(a).probe.failStreak, 0, 'the fail streak started over');
  r.active.onProbe(a, probe(false));
  t.equal(r.view.state(a), 'healthy', 'one failed probe after it does not take the model out');

  // the slow streak: one slow sample, a transition, one slow sample: not degraded
  const slow = a.health.slowThresholdMs + 1_000;
  r.active.onProbe(a, probe(true, { ttftMs: slow }));
  t.equal(r.view.get(a).slowStreak, 1, 'one slow sample');
  r.view.set(a, 'open', 'test: breaker');
  r.view.set(a, 'healthy', 'test: breaker closed');
  r.passive.onSuccess(a, { stream: true, ttftMs: slow, totalMs: slow + 100 });
  t.equal(r.view.state(a), 'healthy', 'one slow sample after a transition does not degrade it');

  // the fast streak: degraded, one fast sample, a transition, back to degraded, one fast: still degraded
  r.passive.onSuccess(a, { stream: true, ttftMs: slow, totalMs: slow + 100 });
  t.equal(r.view.state(a), 'degraded', 'two slow samples in a row: degraded');
  r.passive.onSuccess(a, { stream: true, ttftMs: 100, totalMs: 300 });
  t.equal(r.view.get(a).fastStreak, 1, 'one fast sample');
  r.view.set(a, 'cooling', 'test', { until: Date.now() + 1_000 });
  r.view.set(a, 'degraded', 'test: slow again');
  r.active.onProbe(a, probe(true, { ttftMs: 100 }));
  t.equal(r.view.state(a), 'degraded', 'one fast sample after a transition does not bring it back');
  r.active.onProbe(a, probe(true, { ttftMs: 100 }));
  t.equal(r.view.state(a), 'healthy', 'two do');
});

// ---------------------------------------------------------------------------------------------
// passive health: what each failure of a real attempt does
// ---------------------------------------------------------------------------------------------

type Effect = 'cool' | 'down' | 'breaker' | 'none';

/**
 * docs/health.md, "What writes it": unreachable (refused, DNS, TLS, connect timeout) and
 * 401/402/403/404 mark unhealthy at once; 429/529 cool; every other failure (5xx, timeouts,
 * resets, broken streams, invalid answers) counts in the breaker; the request's own 4xx and a
 * too-long prompt change nothing (nor the sidecar's own bug, the request's deadline, or an
 * attempt the view itself cancelled). Typed as a Record: a new reason does not compile until
 * it has a row here.
 */
const EXPECTED: Record<FailureReason, Effect> = {
  connect_refused: 'down',
  dns: 'down',
  tls: 'down',
  connect_timeout: 'down',
  auth: 'down',
  model_not_found: 'down',
  quota_exhausted: 'down',
  rate_limited: 'cool',
  overloaded: 'cool',
  connect_reset: 'breaker',
  response_timeout: 'breaker',
  first_token_timeout: 'breaker',
  stream_stalled: 'breaker',
  upstream_5xx: 'breaker',
  upstream_redirect: 'breaker',
  request_timeout: 'breaker',
  bad_response: 'breaker',
  stream_error: 'breaker',
  marked_down: 'none',
  context_length: 'none',
  untranslatable: 'none',
  deadline_exceeded: 'none',
  internal: 'none',
  client_error: 'none',
};

t.test("every failure reason's effect on its model", async (t) => {
  useMockClock(t);
  const plan = unitPlan(TWO);
  for (const [reason, effect] of Object.entries(EXPECTED) as [FailureReason, Effect][]) {
    const r = rig(t, plan);
    const a = r.model('a');
    const settings = r.backend.settings;
    r.passive.onFailure(a, failure(reason, { status: 500 }), settings);
    await settle();
    const state = r.view.state(a);
    const h = r.view.get(a);
    const fires = r.breakers.stats(a)?.failures ?? -1;
    const seen: Effect = state === 'cooling' ? 'cool' : state === 'unhealthy' ? 'down' : fires > 0 ? 'breaker' : 'none';
    t.equal(seen, effect, `${reason}: ${effect}`);
    if (effect === 'cool')
      t.equal(h.until, Date.now() + settings.cooldownAfterFailureMs, `${reason}: no Retry-After, the default cooldown`);
    if (effect === 'down') t.equal(h.until, undefined, `${reason}: down until a probe says otherwise (probes on)`);
    if (effect === 'breaker') t.equal(state, 'healthy', `${reason}: one failure does not take the model out`);
    if (effect === 'none') t.equal(h.failures, 0, `${reason}: not even counted against the model`);
  }
});

t.test('429 and 529: the stated wait, or the default cooldown', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO));
  const [a, b] = [r.model('a'), r.model('b')];
  const settings = r.backend.settings;
  r.passive.onFailure(a, failure('rate_limited', { status: 429, retryAfterMs: 30_000 }), settings);
  t.match(r.view.get(a), { state: 'cooling', until: T0 + 30_000, statedWait: true }, '429 with Retry-After: cooling for exactly that long');
  t.equal(r.view.isHeldBack(a), true, 'and held back (not called even as a last resort)');
  r.passive.onFailure(b, failure('rate_limited', { status: 429 }), settings);
  t.match(
    r.view.get(b),
    { state: 'cooling', until: T0 + settings.cooldownAfterFailureMs, statedWait: false },
    '429 without Retry-After: the default cooldown',
  );
  t.equal(r.view.isHeldBack(b), false, 'a guessed wait holds nothing back');
  tick(settings.cooldownAfterFailureMs);
  t.equal(r.view.state(b), 'healthy', 'the default cooldown ends by itself');
  t.equal(r.view.state(a), 'cooling', 'the stated one is not over yet');
  tick(30_000 - settings.cooldownAfterFailureMs);
  t.equal(r.view.state(a), 'healthy', 'now it is');
  t.equal(r.view.isHeldBack(a), false, 'and nothing holds it back');

  r.passive.onFailure(a, failure('overloaded', { status: 529, retryAfterMs: 4_000 }), settings);
  t.match(r.view.get(a), { state: 'cooling', until: Date.now() + 4_000, statedWait: true }, '529 with Retry-After: the same');
  t.equal(r.breakers.stats(a)?.failures, 0, 'a rate limit is not a breaker failure');
});

t.test('probes off: a down model comes back by itself after its cooldown', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO, PROBES_OFF));
  const a = r.model('a');
  const s = r.backend.settings;
  r.passive.onFailure(a, failure('auth', { status: 401 }), s);
  t.equal(r.view.get(a).until, T0 + s.cooldownAfterAuthFailureMs, '401: for the auth cooldown (a key must change)');
  tick(s.cooldownAfterAuthFailureMs);
  t.equal(r.view.state(a), 'healthy', 'then healthy by itself');
  r.passive.onFailure(a, failure('dns'), s);
  t.equal(r.view.get(a).until, Date.now() + s.cooldownAfterFailureMs, 'unreachable: the failure cooldown');
});

t.test('breaker off: a passing fault cools the model for the failure cooldown', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO, '  health:\n    breaker:\n      enabled: false\n'));
  const a = r.model('a');
  r.passive.onFailure(a, failure('upstream_5xx', { status: 502 }), r.backend.settings);
  t.match(
    r.view.get(a),
    { state: 'cooling', until: T0 + r.backend.settings.cooldownAfterFailureMs, statedWait: false },
    'cooling on a guess',
  );
  t.equal(r.view.isHeldBack(a), false, 'so still a last resort');
});

// ---------------------------------------------------------------------------------------------
// the breaker
// ---------------------------------------------------------------------------------------------

t.test('the breaker opens after consecutiveFailures in a row, whatever the window holds', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO));
  const a = r.model('a');
  const { consecutiveFailures } = a.health.breaker;
  t.equal(consecutiveFailures, 5, 'default consecutiveFailures');
  for (let i = 0; i < 40; i++) r.passive.onSuccess(a, { stream: false, totalMs: 400 });
  await settle();
  for (let i = 0; i < consecutiveFailures - 1; i++) r.passive.onFailure(a, failure('upstream_5xx', { status: 500 }), r.backend.settings);
  await settle();
  t.equal(r.view.state(a), 'healthy', `${consecutiveFailures - 1} in a row among 40 successes: healthy (4/44 is far under 50 %)`);
  r.passive.onSuccess(a, { stream: false, totalMs: 400 });
  for (let i = 0; i < consecutiveFailures - 1; i++) r.passive.onFailure(a, failure('upstream_5xx', { status: 500 }), r.backend.settings);
  await settle();
  t.equal(r.view.state(a), 'healthy', 'a success in between starts the streak over');
  r.passive.onFailure(a, failure('upstream_5xx', { status: 500 }), r.backend.settings);
  await settle();
  t.equal(r.view.state(a), 'open', `the ${consecutiveFailures}th in a row opens it`);
  t.match(r.transitions.at(-1)?.cause, /5 attempts failed in a row/, 'and says so');
});

t.test('the breaker opens once the window tips (at least volumeThreshold attempts, over 50 % failed)', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO));
  const a = r.model('a');
  const fail = () => r.passive.onFailure(a, failure('upstream_5xx', { status: 500 }), r.backend.settings);
  const ok = () => r.passive.onSuccess(a, { stream: false, totalMs: 400 });
  const { windowMs, volumeThreshold } = a.health.breaker;
  t.equal(volumeThreshold, 3, 'default volumeThreshold');

  fail();
  fail();
  await settle();
  t.equal(r.view.state(a), 'healthy', '2 of 2 failed: under volumeThreshold, closed');
  tick(windowMs + 1_000);

  // 10 successes, then failures: the window holds the successes until they age out
  for (let i = 0; i < 10; i++) ok();
  await settle();
  tick(5_000);
  fail();
  fail();
  ok();
  fail();
  fail();
  await settle();
  t.equal(r.view.state(a), 'healthy', '4 failures (never 5 in a row) vs 11 successes in the window: closed');
  tick(windowMs - 4_000); // the 10 successes of 5 s ago age out; the last batch stays
  fail();
  await settle();
  t.equal(r.view.state(a), 'open', 'once the successes aged out, 5 failures of 6 tip the window: open');
  t.match(r.transitions.at(-1)?.cause, /breaker opened: 5 of 6 attempts failed/, 'the window, not the streak');
});

t.test("the breaker's half-open trial: one success closes it, one failure reopens it", async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO), { trialByProbe: true });
  const a = r.model('a');
  const { resetTimeoutMs } = a.health.breaker;
  r.breakers.trip(a);
  t.equal(r.view.state(a), 'open', 'open');
  t.equal(r.breakers.stats(a)?.state, 'open', 'the breaker too');
  tick(resetTimeoutMs - 1);
  t.equal(r.breakers.stats(a)?.state, 'open', 'still open before resetTimeout');
  tick(1);
  t.equal(r.breakers.stats(a)?.state, 'halfOpen', 'half-open at resetTimeout');
  t.equal(r.view.state(a), 'open', 'the model stays open until the trial says otherwise');

  r.active.onProbe(a, probe(false, { trigger: 'trial' }));
  await settle();
  t.equal(r.breakers.stats(a)?.state, 'open', 'a failed trial probe: open again');
  t.equal(r.view.state(a), 'open', 'and the model with it');
  tick(resetTimeoutMs);
  t.same(r.halfOpened, ['a', 'a'], 'a new trial one resetTimeout later');
  r.active.onProbe(a, probe(true, { trigger: 'trial', ttftMs: 300 }));
  await settle();
  t.equal(r.breakers.stats(a)?.state, 'closed', 'a successful trial closes it');
  t.equal(r.view.state(a), 'healthy', 'and the model is healthy');
  t.match(r.transitions.at(-1)?.cause, /trial succeeded/, 'by the trial');

  // open models ignore scheduled probes outside the half-open window
  r.breakers.trip(a);
  r.active.onProbe(a, probe(true));
  r.active.onProbe(a, probe(true));
  await settle();
  t.equal(r.view.state(a), 'open', 'good probes do not close a breaker that is not half-open');
});

// issue 15: a 429 on an open model (a last-resort attempt) made it cooling; when the wait ended
// by itself the view said healthy while the opossum breaker was still open, so every failure was
// rejected uncounted and the model kept all the traffic until resetTimeout. The cooldown and the
// breaker are separate flags now: the wait ending leaves the breaker's flag, and the model, open.
t.test('a model whose cooldown ended while its breaker was open is still out, and stays out under failures', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO, PROBES_OFF));
  const a = r.model('a');
  const s = r.backend.settings;
  const { consecutiveFailures } = a.health.breaker;
  for (let i = 0; i < consecutiveFailures; i++) r.passive.onFailure(a, failure('upstream_5xx', { status: 503 }), s);
  await settle();
  t.equal(r.view.state(a), 'open', 'open');
  tick(2_000);
  // nothing else usable at this moment: a is tried as a last resort and answers 429, Retry-After 1 s
  r.passive.onFailure(a, failure('rate_limited', { status: 429, retryAfterMs: 1_000 }), s);
  t.equal(r.view.state(a), 'open', 'open outranks cooling');
  t.same(r.view.flagsOf(a), ['breaker', 'cooldown'], 'both flags are set: the breaker, and the stated wait');
  t.equal(r.view.isHeldBack(a), true, 'inside the stated wait: not even a last resort');
  tick(1_000);
  t.equal(r.view.state(a), 'open', 'the stated wait is over: still open (the breaker is)');
  t.same(r.view.flagsOf(a), ['breaker'], 'only the cooldown cleared');
  t.equal(r.breakers.stats(a)?.state, 'open', 'and the view agrees with opossum');
  for (let i = 0; i < consecutiveFailures; i++) {
    r.passive.onFailure(a, failure('upstream_5xx', { status: 503 }), s);
    await settle();
  }
  t.notOk(
    r.view.isUsable(a),
    `${consecutiveFailures} more failures: still out (state: ${r.view.state(a)}, breaker: ${r.breakers.stats(a)?.state})`,
  );
  t.same(r.firstPicks(3), ['b', 'b', 'b'], 'and traffic goes to the fallback');
});

// ---------------------------------------------------------------------------------------------
// active health: probes
// ---------------------------------------------------------------------------------------------

t.test('probe thresholds both ways', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO));
  const a = r.model('a');
  const states: HealthState[] = [];
  const step = (ok: boolean) => {
    r.active.onProbe(a, probe(ok));
    states.push(r.view.state(a));
  };
  step(false);
  step(true);
  step(false);
  t.same(states, ['healthy', 'healthy', 'healthy'], 'failures that are not in a row never take it out');
  step(false);
  t.equal(r.view.state(a), 'unhealthy', 'unhealthyThreshold (2) failures in a row take it out');
  step(true);
  step(false);
  step(true);
  t.equal(r.view.state(a), 'unhealthy', 'successes that are not in a row never bring it back');
  step(true);
  t.equal(r.view.state(a), 'healthy', 'healthyThreshold (2) successes in a row bring it back');
  t.equal(r.breakers.stats(a)?.state, 'closed', 'with its breaker closed');

  // custom thresholds are honoured
  const r3 = rig(t, unitPlan(TWO, '  health:\n    probe:\n      healthyThreshold: 3\n      unhealthyThreshold: 4\n'));
  const a3 = r3.model('a');
  for (let i = 0; i < 3; i++) r3.active.onProbe(a3, probe(false));
  t.equal(r3.view.state(a3), 'healthy', 'unhealthyThreshold 4: 3 failures are not enough');
  r3.active.onProbe(a3, probe(false));
  t.equal(r3.view.state(a3), 'unhealthy', '4 are');
  for (let i = 0; i < 2; i++) r3.active.onProbe(a3, probe(true));
  t.equal(r3.view.state(a3), 'unhealthy', 'healthyThreshold 3: 2 successes are not enough');
  r3.active.onProbe(a3, probe(true));
  t.equal(r3.view.state(a3), 'healthy', '3 are');
});

t.test('a definitive probe failure (credentials, model gone) takes a model out at once', async (t) => {
  useMockClock(t);
  // docs/reliability.md: no credit (402, insufficient_quota) is handled as for auth
  for (const [reason, status] of [
    ['auth', 401],
    ['auth', 403],
    ['model_not_found', 404],
    ['quota_exhausted', 402],
  ] as const) {
    const r = rig(t, unitPlan(TWO));
    const a = r.model('a');
    r.active.onProbe(a, probe(false, { kind: 'models', failure: failure(reason, { status }) }));
    t.equal(r.view.state(a), 'unhealthy', `${reason} (${status}): unhealthy after one probe`);
  }
  const r = rig(t, unitPlan(TWO));
  const a = r.model('a');
  r.active.onProbe(a, probe(false, { failure: failure('upstream_5xx', { status: 503 }) }));
  t.equal(r.view.state(a), 'healthy', 'a passing fault (503) is not definitive: it counts toward the threshold');
});

t.test('a failed suspicion probe marks the model down at once', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO));
  const a = r.model('a');
  r.view.suspect(a, 10_000);
  t.notOk(r.firstPicks(5).includes('a'), 'while suspected, new requests go elsewhere');
  r.active.onProbe(a, probe(false, { trigger: 'suspicion', failure: failure('first_token_timeout') }));
  t.equal(r.view.state(a), 'unhealthy', 'one failed suspicion probe: unhealthy (two independent signals)');
  t.match(r.transitions.at(-1)?.cause, /while a request was stuck on it/, 'and the cause says why');
  t.equal(r.view.isSuspected(a), false, 'the probe answered the suspicion');

  const r2 = rig(t, unitPlan(TWO));
  const a2 = r2.model('a');
  r2.view.suspect(a2, 10_000);
  r2.active.onProbe(a2, probe(true, { trigger: 'suspicion', ttftMs: 400 }));
  t.equal(r2.view.state(a2), 'healthy', 'a good suspicion probe clears the model');
  t.equal(r2.view.isSuspected(a2), false, 'and ends the suspicion');
  t.ok(r2.firstPicks(5).includes('a'), 'new requests go to it again');

  const r3 = rig(t, unitPlan(TWO));
  const a3 = r3.model('a');
  r3.view.suspect(a3, 10_000);
  tick(10_000);
  t.equal(r3.view.isSuspected(a3), false, 'an unanswered suspicion ends by itself');
});

t.test('slowness: degraded and back, with hysteresis', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO));
  const a = r.model('a');
  const slow = a.health.slowThresholdMs + 500;
  const fast = a.health.slowThresholdMs - 500;
  const sample = (ttftMs: number) => r.active.onProbe(a, probe(true, { ttftMs }));
  sample(slow);
  t.equal(r.view.state(a), 'healthy', 'one slow probe: still healthy');
  sample(fast);
  sample(slow);
  t.equal(r.view.state(a), 'healthy', 'slow, fast, slow: never two in a row');
  sample(slow);
  t.equal(r.view.state(a), 'degraded', 'two slow in a row: degraded');
  sample(fast);
  t.equal(r.view.state(a), 'degraded', 'one fast: still degraded');
  sample(slow);
  sample(fast);
  t.equal(r.view.state(a), 'degraded', 'fast, slow, fast: still degraded');
  sample(fast);
  t.equal(r.view.state(a), 'healthy', 'two fast in a row: healthy');
  sample(a.health.slowThresholdMs);
  sample(a.health.slowThresholdMs);
  t.equal(r.view.state(a), 'healthy', 'exactly the threshold is not slow');

  // real traffic counts the same
  r.passive.onSuccess(a, { stream: true, ttftMs: slow, totalMs: slow + 1_000 });
  r.passive.onSuccess(a, { stream: true, ttftMs: slow, totalMs: slow + 1_000 });
  t.equal(r.view.state(a), 'degraded', 'two slow streamed requests: degraded');
  r.passive.onSuccess(a, { stream: true, ttftMs: fast, totalMs: fast + 1_000 });
  r.passive.onSuccess(a, { stream: true, ttftMs: fast, totalMs: fast + 1_000 });
  t.equal(r.view.state(a), 'healthy', 'two fast ones: healthy');
});

t.test('a probe 429 cools the model only for a stated wait', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO));
  const a = r.model('a');
  r.active.onProbe(a, probe(false, { kind: 'models', failure: failure('rate_limited', { status: 429 }) }));
  r.active.onProbe(a, probe(false, { kind: 'models', failure: failure('rate_limited', { status: 429 }) }));
  t.equal(r.view.state(a), 'healthy', 'rate limited probes without Retry-After: nothing (not down)');
  r.active.onProbe(a, probe(false, { kind: 'models', failure: failure('rate_limited', { status: 429, retryAfterMs: 6_000 }) }));
  t.match(r.view.get(a), { state: 'cooling', until: T0 + 6_000 }, 'with Retry-After: cooling for it');
  tick(6_000);
  t.equal(r.view.state(a), 'healthy', 'then healthy by itself');
});
