/**
 * One request's record while it fails over: its clock (start, deadline), the attempts made, the
 * models that failed and how, and the one before the current attempt. It tells the event stream
 * each step: `switch`, `attempt-start`, `attempt-end`, and the whole story in `request`.
 */
import type { BackendPlan, ModelTarget } from '../config/plan.ts';
import type { ErrorReply } from '../core/errors.ts';
import { redact } from '../core/secret.ts';
import type { Sink } from '../core/sink.ts';
import type { HealthView } from '../health/view.ts';
import type { AttemptRecord, Events } from '../observe/events.ts';
import type { Pick } from '../select/balancer.ts';
import type { AttemptOutcome } from '../send/outcome.ts';
import type { ChatRequest } from '../translate/provider.ts';
import { type ModelFailure, recordOf } from './summary.ts';

/** The request as its record needs it. */
export interface RecordedRequest {
  requestId: string;
  route: string;
  backend: BackendPlan;
  req: ChatRequest;
  sink: Sink;
}

export class RequestRecord {
  readonly #events: Events;
  readonly #r: RecordedRequest;
  readonly #started = performance.now();
  readonly #deadline: number;
  readonly attempts: AttemptRecord[] = [];
  readonly failures: ModelFailure[] = [];
  /** The model the last attempt failed on: the next attempt is a switch from it. */
  #previous: ModelFailure | undefined;
  #thrown: unknown;

  constructor(events: Events, r: RecordedRequest) {
    this.#events = events;
    this.#r = r;
    this.#deadline = this.#started + r.backend.settings.requestDeadlineMs;
  }

  /** An exception from an attempt (a bug of ours): recorded like a failure, then rethrown for a 500. */
  get thrown(): unknown {
    return this.#thrown;
  }

  remainingMs(): number {
    return this.#deadline - performance.now();
  }

  /** An attempt on `pick` starts: a `switch` when another model failed before it, then `attempt-start`. Returns its number. */
  begin(pick: Pick, view: HealthView): number {
    const { model } = pick;
    const events = this.#events;
    const previous = this.#previous;
    if (previous) {
      events.emit('switch', {
        requestId: this.#r.requestId,
        from: previous.model,
        to: model,
        reason: previous.failure.reason,
        status: previous.failure.status,
      });
    }
    const attempt = this.attempts.length + 1;
    if (events.wants('attempt-start')) {
      events.emit('attempt-start', {
        requestId: this.#r.requestId,
        attempt,
        model,
        state: view.state(model),
        lastResort: pick.lastResort,
        stream: this.#r.req.stream,
        at: Date.now(),
      });
    }
    return attempt;
  }

  /** The attempt threw (a bug of ours): kept for the rethrow; its outcome, as the commit gate left the client. */
  crashed(err: unknown): AttemptOutcome {
    this.#thrown = err;
    const failure = {
      reason: 'internal' as const,
      message: `the sidecar failed on this attempt: ${redact(err instanceof Error ? err.message : String(err), this.#r.req.clientAuthorization)}`,
    };
    // a stream had started: the commit gate ended it with an error event
    return this.#r.sink.committed ? { kind: 'cut', failure } : { kind: 'failed', failure };
  }

  /** The attempt ended: its record and `attempt-end`; a failure that sent nothing is remembered for the switch and the reply. */
  end(model: ModelTarget, attempt: number, outcome: AttemptOutcome, durationMs: number): void {
    const record = recordOf(model, outcome, durationMs);
    this.attempts.push(record);
    this.#events.emit('attempt-end', {
      requestId: this.#r.requestId,
      attempt,
      model,
      outcome: record.outcome,
      status: record.status,
      message: record.message,
      responseModel: outcome.kind === 'answered' ? outcome.model : undefined,
      firstChunkMs: outcome.kind === 'answered' ? outcome.firstByteMs : undefined,
      usage: outcome.kind === 'answered' ? outcome.usage : undefined,
      at: Date.now(),
    });
    if (outcome.kind === 'failed') {
      const failed = { model, failure: outcome.failure };
      this.failures.push(failed);
      this.#previous = failed;
    }
  }

  /** The request is over: its `request` event. */
  finish(outcome: AttemptOutcome | undefined, served: ModelTarget | undefined, reply: ErrorReply | undefined): void {
    const r = this.#r;
    this.#events.emit('request', {
      requestId: r.requestId,
      route: r.route,
      backend: r.backend.name,
      stream: r.req.stream,
      status: reply?.status ?? r.sink.status,
      outcome: outcome?.kind === 'client_gone' ? 'client_gone' : outcome?.kind === 'cut' ? 'cut' : served ? 'ok' : 'failed',
      attempts: this.attempts,
      servedBy: served?.name,
      durationMs: performance.now() - this.#started,
      at: Date.now(),
    });
  }
}
