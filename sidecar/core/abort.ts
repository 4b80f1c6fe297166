/**
 * Why an attempt was cut short, carried as the AbortSignal's reason, and how transport errors
 * (refused, reset, DNS, TLS, timeouts) map onto the failure vocabulary.
 */
import type { Failure, FailureReason } from './failure.ts';

/** The attempt's own timers, or the health view, ended it. */
export class AttemptAbort extends Error {
  readonly reason: FailureReason;
  constructor(reason: FailureReason, message: string) {
    super(message);
    this.name = 'AttemptAbort';
    this.reason = reason;
  }
}

/** The client went away: stop everything, start nothing. */
export class ClientGone extends Error {
  constructor() {
    super('the client closed the connection');
    this.name = 'ClientGone';
  }
}

const TLS_CODE = /^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_OSSL)/;
/** node:zlib's errors decoding a compressed answer (gzip/deflate: Z_*, brotli: ERR__*, zstd: ZSTD_*). */
const ZLIB_CODE = /^(Z_|ERR__|ERR_BROTLI|ZSTD_|ERR_ZSTD)/;

function codeOf(err: unknown): string | undefined {
  let e = err as { code?: unknown; cause?: unknown } | undefined;
  for (let i = 0; e && i < 4; i++) {
    if (typeof e.code === 'string' && e.code !== 'UND_ERR_ABORTED') return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
}

export function failureFromError(err: unknown, signal: AbortSignal): Failure {
  const reason = signal.aborted ? signal.reason : undefined;
  if (reason instanceof AttemptAbort) return { reason: reason.reason, message: reason.message };
  const code = codeOf(err) ?? '';
  const detail = code || (err instanceof Error ? err.name : 'error');
  const make = (r: FailureReason, what: string): Failure => ({ reason: r, message: `${what} (${detail})` });
  if (code === 'ECONNREFUSED') return make('connect_refused', 'connection refused');
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME') return make('dns', 'DNS lookup failed');
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ETIMEDOUT') return make('connect_timeout', 'connect timed out');
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return make('response_timeout', 'no response headers in time');
  if (code === 'UND_ERR_BODY_TIMEOUT') return make('stream_stalled', 'response body stalled');
  if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') return make('bad_response', 'response too large');
  if (TLS_CODE.test(code)) return make('tls', 'TLS handshake failed');
  if (ZLIB_CODE.test(code)) return make('bad_response', 'the compressed answer could not be decoded');
  if (err instanceof Error && err.name === 'SseTooLargeError') return { reason: 'bad_response', message: err.message };
  return make('connect_reset', 'connection reset or closed');
}
