/**
 * One view of every model's health. Each signal owns one flag per model and is the only one to
 * set or clear it (Envoy's host health flags are the model): the breaker (`breaker`), real
 * traffic's hard failures (`passive`), the probes' verdict (`probe`), cooldowns (`cooldown`),
 * slowness (`slow`). The model's state is derived from its flags in one place
 * (core/health-state.ts `deriveState`, by FLAG_PRECEDENCE); selection reads it. A `health` event
 * is published on the event stream only when the derived state changes, so telemetry never has
 * to be called from here.
 */
import type { ModelTarget } from '../config/plan.ts';
import type { Events, Origin } from '../observe/events.ts';
import {
  deriveState,
  FLAG_PRECEDENCE,
  FLAG_STATE,
  type HealthFlagName,
  type HealthState,
  holdsOut,
  isUsable,
} from '../core/health-state.ts';

/** One signal's say on a model: set by its owner, cleared by its owner (or its own timer). */
export interface HealthFlag {
  cause: string;
  /** When it was set, or last moved its end. */
  since: number;
  /** When it ends by itself (cooldown; passive with probes off), or, for the breaker, its next trial. */
  until?: number;
  /** cooldown: `until` is the provider's own stated wait (Retry-After and kin), not a default: the model is not called before it, not even as a last resort. */
  stated?: boolean;
}

export interface ModelHealth {
  /** Derived from `flags` (deriveState): never written by a signal. */
  state: HealthState;
  /** When the state last changed, or a flag that holds the model out was set, cleared or moved its end. */
  since: number;
  /** The cause of the flag that gives the state; when healthy, what made it so. */
  cause: string;
  /** The end of the flag that gives the state (a cooldown's, an unprobed hard failure's, the breaker's next trial). */
  until?: number;
  /** The cooldown flag is a wait the provider stated (see isHeldBack). */
  statedWait?: boolean;
  /** Every flag set on the model, by name. */
  flags: Partial<Record<HealthFlagName, HealthFlag>>;
  lastStatus?: number;
  lastError?: string;
  lastSuccessAt?: number;
  lastFailureAt?: number;
  successes: number;
  failures: number;
  /** Smoothed time to first token of streamed answers (real traffic and chat probes). */
  ttftMs?: number;
  /** Smoothed duration of non-streamed answers. */
  totalMs?: number;
  /** When a real request last proved the model answers fast enough (TTFT, or a quick non-streamed answer). */
  lastEvidenceAt?: number;
  /** The probes' record, with the streaks behind their verdict (the `probe` flag). */
  probe: {
    at?: number;
    kind?: string;
    ok?: boolean;
    error?: string;
    durationMs?: number;
    /** Consecutive successes / failures since the last transition of the state, for the thresholds. */
    okStreak: number;
    failStreak: number;
  };
  /** Consecutive slow / fast first-token samples since the last transition, for the `slow` flag's hysteresis. */
  slowStreak: number;
  fastStreak: number;
}

/** Weight of a new latency sample in the smoothed averages. */
const EWMA_WEIGHT = 0.2;

/** Flags that end by themselves at `until` (the view's own timers clear them). */
const EXPIRING: ReadonlySet<HealthFlagName> = new Set(['cooldown', 'passive']);

/** The flag a forced state stands for (`set`). */
const FLAG_OF: Readonly<Record<HealthState, HealthFlagName | undefined>> = {
  healthy: undefined,
  open: 'breaker',
  unhealthy: 'passive',
  cooling: 'cooldown',
  degraded: 'slow',
};

export interface SetOptions {
  until?: number;
  /** `until` is a default cooldown the sidecar chose, not a wait the provider stated. */
  assumedWait?: boolean;
  status?: number;
  error?: string;
  /** The probe or request attempt that caused the change (for the health trace's link). */
  origin?: Origin;
}

export interface RaiseOptions {
  /** When the flag ends by itself (cooldown, passive), or the breaker's next trial. */
  until?: number;
  /** cooldown: the provider stated the wait. */
  stated?: boolean;
  status?: number;
  error?: string;
  origin?: Origin;
}

interface Entry {
  target: ModelTarget;
  health: ModelHealth;
  /** One timer per expiring flag. */
  timers: Map<HealthFlagName, NodeJS.Timeout>;
}

export class HealthView {
  readonly #events: Events;
  readonly #models = new Map<string, Entry>();
  readonly #now: () => number;
  /** Open models whose breaker went half-open with no probe to run the trial: one request may. */
  readonly #trials = new Set<string>();
  /** Models a request is stuck on, until the suspicion probe answers (or the time runs out). */
  readonly #suspected = new Map<string, number>();

  constructor(events: Events, models: ModelTarget[], now: () => number = Date.now) {
    this.#events = events;
    this.#now = now;
    const at = now();
    for (const target of models) {
      this.#models.set(target.key, {
        target,
        timers: new Map(),
        health: {
          state: 'healthy',
          since: at,
          cause: 'start',
          statedWait: false,
          flags: {},
          successes: 0,
          failures: 0,
          probe: { okStreak: 0, failStreak: 0 },
          slowStreak: 0,
          fastStreak: 0,
        },
      });
    }
  }

  /** The view's clock (wall time), for writers that compute an end. */
  now(): number {
    return this.#now();
  }

  get(model: ModelTarget): ModelHealth {
    return this.#entry(model).health;
  }

  state(model: ModelTarget): HealthState {
    return this.#entry(model).health.state;
  }

  isUsable(model: ModelTarget): boolean {
    return isUsable(this.#entry(model).health.state);
  }

  /** One flag of the model, if set. */
  flag(model: ModelTarget, name: HealthFlagName): Readonly<HealthFlag> | undefined {
    return this.#entry(model).health.flags[name];
  }

  /** The flags set on the model, in precedence order (the first gives the state). */
  flagsOf(model: ModelTarget): HealthFlagName[] {
    const flags = this.#entry(model).health.flags;
    return FLAG_PRECEDENCE.filter((f) => flags[f] !== undefined);
  }

  /**
   * Sets (or renews) one flag: only its owner calls this. An expiring flag (cooldown, passive)
   * with an `until` is cleared by the view's timer when it ends, and by nothing else but its owner.
   */
  raise(model: ModelTarget, name: HealthFlagName, cause: string, options: RaiseOptions = {}): void {
    const entry = this.#entry(model);
    const h = entry.health;
    if (options.status !== undefined) h.lastStatus = options.status;
    if (options.error !== undefined) h.lastError = options.error;
    const before = h.flags[name];
    const stated = name === 'cooldown' ? options.stated === true : undefined;
    const moved = before === undefined || before.until !== options.until || before.stated !== stated;
    h.flags[name] = {
      cause,
      since: moved || !before ? this.#now() : before.since,
      until: options.until,
      ...(stated === undefined ? {} : { stated }),
    };
    if (EXPIRING.has(name)) this.#arm(model, entry, name);
    this.#derive(model, entry, cause, options.origin, { flag: name, raised: true, moved: moved && holdsOut(name) });
  }

  /** Clears flags (each caller clears only what it owns). Nothing set, nothing happens. */
  clear(model: ModelTarget, names: HealthFlagName | readonly HealthFlagName[], cause: string, options: { origin?: Origin } = {}): void {
    const entry = this.#entry(model);
    const h = entry.health;
    let last: HealthFlagName | undefined;
    let moved = false;
    for (const name of typeof names === 'string' ? [names] : names) {
      if (h.flags[name] === undefined) continue;
      delete h.flags[name];
      this.#disarm(entry, name);
      last = name;
      moved ||= holdsOut(name);
    }
    if (last !== undefined) this.#derive(model, entry, cause, options.origin, { flag: last, raised: false, moved });
  }

  /**
   * Forces a state, for tests and by hand: clears every flag and sets the one that gives `state`
   * (open: breaker, unhealthy: passive, cooling: cooldown, degraded: slow; healthy: none). A
   * timed state (options.until) ends by itself. The writers never call it: they own their flags.
   */
  set(model: ModelTarget, state: HealthState, cause: string, options: SetOptions = {}): void {
    const entry = this.#entry(model);
    const h = entry.health;
    if (options.status !== undefined) h.lastStatus = options.status;
    if (options.error !== undefined) h.lastError = options.error;
    for (const name of entry.timers.keys()) this.#disarm(entry, name);
    h.flags = {};
    const name = FLAG_OF[state];
    if (name !== undefined) {
      const stated = name === 'cooldown' ? options.until !== undefined && !options.assumedWait : undefined;
      h.flags[name] = { cause, since: this.#now(), until: options.until, ...(stated === undefined ? {} : { stated }) };
      if (EXPIRING.has(name)) this.#arm(model, entry, name);
    }
    this.#derive(model, entry, cause, options.origin, { flag: name, raised: true, moved: true });
  }

  /**
   * The one place the state is decided: from the flags, by their precedence (deriveState). A
   * change of state is a `health` event (its cause: the change that made it), moves `since`
   * and starts every streak over, whoever made it: a model taken down by user traffic still
   * needs healthyThreshold probes in a row, not one more than it had. A flag that holds the
   * model out changing under an unchanged state moves `since` too (a reopened breaker's new trial).
   */
  #derive(
    model: ModelTarget,
    entry: Entry,
    cause: string,
    origin: Origin | undefined,
    change: { flag?: HealthFlagName; raised: boolean; moved: boolean },
  ): void {
    const h = entry.health;
    const now = this.#now();
    const { state, flag: top } = deriveState((f) => h.flags[f] !== undefined);
    const topFlag = top === undefined ? undefined : h.flags[top];
    const from = h.state;
    h.state = state;
    h.cause = topFlag?.cause ?? cause;
    h.until = topFlag?.until;
    h.statedWait = h.flags.cooldown?.stated === true;
    if (from === state) {
      if (change.moved) h.since = now;
      return;
    }
    h.since = now;
    h.probe.okStreak = 0;
    h.probe.failStreak = 0;
    h.slowStreak = 0;
    h.fastStreak = 0;
    // a flag cleared (or set under another) that leaves another one in charge says so
    const why = topFlag && !(change.raised && change.flag === top) ? `${cause}; still ${state}: ${topFlag.cause}` : cause;
    this.#events.emit('health', { model, from, to: state, cause: why, until: h.until, at: now, origin });
  }

  /** Takes over a model's health from a previous configuration, silently (nothing changed). */
  restore(model: ModelTarget, health: ModelHealth): void {
    const entry = this.#entry(model);
    for (const name of entry.timers.keys()) this.#disarm(entry, name);
    const flags: ModelHealth['flags'] = {};
    for (const name of FLAG_PRECEDENCE) {
      const f = health.flags?.[name];
      if (f) flags[name] = { ...f };
    }
    entry.health = { ...health, flags, probe: { ...health.probe } };
    for (const name of EXPIRING) this.#arm(model, entry, name);
  }

  /**
   * Ends an expiring flag when its time is up: the timer clears that flag and no other.
   * Timers run on a monotonic clock and `until` is wall time, so a timer can fire a little
   * early: it then waits out the rest instead of giving up (a model must never stay cooling forever).
   */
  #arm(model: ModelTarget, entry: Entry, name: HealthFlagName): void {
    this.#disarm(entry, name);
    const until = entry.health.flags[name]?.until;
    if (until === undefined) return;
    const timer = setTimeout(
      () => {
        entry.timers.delete(name);
        if (entry.health.flags[name]?.until !== until) return; // superseded, or cleared
        if (until > this.#now()) this.#arm(model, entry, name);
        else this.clear(model, name, `${FLAG_STATE[name]} ended`);
      },
      Math.max(1, until - this.#now()),
    );
    timer.unref();
    entry.timers.set(name, timer);
  }

  #disarm(entry: Entry, name: HealthFlagName): void {
    const timer = entry.timers.get(name);
    if (timer) clearTimeout(timer);
    entry.timers.delete(name);
  }

  recordSuccess(model: ModelTarget): void {
    const h = this.#entry(model).health;
    h.successes++;
    h.lastSuccessAt = this.#now();
  }

  /** A latency sample: time to first token (streamed) or whole duration (non-streamed). */
  recordLatency(model: ModelTarget, sample: { ttftMs?: number; totalMs?: number }): void {
    const h = this.#entry(model).health;
    if (sample.ttftMs !== undefined)
      h.ttftMs = h.ttftMs === undefined ? sample.ttftMs : h.ttftMs + EWMA_WEIGHT * (sample.ttftMs - h.ttftMs);
    if (sample.totalMs !== undefined)
      h.totalMs = h.totalMs === undefined ? sample.totalMs : h.totalMs + EWMA_WEIGHT * (sample.totalMs - h.totalMs);
  }

  markEvidence(model: ModelTarget): void {
    this.#entry(model).health.lastEvidenceAt = this.#now();
  }

  recordFailure(model: ModelTarget, status: number | undefined, error: string): void {
    const h = this.#entry(model).health;
    h.failures++;
    h.lastFailureAt = this.#now();
    h.lastStatus = status;
    h.lastError = error;
  }

  /** The provider asked us to wait and the wait is not over: the model is not called, not even as a last resort (whatever else holds it out). */
  isHeldBack(model: ModelTarget): boolean {
    const c = this.#entry(model).health.flags.cooldown;
    return c?.stated === true && c.until !== undefined && c.until > this.#now();
  }

  /**
   * The earliest moment one of these models is expected back, for a refusal's Retry-After. A
   * model is back when every flag holding it out has cleared: the latest of a timed flag's end
   * (a cooldown, a provider's Retry-After, an unprobed hard failure), an open breaker's next
   * trial, a probe-judged model's next probe. Models still usable say nothing (they just failed
   * this request): with none down, a second. Never less than a second from now.
   */
  earliestRecovery(models: Iterable<ModelTarget>): number {
    const now = this.#now();
    let earliest = Number.POSITIVE_INFINITY;
    for (const m of models) {
      const h = this.#entry(m).health;
      if (isUsable(h.state)) continue;
      let at = Number.NEGATIVE_INFINITY;
      for (const name of FLAG_PRECEDENCE) {
        const f = h.flags[name];
        if (f === undefined || !holdsOut(name)) continue;
        at = Math.max(at, f.until ?? now + m.health.probe.intervalMs);
      }
      if (at > Number.NEGATIVE_INFINITY && at < earliest) earliest = at;
    }
    return Math.max(Number.isFinite(earliest) ? earliest : now, now + 1000);
  }

  /**
   * A request is stuck waiting for this model's first token and a probe is checking it: new
   * requests go elsewhere meanwhile, so a hang does not pile traffic onto the model while it is
   * being found out. Not a health state (nothing is known yet): it ends with the probe's answer.
   */
  suspect(model: ModelTarget, forMs: number): void {
    this.#suspected.set(model.key, this.#now() + forMs);
  }

  clearSuspicion(model: ModelTarget): void {
    this.#suspected.delete(model.key);
  }

  isSuspected(model: ModelTarget): boolean {
    const until = this.#suspected.get(model.key);
    if (until === undefined) return false;
    if (until > this.#now()) return true;
    this.#suspected.delete(model.key);
    return false;
  }

  grantTrial(model: ModelTarget): void {
    this.#trials.add(model.key);
  }

  /** Takes the model's single half-open trial, if it has one. */
  takeTrial(model: ModelTarget): boolean {
    return this.#trials.delete(model.key);
  }

  hasTrial(model: ModelTarget): boolean {
    return this.#trials.has(model.key);
  }

  models(): ModelTarget[] {
    return [...this.#models.values()].map((e) => e.target);
  }

  close(): void {
    for (const entry of this.#models.values()) for (const name of entry.timers.keys()) this.#disarm(entry, name);
  }

  #entry(model: ModelTarget) {
    const entry = this.#models.get(model.key);
    if (!entry) throw new Error(`unknown model ${model.key}`);
    return entry;
  }
}
