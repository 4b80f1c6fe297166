/**
 * The one stream of things worth observing. The request path and the health view publish
 * here; logs, metrics and traces subscribe. Nothing else in the code calls telemetry.
 */
import { EventEmitter } from 'node:events';
import type { ModelTarget } from '../config/plan.ts';
import type { HealthState } from '../health/state.ts';
import type { FailureReason } from '../retry/failure.ts';

/** A request leaves one model for the next, inside the same request. */
export interface SwitchEvent {
  requestId: string;
  from: ModelTarget;
  to: ModelTarget;
  reason: FailureReason;
  status?: number;
}

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
}

export interface AttemptRecord {
  model: string;
  provider: string;
  group: number;
  outcome: 'success' | FailureReason;
  status?: number;
  message?: string;
  durationMs: number;
}

/** A request finished, one way or another. */
export interface RequestEvent {
  requestId: string;
  route: string;
  stream: boolean;
  status: number;
  /** ok: answered; failed: error status sent; cut: a committed stream ended with an error event; client_gone. */
  outcome: 'ok' | 'failed' | 'cut' | 'client_gone';
  attempts: AttemptRecord[];
  servedBy?: string;
  durationMs: number;
}

export interface EventMap {
  switch: [SwitchEvent];
  health: [HealthEvent];
  request: [RequestEvent];
}

export class Events extends EventEmitter<EventMap> {}
