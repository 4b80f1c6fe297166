/**
 * One configuration's worth of runtime: the plan, its router, pools, health monitor and
 * balancer. A config reload builds a new generation and swaps it in atomically; requests in
 * flight finish on the generation they started with, which is closed once they are done.
 * Models that did not change keep their health (state, breaker, latency) across the swap.
 */
import { allModels, type ModelTarget, type Plan } from '../config/plan.ts';
import { FileSecret } from '../core/secret.ts';
import { HealthMonitor } from '../health/monitor.ts';
import { ProbeScheduler } from '../../probes/scheduler.ts';
import type { Events } from '../observe/events.ts';
import type { FailoverDeps } from '../failover/failover.ts';
import { Balancer } from '../select/balancer.ts';
import { Pools } from '../send/pools.ts';
import { createRouter, type Router } from '../config/routes.ts';
import { ADAPTERS } from '../translate/index.ts';

/** What makes a model "the same" across a reload: everything but the key's value. */
function fingerprint(m: ModelTarget): string {
  return JSON.stringify(m);
}

export class Generation {
  readonly number: number;
  readonly plan: Plan;
  readonly router: Router;
  readonly monitor: HealthMonitor;
  /** The active probes of this configuration; they write health through the monitor's ActiveHealth. */
  readonly probes: ProbeScheduler;
  readonly deps: FailoverDeps;
  readonly #pools: Pools;
  readonly #models: ModelTarget[];
  #inFlight = 0;
  #retired = false;
  #closed?: Promise<void>;
  #onIdle?: () => void;

  constructor(number: number, plan: Plan, events: Events, previous?: Generation) {
    this.number = number;
    this.plan = plan;
    // every registered provider has an adapter (translate/index.ts does not compile otherwise)
    const adapters = ADAPTERS;
    this.#models = plan.backends.flatMap(allModels);
    // as many connections per provider as requests may be in flight (HTTP/1.1 carries one at a time)
    this.#pools = new Pools(this.#models, { connectionsPerOrigin: plan.server.maxConcurrentRequests });
    this.monitor = new HealthMonitor(events, plan.backends);
    this.probes = new ProbeScheduler(plan.backends, this.monitor.view, this.monitor.active, { pools: this.#pools, adapters }, events);
    this.monitor.useProber(this.probes);
    this.router = createRouter(plan.routes);
    this.deps = { balancer: new Balancer(this.monitor.view), health: this.monitor, pools: this.#pools, events, adapters };
    if (previous) this.#inherit(previous);
  }

  /** Health of models that did not change carries over; nothing is announced (nothing changed). */
  #inherit(previous: Generation): void {
    const before = new Map(previous.#models.map((m) => [m.key, m]));
    for (const m of this.#models) {
      const old = before.get(m.key);
      if (!old || fingerprint(old) !== fingerprint(m)) continue;
      const health = previous.monitor.view.get(old);
      this.monitor.view.restore(m, health);
      if (health.state === 'open') this.monitor.breakers.trip(m);
    }
  }

  start(): void {
    this.probes.start();
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** A request starts on this generation; call the returned function when it is done. */
  enter(): () => void {
    this.#inFlight++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.#inFlight--;
      if (this.#inFlight === 0) this.#onIdle?.();
    };
  }

  /** Replaced by a newer generation: stop probing now, close once the last request is done. */
  retire(): Promise<void> {
    this.#retired = true;
    this.probes.stop();
    if (this.#inFlight === 0) return this.close();
    return new Promise((resolve) => {
      this.#onIdle = () => resolve(this.close());
    });
  }

  get retired(): boolean {
    return this.#retired;
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.probes.stop();
      this.monitor.stop();
      for (const m of this.#models) if (m.auth.kind === 'static' && m.auth.token instanceof FileSecret) m.auth.token.close();
      await this.#pools.close();
    })();
    return this.#closed;
  }
}
