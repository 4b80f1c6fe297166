/**
 * Why an attempt failed, and what each reason means (FAILURES): for the model's health, for
 * probes, for the request (move on or not) and for the client. One vocabulary and one table for
 * the request path, the health view, logs and metrics.
 */
export type FailureReason =
  | 'connect_refused'
  | 'connect_reset'
  | 'connect_timeout'
  | 'dns'
  | 'tls'
  | 'response_timeout'
  | 'first_token_timeout'
  | 'stream_stalled'
  | 'upstream_5xx'
  /** A 3xx from the provider's API: a misconfigured endpoint or a provider fault, never the request's. */
  | 'upstream_redirect'
  | 'overloaded'
  | 'rate_limited'
  /** Out of credit or quota (OpenAI's `insufficient_quota` 429, a 402): no short wait fixes it, someone must pay. */
  | 'quota_exhausted'
  | 'request_timeout'
  | 'auth'
  | 'model_not_found'
  | 'context_length'
  | 'bad_response'
  | 'stream_error'
  | 'marked_down'
  | 'untranslatable'
  /** The request's own deadline (`timeouts.request`) ran out during the attempt: not the model's fault. */
  | 'deadline_exceeded'
  /** The sidecar itself failed on this attempt (a bug): not the model's fault. */
  | 'internal'
  | 'client_error';

export interface Failure {
  reason: FailureReason;
  /** Upstream HTTP status, when there was one. */
  status?: number;
  /** Short, secret-free explanation for the client's 503 and the logs. */
  message: string;
  /** Set from Retry-After / retry-after-ms / x-ratelimit-reset-*, already capped. */
  retryAfterMs?: number;
}

/**
 * What one real attempt failing with a reason does to its model's health (health/passive.ts):
 * - `cool`: cooling for the provider's stated wait (Retry-After and kin), else the default cooldown;
 * - `down`: unhealthy at once, until a probe succeeds; with probes off, for a cooldown;
 * - `breaker`: one failure in the model's breaker window, so one failure in ten does not flap
 *   it; with the breaker off, cooling for the default cooldown;
 * - `none`: nothing.
 */
export type HealthEffect = 'cool' | 'down' | 'breaker' | 'none';

/**
 * What the client sees of a failure that came before anything was sent to it:
 * - `upstream_error`: the model's own error answer, handed back (status and body): the request
 *   is at fault, and another model would say the same;
 * - `another_model`: nothing of this attempt; the next model's answer, or, when none serves, the
 *   503 `all_models_failed` (504 when the deadline ran out) that lists it;
 * - `rate_limited`: likewise, except that when every model failed with it (or waits out a stated
 *   Retry-After), a 429 `all_models_rate_limited`, so the SDK's rate-limit handling applies;
 * - `sidecar_error`: a 500 `internal_error` (the sidecar's own bug; no other model is tried).
 * After a stream started, every failure reaches the client as an error event and no `[DONE]`.
 */
export type ClientView = 'upstream_error' | 'another_model' | 'rate_limited' | 'sidecar_error';

export interface FailureMeaning {
  /** It says something about the model; false: the request's own fault, the sidecar's, or the request's clock. */
  readonly blamesModel: boolean;
  /** What a real attempt failing with it does to the model's health (see HealthEffect). */
  readonly health: HealthEffect;
  /**
   * No short wait ends it: credentials, credit or the model itself must change. A probe failing
   * with it takes a usable model down at once, without waiting for the threshold; with probes
   * off, a real attempt failing with it takes the model out for the auth cooldown
   * (`cooldownAfterAuthFailure`), not `cooldownAfterFailure`.
   */
  readonly definitive: boolean;
  /** The request may move on to the next model (nothing was sent to the client yet). */
  readonly failsOver: boolean;
  /** What the client sees of it (see ClientView). */
  readonly client: ClientView;
}

/**
 * Every reason's meaning: the one table that failover, health (passive and active) and the
 * attempt read. `satisfies` keeps it total: a new reason does not compile until it has a row.
 */
export const FAILURES = {
  // the model cannot be reached: unhealthy at once
  connect_refused: { blamesModel: true, health: 'down', definitive: false, failsOver: true, client: 'another_model' },
  dns: { blamesModel: true, health: 'down', definitive: false, failsOver: true, client: 'another_model' },
  tls: { blamesModel: true, health: 'down', definitive: false, failsOver: true, client: 'another_model' },
  connect_timeout: { blamesModel: true, health: 'down', definitive: false, failsOver: true, client: 'another_model' },
  // passing faults: the breaker's rolling window decides
  connect_reset: { blamesModel: true, health: 'breaker', definitive: false, failsOver: true, client: 'another_model' },
  response_timeout: { blamesModel: true, health: 'breaker', definitive: false, failsOver: true, client: 'another_model' },
  first_token_timeout: { blamesModel: true, health: 'breaker', definitive: false, failsOver: true, client: 'another_model' },
  stream_stalled: { blamesModel: true, health: 'breaker', definitive: false, failsOver: true, client: 'another_model' },
  upstream_5xx: { blamesModel: true, health: 'breaker', definitive: false, failsOver: true, client: 'another_model' },
  upstream_redirect: { blamesModel: true, health: 'breaker', definitive: false, failsOver: true, client: 'another_model' },
  request_timeout: { blamesModel: true, health: 'breaker', definitive: false, failsOver: true, client: 'another_model' },
  bad_response: { blamesModel: true, health: 'breaker', definitive: false, failsOver: true, client: 'another_model' },
  stream_error: { blamesModel: true, health: 'breaker', definitive: false, failsOver: true, client: 'another_model' },
  // told to back off
  rate_limited: { blamesModel: true, health: 'cool', definitive: false, failsOver: true, client: 'rate_limited' },
  overloaded: { blamesModel: true, health: 'cool', definitive: false, failsOver: true, client: 'another_model' },
  // someone must act (a key, credit, a model name): unhealthy at once, and for long
  auth: { blamesModel: true, health: 'down', definitive: true, failsOver: true, client: 'another_model' },
  model_not_found: { blamesModel: true, health: 'down', definitive: true, failsOver: true, client: 'another_model' },
  quota_exhausted: { blamesModel: true, health: 'down', definitive: true, failsOver: true, client: 'another_model' },
  // the health view cancelled the attempt because it marked the model down: it said so already
  marked_down: { blamesModel: true, health: 'none', definitive: false, failsOver: true, client: 'another_model' },
  // not the model's fault, and the next model may serve: a longer context window, another
  // translator, or (deadline_exceeded) the loop stops on the request's deadline and answers 504
  context_length: { blamesModel: false, health: 'none', definitive: false, failsOver: true, client: 'another_model' },
  untranslatable: { blamesModel: false, health: 'none', definitive: false, failsOver: true, client: 'another_model' },
  deadline_exceeded: { blamesModel: false, health: 'none', definitive: false, failsOver: true, client: 'another_model' },
  // the sidecar's own bug: the request ends with a 500 (or, committed, an error event)
  internal: { blamesModel: false, health: 'none', definitive: false, failsOver: false, client: 'sidecar_error' },
  // the request's own fault: the model's answer goes back to the client
  client_error: { blamesModel: false, health: 'none', definitive: false, failsOver: false, client: 'upstream_error' },
} as const satisfies Record<FailureReason, FailureMeaning>;
