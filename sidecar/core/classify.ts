/**
 * Which failure reason an upstream error status is (what the reason then means, for the request,
 * health and the client: FAILURES in failure.ts). Provider-neutral: each translator extracts the
 * error's message and type from its own wire format and asks here.
 */
import type { Failure } from './failure.ts';
import { excerpt } from './secret.ts';
import { retryAfterMs } from './retry-after.ts';

const CONTEXT_LENGTH =
  /context[_ ]length|context window|maximum context|prompt is too long|too many tokens|input is too long|exceeds? the (?:maximum|model)/i;

export interface UpstreamError {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The provider's error type / code, e.g. "rate_limit_exceeded", "overloaded_error". */
  type?: string;
  code?: string;
  message: string;
}

export function classifyStatus(err: UpstreamError, maxRetryAfterMs: number): Failure {
  const { status } = err;
  const message = `upstream ${status}${err.type ? ` ${err.type}` : ''}: ${excerpt(err.message, 300)}`;
  // No credit left: a 402, or OpenAI's insufficient_quota, which comes as a 429 though no wait ends it
  if (status === 402 || (status === 429 && (err.type === 'insufficient_quota' || err.code === 'insufficient_quota')))
    return { reason: 'quota_exhausted', status, message };
  if (status === 429) return { reason: 'rate_limited', status, message, retryAfterMs: retryAfterMs(err.headers, maxRetryAfterMs) };
  if (status === 529) return { reason: 'overloaded', status, message, retryAfterMs: retryAfterMs(err.headers, maxRetryAfterMs) };
  // a redirect from a provider's API is the provider's (or its configuration's) fault, not the request's
  if (status < 400) return { reason: 'upstream_redirect', status, message };
  if (status >= 500) return { reason: 'upstream_5xx', status, message, retryAfterMs: retryAfterMs(err.headers, maxRetryAfterMs) };
  if (status === 408) return { reason: 'request_timeout', status, message };
  if (status === 401 || status === 403) return { reason: 'auth', status, message };
  if (status === 404) return { reason: 'model_not_found', status, message };
  if (status === 400 && (err.code === 'context_length_exceeded' || CONTEXT_LENGTH.test(err.message)))
    return { reason: 'context_length', status, message };
  return { reason: 'client_error', status, message };
}
