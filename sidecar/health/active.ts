/**
 * Active health: what a probe result says about its model. It owns the `probe` flag (the
 * probes' verdict), with thresholds on both edges so a model that fails one probe in ten does
 * not flap: down after unhealthyThreshold failures in a row, up after healthyThreshold
 * successes in a row (which also lift a hard failure real traffic saw: the `passive` flag). A
 * failed probe of a model that is already suspected (a user request is stuck on it) marks it
 * down at once: two independent signals; so does one whose reason is `definitive` in the
 * failure table (core/failure.ts FAILURES). The verdict stands whatever else holds the model
 * out: an open breaker's trial (a probe too) closes the breaker, and no more. A probe told to
 * back off (a `cool` reason: 429 / 529) never takes the model down by itself: it cools it for
 * the provider's stated wait, if one was stated.
 */
import type { ModelTarget } from '../config/plan.ts';
import { redact } from '../core/secret.ts';
import { FAILURES, type Failure } from '../core/failure.ts';
import type { Breakers } from './breaker.ts';
import { observeFirstToken } from './latency.ts';
import type { HealthFlagName } from '../core/health-state.ts';
import type { HealthView } from './view.ts';

/** What healthyThreshold successful probes in a row clear. */
const RECOVERED_BY_PROBES: readonly HealthFlagName[] = ['probe', 'passive'];

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

    // The breaker's half-open trial: one success closes it, one failure reopens it (opossum's
    // own rule). A breaker that is not half-open ignores probes.
    if (this.#breakers.isHalfOpen(model)) this.#breakers.record(model, r.ok, origin);

    if (r.ok) {
      h.probe.okStreak++;
      h.probe.failStreak = 0;
      // up again: the verdict, and a hard failure real traffic saw (the probe reached it)
      if (h.probe.okStreak >= healthyThreshold)
        view.clear(model, RECOVERED_BY_PROBES, `probe succeeded ${h.probe.okStreak} times in a row`, { origin });
      if (r.ttftMs !== undefined) observeFirstToken(view, model, r.ttftMs, origin);
      return;
    }

    h.probe.failStreak++;
    h.probe.okStreak = 0;
    const f = r.failure!;
    const cause = `probe failed: ${f.reason}${f.status ? ` (upstream ${f.status})` : ''}`;
    const detail = { status: f.status, error, origin };
    const meaning = FAILURES[f.reason];
    // told to back off: a cooldown for a stated wait only, never down by itself
    if (meaning.health === 'cool') {
      if (f.retryAfterMs !== undefined)
        view.raise(model, 'cooldown', cause, { ...detail, until: this.#now() + f.retryAfterMs, stated: true });
      return;
    }
    if (meaning.definitive || r.trigger === 'suspicion' || h.probe.failStreak >= unhealthyThreshold) {
      view.raise(model, 'probe', r.trigger === 'suspicion' ? `${cause} while a request was stuck on it` : cause, detail);
    }
  }
}
