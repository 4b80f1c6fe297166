import { redact } from './secret.ts';

/**
 * Errors as OpenAI clients expect them: `{"error":{"message","type","code"}}` with the right
 * status, so an SDK raises its usual typed error. Every error body and error event passes the
 * one scrubber on its way out, whatever its message quotes.
 */
export function openaiErrorBody(message: string, type: string, code: string | null, extra?: Record<string, unknown>): string {
  return redact(JSON.stringify({ error: { message, type, param: null, code, ...extra } }));
}

export interface ErrorReply {
  status: number;
  type: string;
  code: string | null;
  message: string;
  headers?: Record<string, string>;
  extra?: Record<string, unknown>;
}

export const STATUS_TYPE: Record<number, string> = {
  400: 'invalid_request_error',
  404: 'invalid_request_error',
  405: 'invalid_request_error',
  408: 'timeout',
  413: 'invalid_request_error',
  415: 'invalid_request_error',
  429: 'rate_limit_error',
  431: 'invalid_request_error',
  500: 'server_error',
  503: 'service_unavailable',
  504: 'timeout',
};

export function errorReply(
  status: number,
  code: string,
  message: string,
  headers?: Record<string, string>,
  extra?: Record<string, unknown>,
): ErrorReply {
  return { status, type: STATUS_TYPE[status] ?? 'server_error', code, message, headers, extra };
}

/** An error event for a stream that already started: the client's SDK raises it, and no [DONE] follows. */
export function streamErrorEvent(message: string, code: string): string {
  return `data: ${openaiErrorBody(message, 'server_error', code)}\n\n`;
}
