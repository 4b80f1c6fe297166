/**
 * Prometheus metrics (prom-client), fed by the event stream and served on the admin address at
 * /metrics. Base units, `_total` counters, labels bounded by the configuration (provider names,
 * route rules, failure reasons), histogram buckets from the OpenTelemetry GenAI conventions.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { BackendPlan, ModelTarget } from '../config/plan.ts';
import { FLAG_PRECEDENCE, type HealthFlagName, type HealthState } from '../core/health-state.ts';
import { redact } from '../core/secret.ts';
import type { Events } from './events.ts';
import { TalliedCounter, TalliedHistogram } from './tally.ts';

/** gen_ai.client.operation.duration */
export const DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
/** gen_ai.server.time_to_first_token */
export const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
/** gen_ai.client.token.usage */
export const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];

const STATES: HealthState[] = ['healthy', 'degraded', 'unhealthy', 'open', 'cooling'];

function statusClass(status: number | undefined): string {
  return status === undefined ? 'none' : `${Math.floor(status / 100)}xx`;
}

function modelLabels(m: ModelTarget) {
  return { backend: m.backend, provider: m.name, model: m.model ?? '', group: String(m.group + 1) };
}

/** What the gauges read of health at scrape time (the health monitor has it; observe does not import health). */
export interface HealthReadout {
  view: { state(model: ModelTarget): HealthState; flagsOf(model: ModelTarget): readonly HealthFlagName[] };
  breakers: { stats(model: ModelTarget): { state: 'closed' | 'open' | 'halfOpen' } | undefined };
}

export interface MetricsSources {
  /** The configuration being served (it changes on reload). */
  current(): { plan: { backends: BackendPlan[] }; monitor: HealthReadout };
  inFlight(): number;
}

/** The exposition passes the one scrubber at scrape: labels are configuration names, and stay so. */
class ScrubbedRegistry extends Registry {
  override async metrics(): Promise<string> {
    return redact(await super.metrics());
  }
}

export function createMetrics(events: Events, sources: MetricsSources): Registry {
  const registry = new ScrubbedRegistry();
  /** Every model of the configuration being served now (gauges read health at scrape time). */
  const eachModel = (fn: (m: ModelTarget, monitor: HealthReadout) => void) => {
    const { plan, monitor } = sources.current();
    for (const b of plan.backends) for (const m of b.groups.flat()) fn(m, monitor);
  };
  collectDefaultMetrics({ register: registry });
  // prom-client names these gauges *_total, which Prometheus reserves for counters (promtool says so)
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'])
    registry.removeSingleMetric(name);
  const modelLabelNames = ['backend', 'provider', 'model', 'group'] as const;

  // the request path's metrics: tallied (plain numbers per label set), formatted at scrape time
  const requests = new TalliedCounter({
    name: 'llm_failover_requests_total',
    help: 'Requests served, by route rule, outcome (ok, failed, cut, client_gone) and status code.',
    labelNames: ['route', 'backend', 'stream', 'outcome', 'status_code'],
    registers: [registry],
  });
  const duration = new TalliedHistogram({
    name: 'llm_failover_request_duration_seconds',
    help: 'Whole request duration, every attempt included.',
    labelNames: ['route', 'backend', 'stream', 'outcome'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  new Gauge({
    name: 'llm_failover_requests_in_flight',
    help: 'Requests being served now.',
    registers: [registry],
    collect() {
      this.set(sources.inFlight());
    },
  });
  const attempts = new TalliedCounter({
    name: 'llm_failover_upstream_attempts_total',
    help: 'Attempts sent to a model, by outcome (success or failure reason) and status class.',
    labelNames: [...modelLabelNames, 'outcome', 'status_class'],
    registers: [registry],
  });
  const switches = new TalliedCounter({
    name: 'llm_failover_switches_total',
    help: 'Requests moved from one model to another inside the request, by reason.',
    labelNames: ['backend', 'from', 'to', 'reason'],
    registers: [registry],
  });
  const transitions = new Counter({
    name: 'llm_failover_health_transitions_total',
    help: 'Model health state changes.',
    labelNames: ['backend', 'provider', 'from', 'to'],
    registers: [registry],
  });
  new Gauge({
    name: 'llm_failover_model_state',
    help: 'The health state of each model: 1 for its current state, 0 for the others.',
    labelNames: [...modelLabelNames, 'state'],
    registers: [registry],
    collect() {
      this.reset();
      eachModel((m, monitor) => {
        const current = monitor.view.state(m);
        for (const s of STATES) this.set({ ...modelLabels(m), state: s }, s === current ? 1 : 0);
      });
    },
  });
  new Gauge({
    name: 'llm_failover_model_flag',
    help: 'The health flags of each model (breaker, passive, probe, cooldown, slow): 1 while the flag is set (it holds the model out; slow demotes it), 0 otherwise. The first set, in that order, gives llm_failover_model_state.',
    labelNames: [...modelLabelNames, 'flag'],
    registers: [registry],
    collect() {
      this.reset();
      eachModel((m, monitor) => {
        const set = monitor.view.flagsOf(m);
        for (const f of FLAG_PRECEDENCE) this.set({ ...modelLabels(m), flag: f }, set.includes(f) ? 1 : 0);
      });
    },
  });
  const rejected = new TalliedCounter({
    name: 'llm_failover_rejected_requests_total',
    help: 'Requests answered with an error before any model was asked: bad input, limits, overload (code sidecar_overloaded).',
    labelNames: ['status_code', 'code'],
    registers: [registry],
  });
  // under overload these come fast: tallied like the request path's own
  events.on('rejected', (e) => rejected.inc(`${e.status}|${e.code}`, () => ({ status_code: String(e.status), code: e.code })));
  const reloads = new Counter({
    name: 'llm_failover_config_reloads_total',
    help: 'Configuration changes seen, by result (applied, rejected).',
    labelNames: ['result'],
    registers: [registry],
  });
  new Gauge({
    name: 'llm_failover_breaker_state',
    help: 'Each model breaker: 1 for its current state (closed, open, halfOpen), 0 for the others.',
    labelNames: ['backend', 'provider', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      eachModel((m, monitor) => {
        const s = monitor.breakers.stats(m);
        if (s)
          for (const st of ['closed', 'open', 'halfOpen'])
            this.set({ backend: m.backend, provider: m.name, state: st }, s.state === st ? 1 : 0);
      });
    },
  });
  const probes = new Counter({
    name: 'llm_failover_probes_total',
    help: 'Health probes run, by kind (chat, models), trigger and result.',
    labelNames: ['backend', 'provider', 'kind', 'trigger', 'result'],
    registers: [registry],
  });
  const probeDuration = new Histogram({
    name: 'llm_failover_probe_duration_seconds',
    help: 'Health probe duration.',
    labelNames: ['backend', 'provider', 'kind'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const ttft = new TalliedHistogram({
    name: 'llm_failover_time_to_first_token_seconds',
    help: 'Time from sending an attempt to its first content chunk (streamed answers).',
    labelNames: modelLabelNames,
    buckets: TTFT_BUCKETS,
    registers: [registry],
  });
  const tokens = new TalliedHistogram({
    name: 'llm_failover_token_usage',
    help: 'Tokens per answered attempt, as the provider reported them (token_type input or output).',
    labelNames: [...modelLabelNames, 'token_type'],
    buckets: TOKEN_BUCKETS,
    registers: [registry],
  });

  events.on('attempt-end', (e) => {
    const m = e.model;
    const cls = statusClass(e.status);
    // the key covers every label: a reload may move a provider to another group or model
    const mk = `${m.key}|${m.model}|${m.group}`;
    attempts.inc(`${mk}|${e.outcome}|${cls}`, () => ({ ...modelLabels(m), outcome: e.outcome, status_class: cls }));
    if (e.firstChunkMs !== undefined) ttft.observe(mk, () => modelLabels(m), e.firstChunkMs / 1000);
    if (e.usage) {
      tokens.observe(`${mk}|in`, () => ({ ...modelLabels(m), token_type: 'input' }), e.usage.inputTokens);
      tokens.observe(`${mk}|out`, () => ({ ...modelLabels(m), token_type: 'output' }), e.usage.outputTokens);
    }
  });
  events.on('switch', (e) =>
    switches.inc(`${e.from.key}|${e.to.key}|${e.reason}`, () => ({
      backend: e.from.backend,
      from: e.from.name,
      to: e.to.name,
      reason: e.reason,
    })),
  );
  events.on('health', (e) => {
    transitions.inc({ backend: e.model.backend, provider: e.model.name, from: e.from, to: e.to });
  });
  events.on('config', (e) => reloads.inc({ result: e.ok ? 'applied' : 'rejected' }));
  events.on('probe', (e) => {
    probes.inc({
      backend: e.model.backend,
      provider: e.model.name,
      kind: e.kind,
      trigger: e.trigger,
      result: e.ok ? 'success' : (e.reason ?? 'failure'),
    });
    probeDuration.observe({ backend: e.model.backend, provider: e.model.name, kind: e.kind }, e.durationMs / 1000);
  });
  events.on('request', (e) => {
    const key = `${e.backend}|${e.route}|${e.stream}|${e.outcome}`;
    const labels = () => ({ route: e.route, backend: e.backend, stream: String(e.stream), outcome: e.outcome });
    requests.inc(`${key}|${e.status}`, () => ({ ...labels(), status_code: String(e.status) }));
    duration.observe(key, labels, e.durationMs / 1000);
  });
  return registry;
}
