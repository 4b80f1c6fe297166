/**
 * Selection: which model a request tries next. Priority groups in order; round robin over the
 * usable models of a group (counters shared by all requests); the next group only when a group
 * has nothing usable left. When nothing anywhere is usable, every model not yet tried is tried
 * anyway, in priority order: health can be wrong, and an attempt beats a certain 503. Except a
 * model the provider told to wait (a 429's Retry-After that is not over): calling it inside its
 * stated wait spends quota and earns another 429.
 */
import type { BackendPlan, ModelTarget } from '../config/plan.ts';
import type { HealthView } from '../health/view.ts';

export interface Pick {
  model: ModelTarget;
  /** True when the model was not usable and is tried as a last resort. */
  lastResort: boolean;
}

export class Balancer {
  readonly #health: HealthView;
  readonly #counters = new Map<BackendPlan, number[]>();

  constructor(health: HealthView) {
    this.#health = health;
  }

  /** A per-request cursor over the candidates; reads health afresh at every step. */
  cursor(backend: BackendPlan): Cursor {
    let counters = this.#counters.get(backend);
    if (!counters) {
      counters = backend.groups.map(() => 0);
      this.#counters.set(backend, counters);
    }
    return new Cursor(backend, this.#health, counters);
  }
}

export class Cursor {
  readonly #backend: BackendPlan;
  readonly #health: HealthView;
  readonly #counters: number[];
  /** The round-robin position this request took in each group it reached. */
  readonly #offsets: (number | undefined)[] = [];
  readonly tried = new Set<ModelTarget>();

  constructor(backend: BackendPlan, health: HealthView, counters: number[]) {
    this.#backend = backend;
    this.#health = health;
    this.#counters = counters;
  }

  next(): Pick | undefined {
    const groups = this.#backend.groups;
    for (let g = 0; g < groups.length; g++) {
      const group = groups[g];
      for (const m of group) {
        // an open breaker's half-open trial, when no probe runs it: exactly one request (not
        // inside a stated Retry-After: the trial waits for it)
        if (
          !this.tried.has(m) &&
          this.#health.hasTrial(m) &&
          this.#health.state(m) === 'open' &&
          !this.#health.isHeldBack(m) &&
          this.#health.takeTrial(m)
        )
          return this.#take(m, false);
      }
      const usable = this.#usable(group, 'healthy');
      const pool = usable.length > 0 ? usable : this.#usable(group, 'degraded');
      if (pool.length === 0) continue;
      let offset = this.#offsets[g];
      if (offset === undefined) {
        offset = this.#counters[g];
        this.#counters[g] = (offset + 1) % 1_000_000_007;
        this.#offsets[g] = offset;
      }
      return this.#take(pool[offset % pool.length], false);
    }
    for (const group of groups) {
      for (const model of group) if (!this.tried.has(model) && !this.#health.isHeldBack(model)) return this.#take(model, true);
    }
    return undefined;
  }

  #usable(group: ModelTarget[], state: 'healthy' | 'degraded'): ModelTarget[] {
    const out: ModelTarget[] = [];
    for (const m of group) if (!this.tried.has(m) && this.#health.state(m) === state && !this.#health.isSuspected(m)) out.push(m);
    return out;
  }

  #take(model: ModelTarget, lastResort: boolean): Pick {
    this.tried.add(model);
    return { model, lastResort };
  }
}
