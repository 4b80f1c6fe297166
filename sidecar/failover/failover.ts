/**
 * Failover inside one request: ask selection for a model, run an attempt, and on a failure that
 * sent nothing to the client move on to the next candidate, within the attempt budget and the
 * request's deadline. Each switch and the request's whole story go out as events.
 */
import type { BackendPlan, ModelTarget } from '../config/plan.ts';
import type { HealthMonitor } from '../health/monitor.ts';
import type { AttemptRecord, Events, RequestEvent } from '../observe/events.ts';
import type { Balancer } from '../select/balancer.ts';
import { type AttemptOutcome, runAttempt } from '../send/attempt.ts';
import type { Pools } from '../send/pools.ts';
import { errorReply, type ErrorReply, streamErrorEvent } from '../core/errors.ts';
import type { Sink } from '../core/sink.ts';
import type { ChatRequest, ProviderAdapter } from '../translate/provider.ts';
import { redact } from '../core/secret.ts';
import type { Failure } from '../core/failure.ts';

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
  const started = performance.now();
  const settings = r.backend.settings;
  const deadline = started + settings.requestDeadlineMs;
  const maxAttempts = settings.maxAttempts > 0 ? settings.maxAttempts : Number.POSITIVE_INFINITY;
  const cursor = deps.balancer.cursor(r.backend);
  const attempts: AttemptRecord[] = [];
  const failures: { model: ModelTarget; failure: Failure }[] = [];
  let previous: { model: ModelTarget; failure: Failure } | undefined;
  let outcome: AttemptOutcome | undefined;
  let served: ModelTarget | undefined;
  let deadlineHit = false;
  /** An exception from the attempt: recorded like a failure, then rethrown for a 500. */
  let thrown: unknown;

  while (attempts.length < maxAttempts) {
    if (r.signal.aborted) {
      outcome = { kind: 'client_gone' };
      break;
    }
    const remainingMs = deadline - performance.now();
    if (remainingMs <= 0) {
      deadlineHit = true;
      break;
    }
    const pick = cursor.next();
    if (!pick) break;
    const model = pick.model;
    if (previous) {
      deps.events.emit('switch', { requestId: r.requestId, from: previous.model, to: model, reason: previous.failure.reason, status: previous.failure.status });
    }
    const attemptNo = attempts.length + 1;
    const controller = new AbortController();
    const forward = () => controller.abort(r.signal.reason);
    r.signal.addEventListener('abort', forward, { once: true });
    if (deps.events.wants('attempt-start')) {
      deps.events.emit('attempt-start', {
        requestId: r.requestId,
        attempt: attemptNo,
        model,
        state: deps.health.view.state(model),
        lastResort: pick.lastResort,
        stream: r.req.stream,
        at: Date.now(),
      });
    }
    const watch = deps.health.begin(model, controller, r.sink, r.req.stream, settings, { kind: 'request', id: r.requestId, attempt: attemptNo });
    const t0 = performance.now();
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
        servedHeaders: (contentType) => ({
          'content-type': contentType,
          'x-llm-failover-provider': headerValue(model.name),
          'x-llm-failover-model': headerValue(model.model ?? String(r.req.json.model ?? '')),
          'x-llm-failover-group': String(model.group + 1),
          'x-llm-failover-attempts': String(attemptNo),
        }),
      });
    } catch (err) {
      // a bug on our side must not leave the attempt tracked or the request unrecorded
      thrown = err;
      outcome = { kind: 'failed', failure: { reason: 'internal', message: `the sidecar failed on this attempt: ${redact(err instanceof Error ? err.message : String(err), r.req.clientAuthorization)}` } };
      if (r.sink.committed) {
        // a stream had started: it ends with an error event, never silently
        r.sink.end(streamErrorEvent('the sidecar failed while streaming this answer', 'stream_interrupted'));
        outcome = { kind: 'cut', failure: outcome.failure };
      }
    } finally {
      r.signal.removeEventListener('abort', forward);
    }
    const durationMs = performance.now() - t0;
    watch.end(outcome, durationMs);
    const record = recordOf(model, outcome, durationMs);
    attempts.push(record);
    deps.events.emit('attempt-end', {
      requestId: r.requestId,
      attempt: attemptNo,
      model,
      outcome: record.outcome,
      status: record.status,
      message: record.message,
      responseModel: outcome.kind === 'answered' ? outcome.model : undefined,
      firstChunkMs: outcome.kind === 'answered' ? outcome.firstByteMs : undefined,
      usage: outcome.kind === 'answered' ? outcome.usage : undefined,
      at: Date.now(),
    });
    if (outcome.kind === 'client_gone' || thrown !== undefined) break;
    if (outcome.kind !== 'failed') {
      served = model;
      break;
    }
    failures.push({ model, failure: outcome.failure });
    previous = { model, failure: outcome.failure };
  }

  let reply: ErrorReply | undefined;
  if (thrown !== undefined) reply = errorReply(500, 'internal_error', 'the sidecar failed to handle the request');
  else if (!served && outcome?.kind !== 'client_gone') reply = noModelReply(deps, r, failures, deadlineHit, attempts.length >= maxAttempts);
  const event: RequestEvent = {
    requestId: r.requestId,
    route: r.route,
    backend: r.backend.name,
    stream: r.req.stream,
    status: reply?.status ?? r.sink.status,
    outcome: outcome?.kind === 'client_gone' ? 'client_gone' : outcome?.kind === 'cut' ? 'cut' : served ? 'ok' : 'failed',
    attempts,
    servedBy: served?.name,
    durationMs: performance.now() - started,
    at: Date.now(),
  };
  deps.events.emit('request', event);
  if (thrown !== undefined) throw thrown;
  return reply;
}

function recordOf(model: ModelTarget, outcome: AttemptOutcome, durationMs: number): AttemptRecord {
  const base = { model: model.model ?? '', provider: model.name, group: model.group + 1, durationMs };
  switch (outcome.kind) {
    case 'answered':
      return { ...base, outcome: 'success', status: outcome.status };
    case 'client_gone':
      return { ...base, outcome: 'client_gone', message: 'the client went away' };
    case 'client_error':
      return { ...base, outcome: 'client_error', status: outcome.status, message: outcome.failure.message };
    default:
      return { ...base, outcome: outcome.failure.reason, status: outcome.failure.status, message: outcome.failure.message };
  }
}

/**
 * A header value as HTTP carries it: visible ASCII as it is; anything else (a model named
 * `qwen-通义千问`, a client's model with CR/LF) percent-encoded, so the answer never breaks on
 * its own headers. The body carries the name as it is.
 */
export function headerValue(text: string): string {
  return /^[\x20-\x7e]*$/.test(text) ? text : encodeURIComponent(text);
}

/**
 * The answer when no model served: 504 when the request's deadline ran out; 429 when every
 * model is waiting out a rate limit (each failed with a 429, or was not called because its
 * provider's stated wait is not over): the app is sending more than its keys allow, and its
 * SDK's rate-limit handling applies; 503 otherwise. Every one carries Retry-After: the earliest
 * moment a model of the Backend may serve again.
 */
function noModelReply(deps: FailoverDeps, r: FailoverRequest, failures: { model: ModelTarget; failure: Failure }[], deadlineHit: boolean, budgetSpent: boolean): ErrorReply {
  const tried = failures.map(({ model, failure }) => ({ provider: model.name, model: model.model ?? null, reason: failure.reason, status: failure.status ?? null, message: failure.message }));
  const story = failures.map(({ model, failure }) => `${model.name}: ${failure.message}`).join('; ');
  const models = r.backend.groups.flat();
  const view = deps.health.view;
  const recovery = view.earliestRecovery(models);
  const headers: Record<string, string> = { 'retry-after': String(Math.max(1, Math.ceil((recovery - Date.now()) / 1000))) };
  if (deadlineHit) return errorReply(504, 'request_deadline_exceeded', `no model answered within the request deadline${story ? ` (${story})` : ''}`, headers, { attempts: tried });
  const failedOn = new Set(failures.map((f) => f.model));
  const heldBack = models.filter((m) => !failedOn.has(m) && view.isHeldBack(m));
  if (!budgetSpent && failures.every((f) => f.failure.reason === 'rate_limited') && failures.length + heldBack.length === models.length) {
    const waiting = heldBack.map((m) => m.name).join(', ');
    return errorReply(429, 'all_models_rate_limited', `every model is rate-limited: ${[story, waiting && `${waiting}: waiting out the provider's Retry-After`].filter(Boolean).join('; ')}`, headers, { attempts: tried });
  }
  const why = budgetSpent ? `the attempt budget (${failures.length}) was spent` : 'every model failed';
  const skipped = heldBack.length > 0 ? `; not called inside their provider's Retry-After: ${heldBack.map((m) => m.name).join(', ')}` : '';
  return errorReply(503, 'all_models_failed', `no model could serve the request: ${why}${story ? `: ${story}` : ''}${skipped}`, headers, { attempts: tried });
}
