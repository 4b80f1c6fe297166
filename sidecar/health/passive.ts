/**
 * Passive health: what the outcome of a real attempt says about its model. It owns the
 * `passive` flag (a hard failure seen by real traffic) and writes the `cooldown` flag for real
 * traffic; it never touches the probes' verdict, and the breaker only through the breaker.
 * - success: heals at once what real traffic took down (the `passive` flag, a cooldown, an open
 *   breaker), feeds its latency and its breaker. The probes' verdict stays the probes' to lift.
 * - a failure: what its reason's row of the failure table (core/failure.ts FAILURES) says:
 *   `cool` (429 / 529): a cooldown for the Retry-After (or the default cooldown);
 *   `down` (unreachable: refused, DNS, TLS, connect timeout; 401 / 402 / 403 / 404; no credit):
 *   the `passive` flag until healthyThreshold probes succeed in a row (a rotated secret heals
 *   itself) or a real request does; with probes off, for the auth cooldown when the failure is
 *   `definitive`, else the failure cooldown;
 *   `breaker` (5xx, timeouts, resets, broken streams): the breaker's rolling window decides, so
 *   one failure in ten does not flap the model; with the breaker off, a cooldown;
 *   `none` (the request's own fault, the sidecar's, the deadline; a model the view itself
 *   marked down): nothing.
 */
import type { FailoverSettings, ModelTarget } from '../config/plan.ts';
import { FAILURES, type Failure } from '../core/failure.ts';
import type { HealthFlagName } from '../core/health-state.ts';
import type { Breakers } from './breaker.ts';
import { observeFirstToken } from './latency.ts';
import type { HealthView } from './view.ts';
import type { Origin } from '../observe/events.ts';

/** The flags a real success clears at once (the breaker closes through the breaker). */
const HEALED_BY_TRAFFIC: readonly HealthFlagName[] = ['passive', 'cooldown'];

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
    // what real traffic took down, real traffic heals at once: its own flags first, then the
    // breaker (so a model that was open and down goes back to healthy in one transition)
    view.clear(model, HEALED_BY_TRAFFIC, 'served a request', { origin });
    this.#breakers.close(model);
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
        view.raise(model, 'cooldown', cause, {
          ...detail,
          until: now + (failure.retryAfterMs ?? settings.cooldownAfterFailureMs),
          stated: failure.retryAfterMs !== undefined,
        });
        return;
      case 'down': {
        const cooldownMs = meaning.definitive ? settings.cooldownAfterAuthFailureMs : settings.cooldownAfterFailureMs;
        view.raise(model, 'passive', cause, { ...detail, until: probed ? undefined : now + cooldownMs });
        return;
      }
      case 'breaker':
        if (model.health.breaker.enabled) this.#breakers.record(model, false, origin);
        else view.raise(model, 'cooldown', cause, { ...detail, until: now + settings.cooldownAfterFailureMs, stated: false });
    }
  }
}
