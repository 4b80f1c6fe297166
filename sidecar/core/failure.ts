/**
 * Why an attempt failed, and whether the request may move on to the next model.
 * One vocabulary for the request path, the health view, logs and metrics.
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

/** Failures that are the provider's problem: the next model may serve the request. */
export function isRetryable(reason: FailureReason): boolean {
  return reason !== 'client_error';
}

/** Failures that say the model itself cannot serve (credentials, quota, model gone), not a passing fault. */
export function isAuthOrConfig(reason: FailureReason): boolean {
  return reason === 'auth' || reason === 'model_not_found' || reason === 'quota_exhausted';
}
