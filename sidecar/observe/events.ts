/**
 * The one stream of things worth observing. The request path and the health view publish
 * here; logs, metrics and traces subscribe. Nothing else in the code calls telemetry.
 */
import { EventEmitter } from 'node:events';
import type { ModelTarget } from '../config/plan.ts';
import type { HealthState } from '../core/health-state.ts';
import type { FailureReason } from '../core/failure.ts';
import type { Usage } from '../translate/provider.ts';

/** A request leaves one model for the next, inside the same request. */
export interface SwitchEvent {
  requestId: string;
  from: ModelTarget;
  to: ModelTarget;
  reason: FailureReason;
  status?: number;
}

/** What caused a health change: a probe, or an attempt of a user request. */
export type Origin = { kind: 'probe'; id: string } | { kind: 'request'; id: string; attempt: number };

/** A model's health state changed. */
export interface HealthEvent {
  model: ModelTarget;
  from: HealthState;
  to: HealthState;
  /** What caused it: "probe", "breaker", "upstream 429", "connect_refused", ... */
  cause: string;
  /** Until when the state holds, when known (cooling). */
  until?: number;
  at: number;
  origin?: Origin;
}

/** A request was accepted for serving (after its body was read and checked). */
export interface RequestStartEvent {
  requestId: string;
  /** The route rule that matched (its path value): bounded, unlike the path. */
  route: string;
  path: string;
  method: string;
  stream: boolean;
  /** The inbound headers, for trace context (traceparent); never logged. */
  headers: Record<string, string | string[] | undefined>;
  at: number;
}

export interface AttemptStartEvent {
  requestId: string;
  attempt: number;
  model: ModelTarget;
  /** The model's health state when it was selected. */
  state: HealthState;
  lastResort: boolean;
  stream: boolean;
  at: number;
}

export interface AttemptEndEvent {
  requestId: string;
  attempt: number;
  model: ModelTarget;
  outcome: 'success' | FailureReason | 'client_gone';
  status?: number;
  message?: string;
  responseModel?: string;
  firstChunkMs?: number;
  usage?: Usage;
  at: number;
}

/** A probe finished. Emitted before its result is applied, so health changes can point at it. */
export interface ProbeEvent {
  id: string;
  model: ModelTarget;
  kind: 'chat' | 'models';
  trigger: 'schedule' | 'suspicion' | 'trial';
  ok: boolean;
  reason?: FailureReason;
  status?: number;
  startedAt: number;
  durationMs: number;
  firstChunkMs?: number;
}

export interface AttemptRecord {
  model: string;
  provider: string;
  group: number;
  outcome: 'success' | FailureReason | 'client_gone';
  status?: number;
  message?: string;
  durationMs: number;
}

/** A request finished, one way or another. */
export interface RequestEvent {
  requestId: string;
  /** The route rule that matched (its path value). */
  route: string;
  backend: string;
  stream: boolean;
  status: number;
  /** ok: answered; failed: error status sent; cut: a committed stream ended with an error event; client_gone. */
  outcome: 'ok' | 'failed' | 'cut' | 'client_gone';
  attempts: AttemptRecord[];
  servedBy?: string;
  durationMs: number;
  at: number;
}

/** A request was answered with an error before any model was asked (bad input, limits, overload). */
export interface RejectedEvent {
  status: number;
  code: string;
  at: number;
}

/** A configuration change was applied (ok) or rejected (the running one stays). */
export interface ConfigEvent {
  generation: number;
  ok: boolean;
  problems?: string[];
  at: number;
}

export interface EventMap {
  config: [ConfigEvent];
  rejected: [RejectedEvent];
  'request-start': [RequestStartEvent];
  'attempt-start': [AttemptStartEvent];
  'attempt-end': [AttemptEndEvent];
  switch: [SwitchEvent];
  health: [HealthEvent];
  probe: [ProbeEvent];
  request: [RequestEvent];
}

/**
 * A listener that throws (a telemetry bug) must not break the request or the probe that
 * emitted: the error is handed to `onListenerError` and the emitter carries on.
 */
export class Events extends EventEmitter<EventMap> {
  onListenerError: (err: unknown, event: string) => void = () => {};

  /** True when someone listens: the request path skips building events nobody reads. */
  wants(event: keyof EventMap): boolean {
    return this.listenerCount(event) > 0;
  }

  override emit<K extends keyof EventMap>(event: K, ...args: EventMap[K]): boolean {
    if (this.listenerCount(event) === 0) return false;
    // raw listeners: calling a once() wrapper also removes it
    const listeners = this.rawListeners(event) as ((...a: EventMap[K]) => void)[];
    for (const listener of listeners) {
      try {
        listener(...args);
      } catch (err) {
        this.onListenerError(err, event);
      }
    }
    return listeners.length > 0;
  }
}
