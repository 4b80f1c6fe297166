/**
 * Requests already on their way are not left behind: when a model is marked down (unhealthy or
 * open), every attempt still waiting on it that has sent nothing to its client is cancelled and
 * its request moves on to the next candidate at once.
 */
import type { ModelTarget } from '../config/plan.ts';
import type { Events, HealthEvent } from '../observe/events.ts';
import { AttemptAbort } from '../core/abort.ts';
import type { Sink } from '../core/sink.ts';

interface Tracked {
  controller: AbortController;
  sink: Sink;
}

export class InFlight {
  readonly #byModel = new Map<string, Set<Tracked>>();
  readonly #events: Events;
  readonly #onHealth = (e: HealthEvent) => {
    if (e.to === 'unhealthy' || e.to === 'open') this.cancel(e.model, `model marked ${e.to}: ${e.cause}`);
  };

  constructor(events: Events) {
    this.#events = events;
    events.on('health', this.#onHealth);
  }

  /** A retired configuration stops listening: a reload must not leave a listener behind. */
  dispose(): void {
    this.#events.off('health', this.#onHealth);
  }

  track(model: ModelTarget, controller: AbortController, sink: Sink): () => void {
    let set = this.#byModel.get(model.key);
    if (!set) {
      set = new Set();
      this.#byModel.set(model.key, set);
    }
    const entry = { controller, sink };
    set.add(entry);
    return () => set.delete(entry);
  }

  count(model: ModelTarget): number {
    return this.#byModel.get(model.key)?.size ?? 0;
  }

  cancel(model: ModelTarget, why: string): void {
    const set = this.#byModel.get(model.key);
    if (!set) return;
    for (const t of set) {
      if (!t.sink.committed) t.controller.abort(new AttemptAbort('marked_down', why));
    }
  }
}
