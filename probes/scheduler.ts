/**
 * When each model is probed, and how. Probing is spent where it buys something:
 * - a model that served real traffic well within the interval is not probed (real traffic is the probe);
 * - the models that carry traffic and those that would carry it next (the active group, the first
 *   with a usable model, and the one after it) get chat probes (auto): only generation proves what
 *   users need (a chat endpoint answering 503 while the model list answers 200 is the common
 *   outage); groups further down get the free model-list probe, at the idle interval;
 * - down models (unhealthy, open) get chat probes: generation must be proven before traffic returns;
 * - transitions are confirmed in seconds (Envoy's edge intervals): after a first failed probe of a
 *   usable model, or a first success of a down one, the next probe runs after `edgeInterval`
 *   instead of `interval`; a model taken down by real traffic gets its first probe after
 *   `edgeInterval`; a down model is probed at `edgeInterval` for its first ten probes (most
 *   outages are short), then on a backoff doubling up to `interval`. The thresholds still
 *   decide (no flapping): only the waits are shorter;
 * - cooling models are left alone until their Retry-After ends (and any model inside a stated one);
 * - a stuck request (suspicion) and a half-open breaker get a chat probe at once.
 * Every schedule has jitter, so pods started together do not probe in lockstep.
 */
import type { BackendPlan, ModelTarget } from '../sidecar/config/plan.ts';
import type { ActiveHealth, ProbeResult } from '../sidecar/health/active.ts';
import { isUsable } from '../sidecar/core/health-state.ts';
import type { HealthView } from '../sidecar/health/view.ts';
import type { Events, HealthEvent } from '../sidecar/observe/events.ts';
import { FAILURES } from '../sidecar/core/failure.ts';
import { chatProbe, modelsPath, modelsProbe, type ProbeDeps } from './probe.ts';

type Kind = 'chat' | 'models';

interface Slot {
  model: ModelTarget;
  backend: BackendPlan;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
  suspicionPending?: boolean;
  /**
   * The server has no model list (GET .../models answered 404 or 405, as many OpenAI-compatible
   * servers do): that says nothing about the model, so it is probed with chat probes from then on.
   */
  noModelList?: { status: number; at: number };
  /** The last probe started a transition (a first failure of a usable model, a first success of a down one): confirm it after the edge interval. */
  confirm?: boolean;
  /** Failed probes since the model went down: the backoff step (edgeInterval × 2^n, up to interval). */
  downFailures: number;
}

/** What a model is probed with, and why, for /status. */
export interface ProbeMode {
  /** The probe kind used for this model: the configured one, or chat where the server has no model list. */
  using: 'auto' | 'chat' | 'models' | 'none';
  /** Why `using` differs from the configured kind; null when it does not. */
  note: string | null;
}

/** Failed probes of a down model that run at the edge interval before the backoff starts doubling. */
const DOWN_AT_EDGE = 10;

/** A model list that does not exist (404) or takes no GET (405) says nothing about the model. */
const NO_MODEL_LIST = new Set([404, 405]);

export class ProbeScheduler {
  readonly #slots = new Map<string, Slot>();
  readonly #view: HealthView;
  readonly #active: ActiveHealth;
  readonly #deps: ProbeDeps;
  readonly #stop = new AbortController();
  readonly #now: () => number;
  /** Every probe run, for tests and the bench: which model, what kind, why. */
  readonly log: { model: string; kind: Kind; trigger: ProbeResult['trigger']; ok: boolean; startedAt: number; at: number }[] = [];

  readonly #events: Events;
  #seq = 0;
  readonly #onHealth = (e: HealthEvent) => this.#transition(e);

  constructor(
    backends: BackendPlan[],
    view: HealthView,
    active: ActiveHealth,
    deps: ProbeDeps,
    events: Events,
    now: () => number = Date.now,
  ) {
    this.#view = view;
    this.#events = events;
    this.#active = active;
    this.#deps = deps;
    this.#now = now;
    for (const backend of backends) {
      for (const model of backend.groups.flat()) {
        if (model.health.probe.kind !== 'none') this.#slots.set(model.key, { model, backend, downFailures: 0 });
      }
    }
  }

  start(): void {
    this.#events.on('health', this.#onHealth);
    for (const slot of this.#slots.values()) this.#schedule(slot, Math.random() * slot.model.health.probe.intervalMs);
  }

  stop(): void {
    this.#events.off('health', this.#onHealth);
    this.#stop.abort();
    for (const slot of this.#slots.values()) clearTimeout(slot.timer);
  }

  /** True when the model is probed (its half-open trial and recovery are the probes' job). */
  covers(model: ModelTarget): boolean {
    return this.#slots.has(model.key);
  }

  /**
   * A request is stuck on this model: a chat probe now, with its own timeout. Never behind the
   * probe that is running: that one may be hung on the same outage (a model-list probe stuck
   * for its whole timeout made the stuck requests wait twice as long).
   */
  suspect(model: ModelTarget): void {
    const slot = this.#slots.get(model.key);
    // every request stuck on a model suspects it: one suspicion probe answers them all
    if (!slot || slot.suspicionPending) return;
    slot.suspicionPending = true;
    void this.#run(slot, 'chat', 'suspicion').finally(() => {
      slot.suspicionPending = false;
    });
  }

  /** The model's breaker is half-open: the trial is a probe, at once (not behind a running one). */
  trial(model: ModelTarget): void {
    const slot = this.#slots.get(model.key);
    if (slot) void this.#run(slot, 'chat', 'trial');
  }

  /** What the model is probed with, and why (for /status: `probe.using`, `probe.note`). */
  mode(model: ModelTarget): ProbeMode {
    const configured = model.health.probe.kind;
    const slot = this.#slots.get(model.key);
    if (!slot?.noModelList) return { using: configured, note: null };
    return {
      using: 'chat',
      note: `GET ${modelsPath(model)} answered ${slot.noModelList.status} at ${new Date(slot.noModelList.at).toISOString()}: the server has no model list, so this model is probed with chat probes`,
    };
  }

  /** What a scheduled tick should do now for this model, if anything. */
  plan(slot: Slot): Kind | undefined {
    const kind = this.#planned(slot);
    return kind === 'models' && slot.noModelList ? 'chat' : kind;
  }

  #planned(slot: Slot): Kind | undefined {
    const { model } = slot;
    const h = this.#view.get(model);
    const configured = model.health.probe.kind;
    const state = h.state;
    // cooling, or waiting out a stated Retry-After under something worse: a probe would earn another 429
    if (state === 'cooling' || this.#view.isHeldBack(model)) return undefined;
    if (!isUsable(state)) return configured === 'models' ? 'models' : 'chat';
    const now = this.#now();
    if (h.lastEvidenceAt !== undefined && now - h.lastEvidenceAt < model.health.probe.intervalMs) return undefined;
    if (configured === 'chat' || state === 'degraded') return configured === 'models' ? 'models' : 'chat';
    if (configured === 'models') return 'models';
    // auto: the models carrying traffic and the next in line must prove generation (a model list
    // answering 200 says nothing of a chat endpoint answering 503)
    if (this.#distance(slot) <= 1) return 'chat';
    // further down: the free model list, at the idle interval
    if (h.probe.at !== undefined && now - h.probe.at < model.health.probe.idleIntervalMs) return undefined;
    return 'models';
  }

  /**
   * When the next scheduled probe of this model runs (before jitter): the edge interval to confirm
   * a transition the last probe started, a backoff from the edge interval up to the interval for a
   * down model, else the interval.
   */
  delay(slot: Slot): number {
    const p = slot.model.health.probe;
    const edge = Math.min(p.edgeIntervalMs, p.intervalMs);
    const state = this.#view.state(slot.model);
    if (state === 'cooling') return p.intervalMs;
    if (slot.confirm) return edge;
    if (isUsable(state)) return p.intervalMs;
    // most outages are short: the first DOWN_AT_EDGE probes of a down model run at the edge
    // interval (a healed model is back within about two edge intervals), then the backoff doubles
    // up to the interval (a long outage costs a probe per interval)
    return Math.min(p.intervalMs, edge * 2 ** Math.max(0, slot.downFailures - DOWN_AT_EDGE + 1));
  }

  /** A model fell (real traffic, the breaker, a probe) or came back: its backoff starts over; a fall gets its first probe after the edge interval. */
  #transition(e: HealthEvent): void {
    const slot = this.#slots.get(e.model.key);
    if (!slot) return;
    const fell = isUsable(e.from) && !isUsable(e.to) && e.to !== 'cooling';
    const back = isUsable(e.to);
    if (!fell && !back) return;
    slot.downFailures = 0;
    slot.confirm = false;
    // a probe running now re-arms the timer when it ends (#tick)
    if (fell && !slot.running) this.#schedule(slot, this.#jitteredDelay(slot));
  }

  #jitteredDelay(slot: Slot): number {
    return this.#jittered(this.delay(slot), slot.model.health.probe.jitterPercent);
  }

  /** How many groups below the group that carries the backend's traffic this model sits. */
  #distance(slot: Slot): number {
    const groups = slot.backend.groups;
    const active = groups.findIndex((g) => g.some((m) => isUsable(this.#view.state(m))));
    return active === -1 ? 0 : slot.model.group - active;
  }

  #schedule(slot: Slot, delayMs: number): void {
    if (this.#stop.signal.aborted) return;
    clearTimeout(slot.timer);
    slot.timer = setTimeout(() => this.#tick(slot), delayMs);
    slot.timer.unref();
  }

  #jittered(ms: number, percent: number): number {
    return ms * (1 + ((Math.random() * 2 - 1) * percent) / 100);
  }

  async #tick(slot: Slot): Promise<void> {
    try {
      const kind = this.plan(slot);
      // nothing to do (traffic proved the model, or it is waiting out a cooldown): no transition to confirm
      if (!kind) slot.confirm = false;
      if (kind && !slot.running) {
        slot.running = this.#run(slot, kind, 'schedule');
        await slot.running;
        slot.running = undefined;
      }
    } finally {
      // whatever happened, the model stays on the schedule
      this.#schedule(slot, this.#jitteredDelay(slot));
    }
  }

  /** What the probe's result means for the schedule: a transition to confirm soon, a backoff step. */
  #afterProbe(slot: Slot, result: Omit<ProbeResult, 'trigger' | 'id'>, wasUsable: boolean, trigger: ProbeResult['trigger']): void {
    const h = this.#view.get(slot.model);
    const usable = isUsable(h.state);
    // told to back off (429 / 529): no confirming probe, that would earn another
    const cool = result.failure !== undefined && FAILURES[result.failure.reason].health === 'cool';
    if (usable) slot.confirm = !result.ok && !cool && h.probe.failStreak > 0;
    else slot.confirm = result.ok && h.probe.okStreak > 0;
    if (!wasUsable && !usable && !result.ok) slot.downFailures++;
    // a suspicion or trial probe re-arms the schedule too (the scheduled tick re-arms it itself)
    if (trigger !== 'schedule' && !slot.running) this.#schedule(slot, this.#jitteredDelay(slot));
  }

  #run(slot: Slot, requested: Kind, trigger: ProbeResult['trigger']): Promise<void> {
    const run = (async () => {
      let kind: Kind = requested === 'models' && slot.noModelList ? 'chat' : requested;
      const probe = kind === 'chat' ? chatProbe : modelsProbe;
      // a probe that throws is a bug, not a verdict on the model: it is dropped (see .catch below)
      let startedAt = Date.now();
      let result = await probe(slot.model, this.#deps, this.#stop.signal);
      if (this.#stop.signal.aborted) return;
      const status = result.failure?.status;
      if (kind === 'models' && !result.ok && status !== undefined && NO_MODEL_LIST.has(status)) {
        // no model list on this server: not a failure of the model; prove it with a chat probe now
        slot.noModelList = { status, at: this.#now() };
        kind = 'chat';
        startedAt = Date.now();
        result = await chatProbe(slot.model, this.#deps, this.#stop.signal);
        if (this.#stop.signal.aborted) return;
      }
      const id = `probe-${++this.#seq}`;
      this.log.push({ model: slot.model.name, kind, trigger, ok: result.ok, startedAt, at: this.#now() });
      if (this.log.length > 1000) this.log.splice(0, 500);
      this.#events.emit('probe', {
        id,
        model: slot.model,
        kind,
        trigger,
        ok: result.ok,
        reason: result.failure?.reason,
        status: result.failure?.status,
        startedAt,
        durationMs: result.durationMs,
        firstChunkMs: result.ttftMs,
      });
      const wasUsable = this.#view.isUsable(slot.model);
      this.#active.onProbe(slot.model, { ...result, trigger, id });
      this.#afterProbe(slot, result, wasUsable, trigger);
    })().catch(() => undefined);
    return run;
  }
}
