/**
 * Passive health: what the outcome of a real attempt says about its model.
 * - success: heals the model, feeds its latency and its breaker.
 * - a failure: what its reason's row of the failure table (core/failure.ts FAILURES) says:
 *   `cool` (429 / 529): cooling for the Retry-After (or the default cooldown);
 *   `down` (unreachable: refused, DNS, TLS, connect timeout; 401 / 402 / 403 / 404; no credit):
 *   unhealthy until a probe succeeds (a rotated secret heals itself); with probes off, for the
 *   auth cooldown when the failure is `definitive`, else the failure cooldown;
 *   `breaker` (5xx, timeouts, resets, broken streams): the breaker's rolling window decides, so
 *   one failure in ten does not flap the model; with the breaker off, a cooldown;
 *   `none` (the request's own fault, the sidecar's, the deadline; a model the view itself
 *   marked down): nothing.
 */
import type { FailoverSettings, ModelTarget } from '../config/plan.ts';
import { FAILURES, type Failure } from '../core/failure.ts';
import type { Breakers } from './breaker.ts';
import { observeFirstToken } from './latency.ts';
import type { HealthView } from './view.ts';
import type { Origin } from '../observe/events.ts';

export interface SuccessInfo {
  stream: boolean;
  ttftMs?: number;
  totalMs: number;
}

export class PassiveHealth {
  readonly #view: HealthView;
  readonly #breakers: Breakers;
  readonly #now: () => number;

  constructor(view: HealthView, breakers: Breakers, now: () => number = Date.now) {
    this.#view = view;
    this.#breakers = breakers;
    this.#now = now;
  }

  onSuccess(model: ModelTarget, info: SuccessInfo, origin?: Origin): void {
    const view = this.#view;
    view.recordSuccess(model);
    this.#breakers.record(model, true, origin);
    const slow = model.health.slowThresholdMs;
    if (info.ttftMs !== undefined) {
      observeFirstToken(view, model, info.ttftMs, origin);
      if (info.ttftMs <= slow) view.markEvidence(model);
    } else {
      view.recordLatency(model, { totalMs: info.totalMs });
      if (info.totalMs <= slow) view.markEvidence(model);
    }
    const state = view.state(model);
    if (state === 'unhealthy' || state === 'cooling' || state === 'open') {
      this.#breakers.close(model);
      if (view.state(model) !== 'healthy') view.set(model, 'healthy', 'served a request', { origin });
    }
  }

  onFailure(model: ModelTarget, failure: Failure, settings: FailoverSettings, origin?: Origin): void {
    const meaning = FAILURES[failure.reason];
    if (meaning.health === 'none') return;
    const view = this.#view;
    view.recordFailure(model, failure.status, failure.message);
    const now = this.#now();
    const probed = model.health.probe.kind !== 'none';
    const cause = failure.status ? `${failure.reason} (upstream ${failure.status})` : failure.reason;
    const detail = { status: failure.status, error: failure.message, origin };
    switch (meaning.health) {
      case 'cool':
        view.set(model, 'cooling', cause, { ...detail, until: now + (failure.retryAfterMs ?? settings.cooldownAfterFailureMs), assumedWait: failure.retryAfterMs === undefined });
        return;
      case 'down': {
        const cooldownMs = meaning.definitive ? settings.cooldownAfterAuthFailureMs : settings.cooldownAfterFailureMs;
        view.set(model, 'unhealthy', cause, { ...detail, until: probed ? undefined : now + cooldownMs });
        return;
      }
      case 'breaker':
        if (model.health.breaker.enabled) this.#breakers.record(model, false, origin);
        else view.set(model, 'cooling', cause, { ...detail, until: now + settings.cooldownAfterFailureMs, assumedWait: true });
    }
  }
}
