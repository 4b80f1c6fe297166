/**
 * Scaffolding for the unit tier (test/unit-*.test.ts): a plan from the same YAML users write,
 * the health objects built directly on it (no HTTP server, no sidecar), and node:test's mock
 * clock so timed states, breakers and probe schedules run in simulated time.
 *
 * The mock clock mocks setTimeout, setInterval and Date, so opossum's rolling window (a
 * setInterval per breaker that rotates its buckets) and its resetTimeout (a setTimeout) advance
 * with `mock.timers.tick(ms)` like everything else: the breakers are built after the clock is
 * enabled, and shut down before it is reset. setImmediate is left real: opossum counts an
 * outcome a few microtasks after `fire()`, and `settle()` waits for that.
 */
import { mock } from 'node:test';
import { loadPlan } from '../../sidecar/config/load.ts';
import type { BackendPlan, ModelTarget, Plan } from '../../sidecar/config/plan.ts';
import type { Failure, FailureReason } from '../../sidecar/core/failure.ts';
import { ActiveHealth, type ProbeResult } from '../../sidecar/health/active.ts';
import { Breakers } from '../../sidecar/health/breaker.ts';
import { PassiveHealth } from '../../sidecar/health/passive.ts';
import { HealthView } from '../../sidecar/health/view.ts';
import { Events, type HealthEvent } from '../../sidecar/observe/events.ts';
import { Balancer } from '../../sidecar/select/balancer.ts';
import { failoverYaml } from '../../simulator/config.ts';

/** A fixed wall-clock start, so `until` values read as plain numbers in failures. */
export const T0 = 1_800_000_000_000;

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

/** Mocks setTimeout, setInterval and Date from T0 until the test ends. */
export function useMockClock(t: Teardown, now = T0): void {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now });
  t.teardown(() => mock.timers.reset());
}

/** Advances the mock clock. */
export function tick(ms: number): void {
  mock.timers.tick(ms);
}

/** Lets opossum count what was just fired (its outcome lands a few microtasks later). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export interface UnitModel {
  name: string;
  /** 0-based priority group. */
  group: number;
}

/**
 * A plan for these models (the same YAML as test/support/yaml.ts `backendYaml`, without importing
 * the sidecar runtime and SDKs that file brings; ports are never dialled), with an optional
 * FailoverPolicy `spec:` body (two-space indented, e.g. `  health:\n    probe:\n      kind: none\n`).
 */
export function unitPlan(models: UnitModel[], policySpec = ''): Plan {
  const backend = failoverYaml(models.map((m, i) => ({ ...m, port: 10_000 + i, token: 'sk-unit-test-0123456789' })));
  const policy = policySpec
    ? `---
apiVersion: llm-failover.dev/v1alpha1
kind: FailoverPolicy
metadata:
  name: unit
spec:
  targetRefs:
  - kind: Backend
    name: model-failover
${policySpec}`
    : '';
  return loadPlan([{ name: 'unit.yaml', text: backend + policy }], { env: {} });
}

export const PROBES_OFF = `  health:
    probe:
      kind: none
`;

export interface Rig {
  plan: Plan;
  backend: BackendPlan;
  events: Events;
  view: HealthView;
  breakers: Breakers;
  passive: PassiveHealth;
  active: ActiveHealth;
  balancer: Balancer;
  /** Every health transition, in order. */
  transitions: HealthEvent[];
  /** Models whose breaker went half-open, in order. */
  halfOpened: string[];
  model(name: string): ModelTarget;
  /** The model names a fresh cursor yields, in order, until it has nothing left. */
  order(): string[];
  /** `n` requests' first picks (one fresh cursor each). */
  firstPicks(n: number): string[];
}

/**
 * The health objects of one Backend, wired as health/monitor.ts wires them: the view, a breaker
 * per model, passive and active health on them, a balancer reading the view. A half-open breaker
 * hands its trial to one request (`grantTrial`) unless `trialByProbe` (then the test runs it).
 * Call it after useMockClock.
 */
export function rig(t: Teardown, plan: Plan, options: { trialByProbe?: boolean } = {}): Rig {
  const now = () => Date.now();
  const backend = plan.backends[0];
  const models = backend.groups.flat();
  const events = new Events();
  const view = new HealthView(events, models, now);
  const halfOpened: string[] = [];
  const breakers = new Breakers(view, models, {
    onHalfOpen: (m) => {
      halfOpened.push(m.name);
      if (!options.trialByProbe) view.grantTrial(m);
    },
  });
  t.teardown(() => {
    breakers.shutdown();
    view.close();
  });
  const transitions: HealthEvent[] = [];
  events.on('health', (e) => transitions.push(e));
  const balancer = new Balancer(view);
  const model = (name: string) => {
    const m = models.find((x) => x.name === name);
    if (!m) throw new Error(`no model ${name}`);
    return m;
  };
  return {
    plan,
    backend,
    events,
    view,
    breakers,
    passive: new PassiveHealth(view, breakers, now),
    active: new ActiveHealth(view, breakers, now),
    balancer,
    transitions,
    halfOpened,
    model,
    order() {
      const cursor = balancer.cursor(backend);
      const out: string[] = [];
      for (let pick = cursor.next(); pick; pick = cursor.next()) out.push(pick.model.name);
      return out;
    },
    firstPicks(n) {
      const out: string[] = [];
      for (let i = 0; i < n; i++) {
        const pick = balancer.cursor(backend).next();
        out.push(pick ? pick.model.name : '(none)');
      }
      return out;
    },
  };
}

export function failure(reason: FailureReason, extra: Partial<Failure> = {}): Failure {
  return { reason, message: `simulated ${reason}`, ...extra };
}

let probeSeq = 0;

/** A probe result, as probes/probe.ts would hand it to ActiveHealth. */
export function probe(ok: boolean, extra: Partial<ProbeResult> = {}): ProbeResult {
  return {
    kind: 'chat',
    ok,
    durationMs: 50,
    trigger: 'schedule',
    id: `unit-probe-${++probeSeq}`,
    ...(ok ? {} : { failure: failure('upstream_5xx', { status: 503 }) }),
    ...extra,
  };
}

/** A small seeded PRNG (mulberry32): the same seed, the same sequence, on every run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let r = Math.imul(a ^ (a >>> 15), 1 | a);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}
