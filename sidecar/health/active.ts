/**
 * Active health: what a probe result says about its model, with thresholds on both edges so a
 * model that fails one probe in ten does not flap. A failed probe of a model that is already
 * suspected (a user request is stuck on it) marks it down at once: two independent signals; so
 * does one whose reason is `definitive` in the failure table (core/failure.ts FAILURES). A probe
 * told to back off (a `cool` reason: 429 / 529) never takes the model down by itself: it cools
 * it for the provider's stated wait, if one was stated.
 */
import type { ModelTarget } from '../config/plan.ts';
import { redact } from '../core/secret.ts';
import { FAILURES, type Failure } from '../core/failure.ts';
import type { Breakers } from './breaker.ts';
import { observeFirstToken } from './latency.ts';
import { isUsable } from '../core/health-state.ts';
import type { HealthView } from './view.ts';

export interface ProbeResult {
  kind: 'chat' | 'models';
  ok: boolean;
  durationMs: number;
  /** Chat probes: time to the first content. */
  ttftMs?: number;
  failure?: Failure;
  /** Why the probe ran: the schedule, a stuck request, a half-open breaker. */
  trigger: 'schedule' | 'suspicion' | 'trial';
  /** The probe's id on the event stream. */
  id: string;
}

export class ActiveHealth {
  readonly #view: HealthView;
  readonly #breakers: Breakers;
  readonly #now: () => number;

  constructor(view: HealthView, breakers: Breakers, now: () => number = Date.now) {
    this.#view = view;
    this.#breakers = breakers;
    this.#now = now;
  }

  onProbe(model: ModelTarget, r: ProbeResult): void {
    const view = this.#view;
    const origin = { kind: 'probe' as const, id: r.id };
    // the answer to a suspicion, whatever it is, ends it (a failure marks the model down below)
    if (r.trigger === 'suspicion') view.clearSuspicion(model);
    const h = view.get(model);
    const { healthyThreshold, unhealthyThreshold } = model.health.probe;
    h.probe.at = this.#now();
    h.probe.kind = r.kind;
    h.probe.ok = r.ok;
    h.probe.durationMs = r.durationMs;
    // the one place a probe's words reach /status: scrubbed here too, whoever produced them
    const error = r.failure && redact(r.failure.message);
    h.probe.error = error;

    if (r.ok) {
      h.probe.okStreak++;
      h.probe.failStreak = 0;
      if (view.state(model) === 'open') {
        // The breaker's half-open trial: one success closes it (opossum's own rule).
        if (this.#breakers.isHalfOpen(model)) this.#breakers.record(model, true, origin);
      } else if (view.state(model) === 'unhealthy' && h.probe.okStreak >= healthyThreshold) {
        this.#breakers.close(model);
        view.set(model, 'healthy', `probe succeeded ${h.probe.okStreak} times in a row`, { origin });
      }
      if (r.ttftMs !== undefined) observeFirstToken(view, model, r.ttftMs, origin);
      return;
    }

    h.probe.failStreak++;
    h.probe.okStreak = 0;
    const f = r.failure!;
    const cause = `probe failed: ${f.reason}${f.status ? ` (upstream ${f.status})` : ''}`;
    const detail = { status: f.status, error, origin };
    if (view.state(model) === 'open') {
      if (this.#breakers.isHalfOpen(model)) this.#breakers.record(model, false, origin);
      return;
    }
    const meaning = FAILURES[f.reason];
    // told to back off: cooling for a stated wait only, never unhealthy by itself
    if (meaning.health === 'cool') {
      if (f.retryAfterMs !== undefined) view.set(model, 'cooling', cause, { ...detail, until: this.#now() + f.retryAfterMs });
      return;
    }
    if (isUsable(view.state(model)) && (meaning.definitive || r.trigger === 'suspicion' || h.probe.failStreak >= unhealthyThreshold)) {
      view.set(model, 'unhealthy', r.trigger === 'suspicion' ? `${cause} while a request was stuck on it` : cause, detail);
    }
  }
}
