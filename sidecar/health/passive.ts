/**
 * Passive health: what the outcome of a real attempt says about its model.
 * - success: heals the model, feeds its latency and its breaker.
 * - 429 / 529: cooling for the Retry-After (or the default cooldown).
 * - 401 / 403 / 404: unhealthy until a probe succeeds (a rotated secret heals itself);
 *   with probes off, for the auth cooldown.
 * - unreachable (refused, DNS, TLS, connect timeout): unhealthy at once, likewise.
 * - every other failure (5xx, timeouts, resets, broken streams): the breaker's rolling window
 *   decides, so one failure in ten does not flap the model. With the breaker off, a cooldown.
 * - the request's own fault (a 4xx, too long a prompt for this model): nothing.
 */
import type { FailoverSettings, ModelTarget } from '../config/plan.ts';
import { type Failure, type FailureReason, isAuthOrConfig } from '../core/failure.ts';
import type { Breakers } from './breaker.ts';
import { observeFirstToken } from './latency.ts';
import type { HealthView } from './view.ts';
import type { Origin } from '../observe/events.ts';

const UNREACHABLE: ReadonlySet<FailureReason> = new Set(['connect_refused', 'dns', 'tls', 'connect_timeout']);

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
    if (failure.reason === 'client_error' || failure.reason === 'context_length' || failure.reason === 'untranslatable' || failure.reason === 'internal' || failure.reason === 'deadline_exceeded') return;
    const view = this.#view;
    view.recordFailure(model, failure.status, failure.message);
    const now = this.#now();
    const probed = model.health.probe.kind !== 'none';
    const cause = failure.status ? `${failure.reason} (upstream ${failure.status})` : failure.reason;
    const detail = { status: failure.status, error: failure.message, origin };
    if (failure.reason === 'rate_limited' || failure.reason === 'overloaded') {
      view.set(model, 'cooling', cause, { ...detail, until: now + (failure.retryAfterMs ?? settings.cooldownAfterFailureMs), assumedWait: failure.retryAfterMs === undefined });
      return;
    }
    if (isAuthOrConfig(failure.reason)) {
      view.set(model, 'unhealthy', cause, { ...detail, until: probed ? undefined : now + settings.cooldownAfterAuthFailureMs });
      return;
    }
    if (UNREACHABLE.has(failure.reason)) {
      view.set(model, 'unhealthy', cause, { ...detail, until: probed ? undefined : now + settings.cooldownAfterFailureMs });
      return;
    }
    if (model.health.breaker.enabled) this.#breakers.record(model, false, origin);
    else view.set(model, 'cooling', cause, { ...detail, until: now + settings.cooldownAfterFailureMs, assumedWait: true });
  }
}
