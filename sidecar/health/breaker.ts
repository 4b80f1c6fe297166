/**
 * An opossum circuit breaker per model, fed by the outcome of every real attempt (and of the
 * half-open trial). It owns the model's `breaker` flag, and is the only one to touch it: set
 * when opossum opens (again after a failed trial: a new trial time), cleared when it closes.
 * What else holds the model out is other flags' business: a breaker closing clears no probe
 * verdict, and a cooldown ending clears no open breaker. The half-open trial is a probe when
 * probes run (a user request is never the guinea pig), else the next single request (the view
 * hands out one trial).
 */
import CircuitBreaker from 'opossum';
import type { ModelTarget } from '../config/plan.ts';
import type { Origin } from '../observe/events.ts';
import type { HealthView } from './view.ts';

export interface BreakerHooks {
  /** The breaker went half-open: run the trial. */
  onHalfOpen(model: ModelTarget): void;
}

type Outcome = { ok: boolean };

/** The breaker's action just replays an outcome that already happened. */
async function replay(outcome: Outcome): Promise<void> {
  if (!outcome.ok) throw new Error('attempt failed');
}

export class Breakers {
  readonly #breakers = new Map<string, CircuitBreaker<[Outcome], void>>();
  /** The last attempt or probe fed to each breaker: what made it open or close. */
  readonly #lastOrigin = new Map<string, Origin | undefined>();
  /** Failures in a row per model: a sudden outage under steady traffic opens the breaker after
   * `consecutiveFailures`, instead of after the window's earlier successes have aged out. */
  readonly #streak = new Map<string, number>();
  /** Why a breaker was opened by hand (the streak), for its health event. */
  readonly #tripped = new Map<string, string>();
  /** Why a breaker was closed by hand (a request got through), for its health event. */
  readonly #closing = new Map<string, string>();

  constructor(view: HealthView, models: ModelTarget[], hooks: BreakerHooks) {
    for (const model of models) {
      const s = model.health.breaker;
      if (!s.enabled) continue;
      const breaker = new CircuitBreaker(replay, {
        timeout: false,
        errorThresholdPercentage: s.errorThresholdPercentage,
        volumeThreshold: s.volumeThreshold,
        rollingCountTimeout: s.windowMs,
        rollingCountBuckets: 10,
        resetTimeout: s.resetTimeoutMs,
        name: model.name,
      });
      breaker.on('open', () => {
        const stats = breaker.stats;
        const why = this.#tripped.get(model.key) ?? `${stats.failures} of ${stats.fires} attempts failed in ${s.windowMs} ms`;
        this.#tripped.delete(model.key);
        // opened, or reopened by a failed trial: the next trial is resetTimeout from now
        view.raise(model, 'breaker', `breaker opened: ${why}`, {
          until: view.now() + s.resetTimeoutMs,
          origin: this.#lastOrigin.get(model.key),
        });
      });
      breaker.on('halfOpen', () => hooks.onHalfOpen(model));
      breaker.on('close', () => {
        const why = this.#closing.get(model.key) ?? 'the trial succeeded';
        this.#closing.delete(model.key);
        view.clear(model, 'breaker', `breaker closed: ${why}`, { origin: this.#lastOrigin.get(model.key) });
      });
      this.#breakers.set(model.key, breaker);
    }
  }

  /** Feeds one outcome into the model's rolling window. */
  record(model: ModelTarget, ok: boolean, origin?: Origin): void {
    const breaker = this.#breakers.get(model.key);
    if (!breaker) return;
    this.#lastOrigin.set(model.key, origin);
    const streak = ok ? 0 : (this.#streak.get(model.key) ?? 0) + 1;
    this.#streak.set(model.key, streak);
    const limit = model.health.breaker.consecutiveFailures;
    if (!ok && limit > 0 && streak >= limit && breaker.closed) {
      this.#streak.set(model.key, 0);
      this.#tripped.set(model.key, `${streak} attempts failed in a row`);
      breaker.open();
      return;
    }
    // An open breaker rejects at once without counting: nothing to record.
    breaker.fire({ ok }).catch(() => undefined);
  }

  isHalfOpen(model: ModelTarget): boolean {
    return this.#breakers.get(model.key)?.halfOpen ?? false;
  }

  /** Opens the breaker (a model that was open before a config reload stays open). */
  trip(model: ModelTarget, why = 'kept open across a configuration reload'): void {
    const breaker = this.#breakers.get(model.key);
    if (!breaker || breaker.opened) return;
    this.#tripped.set(model.key, why);
    breaker.open();
  }

  /**
   * A real request got through: the breaker closes at once (real traffic opened it, real
   * traffic heals it), whether the request was the half-open trial or not.
   */
  close(model: ModelTarget): void {
    const breaker = this.#breakers.get(model.key);
    if (!breaker || breaker.closed) return;
    this.#closing.set(model.key, breaker.halfOpen ? 'the trial succeeded' : 'a request succeeded');
    breaker.close();
  }

  stats(model: ModelTarget): { state: 'closed' | 'open' | 'halfOpen'; fires: number; failures: number; successes: number } | undefined {
    const breaker = this.#breakers.get(model.key);
    if (!breaker) return undefined;
    const s = breaker.stats;
    return {
      state: breaker.halfOpen ? 'halfOpen' : breaker.opened ? 'open' : 'closed',
      fires: s.fires,
      failures: s.failures,
      successes: s.successes,
    };
  }

  shutdown(): void {
    for (const b of this.#breakers.values()) b.shutdown();
  }
}
