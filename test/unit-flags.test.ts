/**
 * Health flags (issue 15): each signal owns one flag per model and is the only one to set or
 * clear it; the state is derived from the flags in one place by one precedence (open >
 * unhealthy > cooling > degraded > healthy); a `health` event only when the derived state
 * changes; /status and /metrics show the flags (docs/health.md, "States and flags").
 */
import t from 'tap';
import type { ProbeScheduler } from '../probes/scheduler.ts';
import { renderStatus, type StatusDoc } from '../sidecar/cli/status.ts';
import { deriveState, FLAG_PRECEDENCE, FLAG_STATE, type HealthFlagName } from '../sidecar/core/health-state.ts';
import { HealthMonitor } from '../sidecar/health/monitor.ts';
import { Events } from '../sidecar/observe/events.ts';
import { createMetrics } from '../sidecar/observe/metrics.ts';
import { statusOf } from '../sidecar/server/admin.ts';
import { failure, probe, PROBES_OFF, rig, settle, T0, tick, unitPlan, useMockClock } from './support/unit.ts';

const TWO = [
  { name: 'a', group: 0 },
  { name: 'b', group: 1 },
];

const slowProbe = (ms: number) => probe(true, { ttftMs: ms });

// ---------------------------------------------------------------------------------------------
// the precedence: one function
// ---------------------------------------------------------------------------------------------

t.test('precedence: the highest flag set gives the state, for every combination', async (t) => {
  t.same(FLAG_PRECEDENCE, ['breaker', 'passive', 'probe', 'cooldown', 'slow'], 'the documented order');
  const order = ['open', 'unhealthy', 'cooling', 'degraded', 'healthy'];
  for (let mask = 0; mask < 1 << FLAG_PRECEDENCE.length; mask++) {
    const set = FLAG_PRECEDENCE.filter((_, i) => mask & (1 << i));
    const { state, flag } = deriveState((f) => set.includes(f));
    const expected = set.length === 0 ? 'healthy' : order[Math.min(...set.map((f) => order.indexOf(FLAG_STATE[f])))];
    t.equal(state, expected, `${set.join('+') || 'none'}: ${expected}`);
    t.equal(flag, set[0], `${set.join('+') || 'none'}: the deciding flag is the first set`);
  }
});

t.test('precedence through the writers: each new signal only moves the state up, each clearing reveals the next', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO), { trialByProbe: true });
  const a = r.model('a');
  const slow = a.health.slowThresholdMs + 500;
  r.active.onProbe(a, slowProbe(slow));
  r.active.onProbe(a, slowProbe(slow));
  t.equal(r.view.state(a), 'degraded', 'slow');
  r.passive.onFailure(a, failure('rate_limited', { status: 429, retryAfterMs: 60_000 }), r.backend.settings);
  t.equal(r.view.state(a), 'cooling', 'cooling outranks degraded');
  r.active.onProbe(a, probe(false, { failure: failure('auth', { status: 401 }) }));
  t.equal(r.view.state(a), 'unhealthy', 'unhealthy outranks cooling');
  r.breakers.trip(a);
  t.equal(r.view.state(a), 'open', 'open outranks unhealthy');
  t.same(r.view.flagsOf(a), ['breaker', 'probe', 'cooldown', 'slow'], 'every flag is still there, in precedence order');
  t.same(
    r.transitions.map((e) => `${e.from}->${e.to}`),
    ['healthy->degraded', 'degraded->cooling', 'cooling->unhealthy', 'unhealthy->open'],
    'one event per change of the derived state',
  );
});

// ---------------------------------------------------------------------------------------------
// each signal owns its flag
// ---------------------------------------------------------------------------------------------

t.test('each signal sets its own flag, and only that one', async (t) => {
  useMockClock(t);
  const plan = unitPlan(TWO);
  const cases: [string, HealthFlagName, (r: ReturnType<typeof rig>) => Promise<void> | void][] = [
    ['an open breaker', 'breaker', (r) => r.breakers.trip(r.model('a'))],
    ['a refused real request', 'passive', (r) => r.passive.onFailure(r.model('a'), failure('connect_refused'), r.backend.settings)],
    ['a 401 from real traffic', 'passive', (r) => r.passive.onFailure(r.model('a'), failure('auth', { status: 401 }), r.backend.settings)],
    [
      'two failed probes',
      'probe',
      (r) => {
        r.active.onProbe(r.model('a'), probe(false));
        r.active.onProbe(r.model('a'), probe(false));
      },
    ],
    [
      'a real 429',
      'cooldown',
      (r) => r.passive.onFailure(r.model('a'), failure('rate_limited', { status: 429, retryAfterMs: 5_000 }), r.backend.settings),
    ],
    [
      'a probe 429 with Retry-After',
      'cooldown',
      (r) => r.active.onProbe(r.model('a'), probe(false, { failure: failure('rate_limited', { status: 429, retryAfterMs: 5_000 }) })),
    ],
    [
      'two slow first tokens',
      'slow',
      (r) => {
        const a = r.model('a');
        r.passive.onSuccess(a, { stream: true, ttftMs: a.health.slowThresholdMs + 1, totalMs: 20_000 });
        r.passive.onSuccess(a, { stream: true, ttftMs: a.health.slowThresholdMs + 1, totalMs: 20_000 });
      },
    ],
  ];
  for (const [what, flag, act] of cases) {
    const r = rig(t, plan, { trialByProbe: true });
    await act(r);
    await settle();
    t.same(r.view.flagsOf(r.model('a')), [flag], `${what}: the ${flag} flag`);
    t.equal(r.view.state(r.model('a')), FLAG_STATE[flag], `${what}: ${FLAG_STATE[flag]}`);
  }
});

t.test('a cooldown ending does not clear an open breaker (probes on: the trial is a probe)', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO), { trialByProbe: true });
  const a = r.model('a');
  for (let i = 0; i < a.health.breaker.consecutiveFailures; i++)
    r.passive.onFailure(a, failure('upstream_5xx', { status: 503 }), r.backend.settings);
  await settle();
  r.passive.onFailure(a, failure('overloaded', { status: 529 }), r.backend.settings);
  t.same(r.view.flagsOf(a), ['breaker', 'cooldown'], 'open, with an assumed cooldown under it');
  t.equal(r.view.isHeldBack(a), false, 'an assumed wait holds nothing back');
  tick(r.backend.settings.cooldownAfterFailureMs);
  t.same(r.view.flagsOf(a), ['breaker'], 'the cooldown ended by itself ...');
  t.equal(r.view.state(a), 'open', '... and the model is still open');
  t.same(
    r.transitions.map((e) => e.to),
    ['open'],
    'no event: the derived state never changed',
  );
  t.notOk(r.firstPicks(10).includes('a'), 'no request goes to it');
});

t.test('a breaker closing does not clear a probe verdict', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO), { trialByProbe: true });
  const a = r.model('a');
  r.active.onProbe(a, probe(false));
  r.active.onProbe(a, probe(false));
  t.equal(r.view.state(a), 'unhealthy', 'the probes say down');
  // nothing else usable: last-resort requests fail on it until its breaker opens
  for (let i = 0; i < a.health.breaker.consecutiveFailures; i++)
    r.passive.onFailure(a, failure('upstream_5xx', { status: 503 }), r.backend.settings);
  await settle();
  t.same(r.view.flagsOf(a), ['breaker', 'probe'], 'open, over the verdict');
  tick(a.health.breaker.resetTimeoutMs);
  t.same(r.halfOpened, ['a'], 'half-open');
  r.active.onProbe(a, probe(true, { trigger: 'trial' }));
  await settle();
  t.equal(r.breakers.stats(a)?.state, 'closed', 'the trial closed the breaker');
  t.equal(r.view.state(a), 'unhealthy', 'the probe verdict stands: unhealthy, not healthy');
  t.match(
    r.transitions.at(-1),
    { from: 'open', to: 'unhealthy', cause: /breaker closed: the trial succeeded; still unhealthy: probe failed/ },
    'the event says what is left',
  );
  t.equal(r.view.get(a).probe.okStreak, 0, 'the transition started the streak over');
  r.active.onProbe(a, probe(true));
  t.equal(r.view.state(a), 'unhealthy', 'one more good probe is not enough');
  r.active.onProbe(a, probe(true));
  t.equal(r.view.state(a), 'healthy', 'healthyThreshold good probes lift the verdict');
});

t.test('a real success heals what real traffic took down, not the probes verdict', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO));
  const a = r.model('a');
  const ok = () => r.passive.onSuccess(a, { stream: false, totalMs: 300 });

  r.passive.onFailure(a, failure('connect_refused'), r.backend.settings);
  r.passive.onFailure(a, failure('rate_limited', { status: 429 }), r.backend.settings);
  for (let i = 0; i < a.health.breaker.consecutiveFailures; i++)
    r.passive.onFailure(a, failure('upstream_5xx', { status: 503 }), r.backend.settings);
  await settle();
  t.same(r.view.flagsOf(a), ['breaker', 'passive', 'cooldown'], 'real traffic set three flags');
  const before = r.transitions.length;
  ok();
  await settle();
  t.same(r.view.flagsOf(a), [], 'one real success clears them all');
  t.equal(r.breakers.stats(a)?.state, 'closed', 'the breaker closed (through the breaker)');
  t.same(
    r.transitions.slice(before).map((e) => `${e.from}->${e.to}`),
    ['open->healthy'],
    'in one transition',
  );

  r.active.onProbe(a, probe(false));
  r.active.onProbe(a, probe(false));
  t.same(r.view.flagsOf(a), ['probe'], 'the probes say down');
  ok();
  t.same(r.view.flagsOf(a), ['probe'], 'a real success (a last resort) does not overrule them');
  t.equal(r.view.state(a), 'unhealthy', 'still unhealthy');
});

t.test('probes lift a hard failure real traffic saw, and their own verdict, together', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO));
  const a = r.model('a');
  r.passive.onFailure(a, failure('auth', { status: 401 }), r.backend.settings);
  r.active.onProbe(a, probe(false, { kind: 'models', failure: failure('auth', { status: 401 }) }));
  t.same(r.view.flagsOf(a), ['passive', 'probe'], 'both say down');
  r.active.onProbe(a, probe(true));
  t.same(r.view.flagsOf(a), ['passive', 'probe'], 'one good probe: nothing yet');
  r.active.onProbe(a, probe(true));
  t.same(r.view.flagsOf(a), [], 'healthyThreshold good probes: both lifted');
  t.match(r.transitions.at(-1), { from: 'unhealthy', to: 'healthy', cause: 'probe succeeded 2 times in a row' }, 'in one event');
});

t.test('probes off: a hard failure ends with its cooldown, and a cooldown with its own: each timer clears its own flag', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO, PROBES_OFF));
  const a = r.model('a');
  const s = r.backend.settings;
  r.passive.onFailure(a, failure('connect_refused'), s);
  r.passive.onFailure(a, failure('rate_limited', { status: 429, retryAfterMs: s.cooldownAfterFailureMs * 3 }), s);
  t.same(r.view.flagsOf(a), ['passive', 'cooldown'], 'unhealthy, and cooling under it');
  t.equal(r.view.isHeldBack(a), true, 'the stated wait holds it back, whatever the state');
  t.same(r.order(), ['b'], 'not even a last resort');
  tick(s.cooldownAfterFailureMs);
  t.same(r.view.flagsOf(a), ['cooldown'], 'the hard failure ended by itself ...');
  t.match(
    r.transitions.at(-1),
    { from: 'unhealthy', to: 'cooling', cause: /unhealthy ended; still cooling: rate_limited/ },
    '... revealing the cooldown',
  );
  tick(s.cooldownAfterFailureMs * 2);
  t.equal(r.view.state(a), 'healthy', 'then the wait ended too');
  t.match(r.transitions.at(-1), { from: 'cooling', to: 'healthy', cause: 'cooling ended' });
});

// ---------------------------------------------------------------------------------------------
// events and since
// ---------------------------------------------------------------------------------------------

t.test('events only when the derived state changes; since moves whenever a flag that holds the model out changes', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO, PROBES_OFF));
  const a = r.model('a');
  const s = r.backend.settings;
  r.passive.onFailure(a, failure('connect_refused'), s);
  t.equal(r.transitions.length, 1, 'healthy -> unhealthy: one event');
  const downAt = r.view.get(a).since;
  tick(1_000);
  r.passive.onFailure(a, failure('rate_limited', { status: 429, retryAfterMs: 2_000 }), s);
  t.equal(r.transitions.length, 1, 'a cooldown under it: no event');
  t.equal(r.view.get(a).since, downAt + 1_000, 'but since moved (a flag holding it out changed)');
  t.equal(r.view.get(a).cause, 'connect_refused', "the cause is the deciding flag's");
  tick(1_000);
  r.passive.onFailure(a, failure('dns'), s);
  t.equal(r.transitions.length, 1, 'the same flag renewed: no event');
  tick(2_000);
  t.same(r.view.flagsOf(a), ['passive'], 'the cooldown ended under it');
  t.equal(r.transitions.length, 1, 'still no event');
});

t.test('a failed half-open trial moves the next trial, and the Retry-After with it', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO), { trialByProbe: true });
  const a = r.model('a');
  const { resetTimeoutMs } = a.health.breaker;
  r.breakers.trip(a);
  t.equal(r.view.flag(a, 'breaker')?.until, T0 + resetTimeoutMs, 'the breaker flag ends at its trial');
  tick(resetTimeoutMs);
  r.active.onProbe(a, probe(false, { trigger: 'trial' }));
  await settle();
  t.equal(r.transitions.length, 1, 'open -> open: no event');
  t.equal(r.view.get(a).since, T0 + resetTimeoutMs, 'since moved to the reopening');
  t.equal(r.view.flag(a, 'breaker')?.until, T0 + 2 * resetTimeoutMs, 'the next trial');
  t.equal(r.view.earliestRecovery([a]), T0 + 2 * resetTimeoutMs, 'the Retry-After says so');
});

t.test('earliestRecovery: a model is back when every flag holding it out is', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO, PROBES_OFF));
  const [a, b] = [r.model('a'), r.model('b')];
  const s = r.backend.settings;
  for (let i = 0; i < a.health.breaker.consecutiveFailures; i++) r.passive.onFailure(a, failure('upstream_5xx', { status: 503 }), s);
  await settle();
  r.passive.onFailure(a, failure('rate_limited', { status: 429, retryAfterMs: 30_000 }), s);
  t.equal(r.view.earliestRecovery([a]), T0 + 30_000, 'the stated wait outlasts the trial: its end');
  r.passive.onFailure(b, failure('auth', { status: 401 }), s);
  t.equal(r.view.earliestRecovery([a, b]), T0 + 30_000, 'several models: the earliest back');
  t.equal(r.view.earliestRecovery([b]), T0 + s.cooldownAfterAuthFailureMs, 'b: its auth cooldown');
});

t.test('restore carries the flags over, and their timers', async (t) => {
  useMockClock(t);
  const r = rig(t, unitPlan(TWO, PROBES_OFF));
  const a = r.model('a');
  r.passive.onFailure(a, failure('rate_limited', { status: 429, retryAfterMs: 5_000 }), r.backend.settings);
  r.passive.onFailure(a, failure('connect_refused'), r.backend.settings);
  const next = rig(t, unitPlan(TWO, PROBES_OFF));
  const a2 = next.model('a');
  next.view.restore(a2, r.view.get(a));
  t.same(next.view.flagsOf(a2), ['passive', 'cooldown'], 'the same flags');
  t.equal(next.transitions.length, 0, 'silently');
  t.equal(next.view.isHeldBack(a2), true, 'the stated wait still holds');
  tick(5_000);
  t.same(next.view.flagsOf(a2), ['passive'], 'the restored cooldown ends by itself');
  tick(next.backend.settings.cooldownAfterFailureMs);
  t.equal(next.view.state(a2), 'healthy', 'so does the restored hard failure');
});

// ---------------------------------------------------------------------------------------------
// /status and /metrics
// ---------------------------------------------------------------------------------------------

t.test('/status lists the flags that hold a model out; /metrics has a gauge per flag', async (t) => {
  const plan = unitPlan(TWO, PROBES_OFF);
  const events = new Events();
  const monitor = new HealthMonitor(events, plan.backends);
  t.teardown(() => monitor.stop());
  const backend = plan.backends[0];
  const [a, b] = backend.groups.flat();
  monitor.breakers.trip(a, 'test: tripped');
  monitor.passive.onFailure(a, failure('rate_limited', { status: 429, retryAfterMs: 30_000 }), backend.settings);
  const probes = { mode: () => ({ using: 'none', note: null }) } as unknown as ProbeScheduler;
  const doc = statusOf({
    ready: () => true,
    backends: () => plan.backends,
    monitor: () => monitor,
    probes: () => probes,
    metrics: () => undefined as never,
  });
  const [sa, sb] = doc.backends[0].groups.flatMap((g) => g.models);
  t.equal(sa.state, 'open');
  t.same(
    sa.flags.map((f) => f.name),
    ['breaker', 'cooldown'],
    'a: the breaker and the cooldown, in precedence order',
  );
  t.match(sa.flags[0], { name: 'breaker', state: 'open', cause: 'breaker opened: test: tripped', until: String });
  t.match(sa.flags[1], { name: 'cooldown', state: 'cooling', cause: 'rate_limited (upstream 429)', stated: true, until: String });
  t.ok(Date.parse(sa.flags[1].until!) - Date.now() > 29_000, "the cooldown's own end");
  t.same(sb.flags, [], 'b: none');

  const registry = createMetrics(events, { current: () => ({ plan, monitor }), inFlight: () => 0 });
  const text = await registry.metrics();
  const gauge = (model: string, flag: string) =>
    text.match(new RegExp(`^llm_failover_model_flag\\{[^}]*provider="${model}"[^}]*flag="${flag}"\\} (\\d)$`, 'm'))?.[1];
  t.equal(gauge(a.name, 'breaker'), '1', 'a breaker: 1');
  t.equal(gauge(a.name, 'cooldown'), '1', 'a cooldown: 1');
  t.equal(gauge(a.name, 'probe'), '0', 'a probe: 0');
  t.equal(gauge(b.name, 'breaker'), '0', 'b breaker: 0');
  t.match(text, /llm_failover_model_state\{[^}]*provider="a"[^}]*state="open"\} 1/, 'the state gauge as before');
  t.ok(b, 'two models');
});

t.test('the status table names the flags when more than one holds a model', async (t) => {
  const now = Date.UTC(2026, 10, 25, 12, 0, 0);
  const model = (name: string, state: string, cause: string, flags: string[]) => ({
    name,
    provider: 'openai',
    model: name,
    state,
    since: new Date(now - 5_000).toISOString(),
    cause,
    until: null,
    flags: flags.map((f) => ({ name: f })),
    successes: 0,
    failures: 0,
    inFlight: 0,
    latency: { firstTokenMs: null, totalMs: null },
    probe: { lastAt: null, ok: null },
    breaker: null,
  });
  const doc: StatusDoc = {
    ready: true,
    backends: [
      {
        name: 'b',
        namespace: 'ns',
        groups: [
          {
            priority: 1,
            models: [
              model('x', 'open', 'breaker opened: 5 attempts failed in a row', ['breaker', 'cooldown']),
              model('y', 'cooling', 'rate_limited (upstream 429)', ['cooldown']),
            ],
          },
        ],
      },
    ],
  };
  const text = renderStatus(doc, { now, colour: false });
  t.match(
    text,
    /x .* breaker\+cooldown: breaker opened: 5 attempts failed in a row\n/,
    'two flags: both named, then the cause of the first',
  );
  t.match(text, /y .* 5s .* rate_limited \(upstream 429\)\n/, 'one flag: the cause says it');
});
