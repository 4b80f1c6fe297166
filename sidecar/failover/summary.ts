/**
 * What a request's attempts come to, written down: each attempt's record for the events
 * (`recordOf`), and the reply when no model served (`noModelReply`: 503, 429 or 504).
 */
import type { BackendPlan, ModelTarget } from '../config/plan.ts';
import { errorReply, type ErrorReply } from '../core/errors.ts';
import { FAILURES, type Failure } from '../core/failure.ts';
import type { HealthView } from '../health/view.ts';
import type { AttemptRecord } from '../observe/events.ts';
import type { AttemptOutcome } from '../send/outcome.ts';

/** One model that failed the request, and how. */
export interface ModelFailure {
  model: ModelTarget;
  failure: Failure;
}

export function recordOf(model: ModelTarget, outcome: AttemptOutcome, durationMs: number): AttemptRecord {
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
 * The answer when no model served: 504 when the request's deadline ran out; 429 when every
 * model is waiting out a rate limit (each failed with a reason the client sees as
 * `rate_limited`, or was not called because its provider's stated wait is not over): the app is
 * sending more than its keys allow, and its SDK's rate-limit handling applies; 503 otherwise.
 * Every one carries Retry-After: the earliest moment a model of the Backend may serve again.
 */
export function noModelReply(
  view: HealthView,
  backend: BackendPlan,
  failures: readonly ModelFailure[],
  deadlineHit: boolean,
  budgetSpent: boolean,
): ErrorReply {
  const tried = failures.map(({ model, failure }) => ({
    provider: model.name,
    model: model.model ?? null,
    reason: failure.reason,
    status: failure.status ?? null,
    message: failure.message,
  }));
  const story = failures.map(({ model, failure }) => `${model.name}: ${failure.message}`).join('; ');
  const models = backend.groups.flat();
  const recovery = view.earliestRecovery(models);
  const headers: Record<string, string> = { 'retry-after': String(Math.max(1, Math.ceil((recovery - Date.now()) / 1000))) };
  if (deadlineHit)
    return errorReply(
      504,
      'request_deadline_exceeded',
      `no model answered within the request deadline${story ? ` (${story})` : ''}`,
      headers,
      { attempts: tried },
    );
  const failedOn = new Set(failures.map((f) => f.model));
  const heldBack = models.filter((m) => !failedOn.has(m) && view.isHeldBack(m));
  if (
    !budgetSpent &&
    failures.every((f) => FAILURES[f.failure.reason].client === 'rate_limited') &&
    failures.length + heldBack.length === models.length
  ) {
    const waiting = heldBack.map((m) => m.name).join(', ');
    return errorReply(
      429,
      'all_models_rate_limited',
      `every model is rate-limited: ${[story, waiting && `${waiting}: waiting out the provider's Retry-After`].filter(Boolean).join('; ')}`,
      headers,
      { attempts: tried },
    );
  }
  const why = budgetSpent ? `the attempt budget (${failures.length}) was spent` : 'every model failed';
  const skipped = heldBack.length > 0 ? `; not called inside their provider's Retry-After: ${heldBack.map((m) => m.name).join(', ')}` : '';
  return errorReply(503, 'all_models_failed', `no model could serve the request: ${why}${story ? `: ${story}` : ''}${skipped}`, headers, {
    attempts: tried,
  });
}
