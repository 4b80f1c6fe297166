/**
 * One view of every model's health. Passive checks (the outcomes of real requests), cooldowns,
 * and later probes and breakers write it; selection reads it. Every change is published on
 * the event stream as a `health` event, so telemetry never has to be called from here.
 */
import type { ModelTarget } from '../config/plan.ts';
import type { Events, Origin } from '../observe/events.ts';
import { type HealthState, isUsable } from '../core/health-state.ts';

export interface ModelHealth {
  state: HealthState;
  since: number;
  cause: string;
  /** When a timed state (cooling, or unhealthy without probes) ends by itself. */
  until?: number;
  /** `until` is the provider's own stated wait (Retry-After and kin), not a default cooldown: the model is not called before it, not even as a last resort. */
  statedWait?: boolean;
  lastStatus?: number;
  lastError?: string;
  lastSuccessAt?: number;
  lastFailureAt?: number;
  successes: number;
  failures: number;
  /** Smoothed time to first token of streamed answers (real traffic and chat probes). */
  ttftMs?: number;
  /** Smoothed duration of non-streamed answers. */
  totalMs?: number;
  /** When a real request last proved the model answers fast enough (TTFT, or a quick non-streamed answer). */
  lastEvidenceAt?: number;
  probe: {
    at?: number;
    kind?: string;
    ok?: boolean;
    error?: string;
    durationMs?: number;
    /** Consecutive successes / failures, for the thresholds. */
    okStreak: number;
    failStreak: number;
  };
  /** Consecutive slow / fast first-token samples, for degraded hysteresis. */
  slowStreak: number;
  fastStreak: number;
}

/** Weight of a new latency sample in the smoothed averages. */
const EWMA_WEIGHT = 0.2;

export interface SetOptions {
  until?: number;
  /** `until` is a default cooldown the sidecar chose, not a wait the provider stated. */
  assumedWait?: boolean;
  status?: number;
  error?: string;
  /** The probe or request attempt that caused the change (for the health trace's link). */
  origin?: Origin;
}

export class HealthView {
  readonly #events: Events;
  readonly #models = new Map<string, { target: ModelTarget; health: ModelHealth; timer?: NodeJS.Timeout }>();
  readonly #now: () => number;
  /** Open models whose breaker went half-open with no probe to run the trial: one request may. */
  readonly #trials = new Set<string>();
  /** Models a request is stuck on, until the suspicion probe answers (or the time runs out). */
  readonly #suspected = new Map<string, number>();

  constructor(events: Events, models: ModelTarget[], now: () => number = Date.now) {
    this.#events = events;
    this.#now = now;
    const at = now();
    for (const target of models) {
      this.#models.set(target.key, {
        target,
        health: { state: 'healthy', since: at, cause: 'start', successes: 0, failures: 0, probe: { okStreak: 0, failStreak: 0 }, slowStreak: 0, fastStreak: 0 },
      });
    }
  }

  get(model: ModelTarget): ModelHealth {
    return this.#entry(model).health;
  }

  state(model: ModelTarget): HealthState {
    return this.#entry(model).health.state;
  }

  isUsable(model: ModelTarget): boolean {
    return isUsable(this.#entry(model).health.state);
  }

  /** Moves a model to a state. A timed state (options.until) returns to healthy by itself when it ends. */
  set(model: ModelTarget, state: HealthState, cause: string, options: SetOptions = {}): void {
    const entry = this.#entry(model);
    const h = entry.health;
    const now = this.#now();
    if (options.status !== undefined) h.lastStatus = options.status;
    if (options.error !== undefined) h.lastError = options.error;
    if (entry.timer) {
      clearTimeout(entry.timer);
      entry.timer = undefined;
    }
    h.until = options.until;
    h.statedWait = options.until !== undefined && state === 'cooling' && !options.assumedWait;
    if (options.until !== undefined) {
      this.#arm(model, entry);
    }
    if (h.state === state) {
      h.cause = cause;
      return;
    }
    const from = h.state;
    h.state = state;
    h.since = now;
    h.cause = cause;
    // Streaks count evidence since the last transition, whoever made it: a model taken down by
    // user traffic still needs healthyThreshold probes in a row, not one more than it had.
    h.probe.okStreak = 0;
    h.probe.failStreak = 0;
    h.slowStreak = 0;
    h.fastStreak = 0;
    this.#events.emit('health', { model, from, to: state, cause, until: options.until, at: now, origin: options.origin });
  }

  /** Takes over a model's health from a previous configuration, silently (nothing changed). */
  restore(model: ModelTarget, health: ModelHealth): void {
    const entry = this.#entry(model);
    entry.health = { ...health, probe: { ...health.probe } };
    if (health.until !== undefined) this.#arm(model, entry);
  }

  /**
   * Ends a timed state when its time is up. Timers run on a monotonic clock and `until` is wall
   * time, so a timer can fire a little early: it then waits out the rest instead of giving up
   * (a model must never stay cooling forever).
   */
  #arm(model: ModelTarget, entry: { health: ModelHealth; timer?: NodeJS.Timeout }): void {
    const until = entry.health.until;
    if (until === undefined) return;
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (entry.health.until !== until) return; // superseded by a later set()
      if (until > this.#now()) this.#arm(model, entry);
      else this.set(model, 'healthy', `${entry.health.state} ended`);
    }, Math.max(1, until - this.#now()));
    entry.timer.unref();
  }

  recordSuccess(model: ModelTarget): void {
    const h = this.#entry(model).health;
    h.successes++;
    h.lastSuccessAt = this.#now();
  }

  /** A latency sample: time to first token (streamed) or whole duration (non-streamed). */
  recordLatency(model: ModelTarget, sample: { ttftMs?: number; totalMs?: number }): void {
    const h = this.#entry(model).health;
    if (sample.ttftMs !== undefined) h.ttftMs = h.ttftMs === undefined ? sample.ttftMs : h.ttftMs + EWMA_WEIGHT * (sample.ttftMs - h.ttftMs);
    if (sample.totalMs !== undefined) h.totalMs = h.totalMs === undefined ? sample.totalMs : h.totalMs + EWMA_WEIGHT * (sample.totalMs - h.totalMs);
  }

  markEvidence(model: ModelTarget): void {
    this.#entry(model).health.lastEvidenceAt = this.#now();
  }

  recordFailure(model: ModelTarget, status: number | undefined, error: string): void {
    const h = this.#entry(model).health;
    h.failures++;
    h.lastFailureAt = this.#now();
    h.lastStatus = status;
    h.lastError = error;
  }

  /** The provider asked us to wait and the wait is not over: the model is not called, not even as a last resort. */
  isHeldBack(model: ModelTarget): boolean {
    const h = this.#entry(model).health;
    return h.state === 'cooling' && h.statedWait === true && h.until !== undefined && h.until > this.#now();
  }

  /**
   * The earliest moment one of these models is expected back, for a refusal's Retry-After: a
   * timed state's end (a cooldown, a provider's Retry-After); an open breaker's trial; a down
   * model's next probe. Models still usable say nothing (they just failed this request): with
   * none down, a second. Never less than a second from now.
   */
  earliestRecovery(models: Iterable<ModelTarget>): number {
    const now = this.#now();
    let earliest = Number.POSITIVE_INFINITY;
    for (const m of models) {
      const h = this.#entry(m).health;
      let at: number | undefined;
      if (h.until !== undefined) at = h.until;
      else if (h.state === 'open') at = h.since + m.health.breaker.resetTimeoutMs;
      else if (h.state === 'unhealthy') at = now + m.health.probe.intervalMs;
      if (at !== undefined && at < earliest) earliest = at;
    }
    return Math.max(Number.isFinite(earliest) ? earliest : now, now + 1000);
  }

  /**
   * A request is stuck waiting for this model's first token and a probe is checking it: new
   * requests go elsewhere meanwhile, so a hang does not pile traffic onto the model while it is
   * being found out. Not a health state (nothing is known yet): it ends with the probe's answer.
   */
  suspect(model: ModelTarget, forMs: number): void {
    this.#suspected.set(model.key, this.#now() + forMs);
  }

  clearSuspicion(model: ModelTarget): void {
    this.#suspected.delete(model.key);
  }

  isSuspected(model: ModelTarget): boolean {
    const until = this.#suspected.get(model.key);
    if (until === undefined) return false;
    if (until > this.#now()) return true;
    this.#suspected.delete(model.key);
    return false;
  }

  grantTrial(model: ModelTarget): void {
    this.#trials.add(model.key);
  }

  /** Takes the model's single half-open trial, if it has one. */
  takeTrial(model: ModelTarget): boolean {
    return this.#trials.delete(model.key);
  }

  hasTrial(model: ModelTarget): boolean {
    return this.#trials.has(model.key);
  }

  models(): ModelTarget[] {
    return [...this.#models.values()].map((e) => e.target);
  }

  close(): void {
    for (const entry of this.#models.values()) if (entry.timer) clearTimeout(entry.timer);
  }

  #entry(model: ModelTarget) {
    const entry = this.#models.get(model.key);
    if (!entry) throw new Error(`unknown model ${model.key}`);
    return entry;
  }
}
