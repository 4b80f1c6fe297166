/**
 * Health, assembled: one view per model, in which passive checks (real traffic), the breakers,
 * the cooldowns, slowness and the probes each own a flag, and whose derived state selection reads. The request path sees only
 * `begin(...)` / `end(...)` around each attempt. Probes live above health (probes/): the
 * runtime hands them in as a `Prober`, so health never imports them.
 */
import type { BackendPlan, FailoverSettings, ModelTarget } from '../config/plan.ts';
import type { Events, Origin } from '../observe/events.ts';
import { AttemptAbort } from '../core/abort.ts';
import type { AttemptOutcome } from '../send/outcome.ts';
import type { Sink } from '../core/sink.ts';
import { ActiveHealth } from './active.ts';
import { Breakers } from './breaker.ts';
import { InFlight } from './inflight.ts';
import { PassiveHealth } from './passive.ts';
import { HealthView } from './view.ts';

/** What health asks of the probes: whether a model is probed, and a probe now (a stuck request, a breaker's trial). */
export interface Prober {
  covers(model: ModelTarget): boolean;
  suspect(model: ModelTarget): void;
  trial(model: ModelTarget): void;
}

const NO_PROBES: Prober = { covers: () => false, suspect: () => undefined, trial: () => undefined };

export interface AttemptWatch {
  end(outcome: AttemptOutcome, durationMs: number): void;
}

export class HealthMonitor {
  readonly view: HealthView;
  readonly breakers: Breakers;
  readonly passive: PassiveHealth;
  readonly active: ActiveHealth;
  readonly inFlight: InFlight;
  #probes: Prober = NO_PROBES;

  constructor(events: Events, backends: BackendPlan[]) {
    const models = backends.flatMap((b) => b.groups.flat());
    this.view = new HealthView(events, models);
    this.breakers = new Breakers(this.view, models, {
      onHalfOpen: (model) => {
        if (this.#probes.covers(model)) this.#probes.trial(model);
        else this.view.grantTrial(model);
      },
    });
    this.passive = new PassiveHealth(this.view, this.breakers);
    this.active = new ActiveHealth(this.view, this.breakers);
    this.inFlight = new InFlight(events);
  }

  /** The probes that run this health's trials and suspicion checks (none until the runtime hands them in). */
  useProber(prober: Prober): void {
    this.#probes = prober;
  }

  stop(): void {
    this.breakers.shutdown();
    this.view.close();
    this.inFlight.dispose();
  }

  /** Around every attempt: tracked for cancellation, watched for a stuck first token, its outcome learnt from. */
  begin(
    model: ModelTarget,
    controller: AbortController,
    sink: Sink,
    stream: boolean,
    settings: FailoverSettings,
    origin: Origin,
  ): AttemptWatch {
    const untrack = this.inFlight.track(model, controller, sink);
    let suspicion: NodeJS.Timeout | undefined;
    if (this.#probes.covers(model)) {
      const h = this.view.get(model);
      const usual = stream ? h.ttftMs : h.totalMs;
      const after = Math.max(model.health.suspectAfterMs, usual === undefined ? 0 : 4 * usual);
      suspicion = setTimeout(() => {
        if (sink.committed) return;
        // until the probe answers (it times out after probe.timeout), new requests go elsewhere
        this.view.suspect(model, model.health.probe.timeoutMs * 2);
        this.#probes.suspect(model);
      }, after);
      suspicion.unref();
    }
    return {
      end: (outcome, durationMs) => {
        clearTimeout(suspicion);
        untrack();
        if (outcome.kind === 'answered') {
          this.passive.onSuccess(model, { stream, ttftMs: outcome.firstByteMs, totalMs: durationMs }, origin);
        } else if (outcome.kind === 'failed' || outcome.kind === 'cut') {
          // An attempt the health view itself cancelled failed because its model was marked down,
          // whatever it failed with: `marked_down`, which the view already said (FAILURES: no effect).
          const reason = controller.signal.reason;
          const failure =
            reason instanceof AttemptAbort && reason.reason === 'marked_down'
              ? { ...outcome.failure, reason: reason.reason }
              : outcome.failure;
          this.passive.onFailure(model, failure, settings, origin);
        }
      },
    };
  }
}
