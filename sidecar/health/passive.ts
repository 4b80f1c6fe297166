/**
 * Passive health: what the outcome of a real attempt says about its model.
 * A failure cools the model for a while (a Retry-After sets how long); a failure that says the
 * model cannot serve at all (401/403/404) marks it unhealthy for longer. A success heals it.
 */
import type { FailoverSettings, ModelTarget } from '../config/plan.ts';
import { type Failure, isAuthOrConfig } from '../retry/failure.ts';
import type { HealthView } from './view.ts';

export class PassiveHealth {
  readonly #view: HealthView;
  readonly #now: () => number;

  constructor(view: HealthView, now: () => number = Date.now) {
    this.#view = view;
    this.#now = now;
  }

  onSuccess(model: ModelTarget): void {
    this.#view.recordSuccess(model);
    if (this.#view.state(model) !== 'healthy') this.#view.set(model, 'healthy', 'served a request');
  }

  onFailure(model: ModelTarget, failure: Failure, settings: FailoverSettings): void {
    this.#view.recordFailure(model, failure.status, failure.message);
    // The request's own fault, or too long for this model's context window: says nothing of the model.
    if (failure.reason === 'client_error' || failure.reason === 'context_length') return;
    const now = this.#now();
    const cause = failure.status ? `${failure.reason} (upstream ${failure.status})` : failure.reason;
    if (isAuthOrConfig(failure.reason)) {
      this.#view.set(model, 'unhealthy', cause, { until: now + settings.cooldownAfterAuthFailureMs, status: failure.status, error: failure.message });
      return;
    }
    const forMs = failure.retryAfterMs ?? settings.cooldownAfterFailureMs;
    this.#view.set(model, 'cooling', cause, { until: now + forMs, status: failure.status, error: failure.message });
  }
}
