/**
 * Failover inside one request: ask selection for a model, run an attempt, and on a failure that
 * sent nothing to the client move on to the next candidate, within the attempt budget and the
 * request's deadline. The request's record (request-record.ts) tells the event stream each step.
 */
import type { BackendPlan, ModelTarget } from '../config/plan.ts';
import { errorReply, type ErrorReply } from '../core/errors.ts';
import type { Sink } from '../core/sink.ts';
import type { HealthMonitor } from '../health/monitor.ts';
import type { Events } from '../observe/events.ts';
import type { Balancer, Pick } from '../select/balancer.ts';
import { runAttempt } from '../send/attempt.ts';
import type { AttemptOutcome } from '../send/outcome.ts';
import type { Pools } from '../send/pools.ts';
import type { ChatRequest, ProviderAdapter } from '../translate/provider.ts';
import { RequestRecord } from './request-record.ts';
import { noModelReply } from './summary.ts';

export interface FailoverDeps {
  balancer: Balancer;
  health: HealthMonitor;
  pools: Pools;
  events: Events;
  adapters: Record<ModelTarget['provider'], ProviderAdapter>;
}

export interface FailoverRequest {
  requestId: string;
  route: string;
  backend: BackendPlan;
  req: ChatRequest;
  sink: Sink;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
}

/** Serves the request; returns an error to send when no model could (nothing was sent yet). */
export async function serveWithFailover(deps: FailoverDeps, r: FailoverRequest): Promise<ErrorReply | undefined> {
  const record = new RequestRecord(deps.events, r);
  const settings = r.backend.settings;
  const maxAttempts = settings.maxAttempts > 0 ? settings.maxAttempts : Number.POSITIVE_INFINITY;
  const cursor = deps.balancer.cursor(r.backend);
  let outcome: AttemptOutcome | undefined;
  let served: ModelTarget | undefined;
  let deadlineHit = false;

  while (record.attempts.length < maxAttempts) {
    if (r.signal.aborted) {
      outcome = { kind: 'client_gone' };
      break;
    }
    const remainingMs = record.remainingMs();
    if (remainingMs <= 0) {
      deadlineHit = true;
      break;
    }
    const pick = cursor.next();
    if (!pick) break;
    outcome = await attemptOn(deps, r, record, pick, remainingMs);
    if (outcome.kind === 'client_gone' || record.thrown !== undefined) break;
    if (outcome.kind !== 'failed') {
      served = pick.model;
      break;
    }
  }

  let reply: ErrorReply | undefined;
  if (record.thrown !== undefined) reply = errorReply(500, 'internal_error', 'the sidecar failed to handle the request');
  else if (!served && outcome?.kind !== 'client_gone')
    reply = noModelReply(deps.health.view, r.backend, record.failures, deadlineHit, record.attempts.length >= maxAttempts);
  record.finish(outcome, served, reply);
  if (record.thrown !== undefined) throw record.thrown;
  return reply;
}

/** One attempt on the picked model: cancellable by the client and by health, watched by health, recorded. */
async function attemptOn(
  deps: FailoverDeps,
  r: FailoverRequest,
  record: RequestRecord,
  pick: Pick,
  remainingMs: number,
): Promise<AttemptOutcome> {
  const model = pick.model;
  const settings = r.backend.settings;
  const attempt = record.begin(pick, deps.health.view);
  const controller = new AbortController();
  const forward = () => controller.abort(r.signal.reason);
  r.signal.addEventListener('abort', forward, { once: true });
  const watch = deps.health.begin(model, controller, r.sink, r.req.stream, settings, { kind: 'request', id: r.requestId, attempt });
  const t0 = performance.now();
  let outcome: AttemptOutcome;
  try {
    outcome = await runAttempt({
      req: r.req,
      target: model,
      adapter: deps.adapters[model.provider],
      dispatcher: deps.pools.for(model),
      settings,
      sink: r.sink,
      controller,
      remainingMs,
      attempt,
    });
  } catch (err) {
    // a bug on our side must not leave the attempt tracked or the request unrecorded
    outcome = record.crashed(err);
  } finally {
    r.signal.removeEventListener('abort', forward);
  }
  const durationMs = performance.now() - t0;
  watch.end(outcome, durationMs);
  record.end(model, attempt, outcome, durationMs);
  return outcome;
}
