/**
 * An opossum circuit breaker per model, fed by the outcome of every real attempt (and of the
 * half-open trial). Its state is mirrored into the health view: open -> `open`, closed -> back
 * to `healthy`. The half-open trial is a probe when probes run (a user request is never the
 * guinea pig), else the next single request (the view hands out one trial).
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
        view.set(model, 'open', `breaker opened: ${why}`, { origin: this.#lastOrigin.get(model.key) });
      });
      breaker.on('halfOpen', () => hooks.onHalfOpen(model));
      breaker.on('close', () => {
        if (view.state(model) === 'open') view.set(model, 'healthy', 'breaker closed: the trial succeeded', { origin: this.#lastOrigin.get(model.key) });
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
  trip(model: ModelTarget): void {
    this.#breakers.get(model.key)?.open();
  }

  /** The model recovered by other means (probes): close its breaker so the window starts clean. */
  close(model: ModelTarget): void {
    const breaker = this.#breakers.get(model.key);
    if (breaker && !breaker.closed) breaker.close();
  }

  stats(model: ModelTarget): { state: 'closed' | 'open' | 'halfOpen'; fires: number; failures: number; successes: number } | undefined {
    const breaker = this.#breakers.get(model.key);
    if (!breaker) return undefined;
    const s = breaker.stats;
    return { state: breaker.halfOpen ? 'halfOpen' : breaker.opened ? 'open' : 'closed', fires: s.fires, failures: s.failures, successes: s.successes };
  }

  shutdown(): void {
    for (const b of this.#breakers.values()) b.shutdown();
  }
}
