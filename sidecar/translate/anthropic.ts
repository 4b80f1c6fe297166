/**
 * Anthropic's Messages API as a first-class provider: the client's OpenAI request goes out as a
 * Messages request, the answer (whole or streamed) and the errors come back in OpenAI's shape,
 * so the app cannot tell who answered except by `model`. Field by field: docs/translation.md.
 */
import type { ModelTarget } from '../config/plan.ts';
import { ANTHROPIC } from '../config/providers/anthropic.ts';
import { classifyStatus } from '../core/classify.ts';
import type { Failure } from '../core/failure.ts';
import { openaiErrorBody } from '../core/errors.ts';
import { anthropicRequest, isLegacyFunctions, isRecord } from './anthropic-request.ts';
import { translateMessage } from './anthropic-response.ts';
import { AnthropicStream } from './anthropic-stream.ts';
import { wantsUsage } from './openai-output.ts';
import {
  authHeaders,
  type ChatRequest,
  type ErrorTranslation,
  type ProviderAdapter,
  requestedModel,
  type StreamTranslator,
  type Translated,
  type UpstreamRequest,
} from './provider.ts';

/** Anthropic's error type as the OpenAI error `type` and `code` the client sees. */
export const OPENAI_ERROR: Record<string, { type: string; code: string | null }> = {
  invalid_request_error: { type: 'invalid_request_error', code: null },
  request_too_large: { type: 'invalid_request_error', code: 'request_too_large' },
  authentication_error: { type: 'authentication_error', code: 'invalid_api_key' },
  permission_error: { type: 'permission_error', code: 'permission_denied' },
  not_found_error: { type: 'not_found_error', code: 'not_found' },
  billing_error: { type: 'insufficient_quota', code: 'insufficient_quota' },
  rate_limit_error: { type: 'rate_limit_error', code: 'rate_limit_exceeded' },
  conflict_error: { type: 'invalid_request_error', code: 'conflict' },
  api_error: { type: 'server_error', code: null },
  overloaded_error: { type: 'server_error', code: 'overloaded' },
  timeout_error: { type: 'timeout', code: null },
};

/** Anthropic's error type for a status, when the body named none (a proxy's HTML page, an empty body). */
const TYPE_FOR_STATUS: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  409: 'conflict_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  504: 'timeout_error',
  529: 'overloaded_error',
};

/** "max_tokens: 64001 > 64000, which is the maximum allowed number of output tokens for …": too big for this model, not for every model. */
const OUTPUT_LIMIT = /max_tokens:?\s*\d+\s*>\s*\d+/i;

function parseError(body: Buffer): { type?: string; message: string } {
  const text = body.toString('utf8');
  try {
    const json: unknown = JSON.parse(text);
    if (isRecord(json)) {
      const e = isRecord(json.error) ? json.error : json;
      if (typeof e.message === 'string')
        return { type: typeof e.type === 'string' && e.type !== 'error' ? e.type : undefined, message: e.message };
    }
  } catch {
    // not JSON: use the text
  }
  // the whole text: classifyStatus scrubs it, then cuts it (a cut first would leave a key's fragment)
  return { message: text || 'empty body' };
}

function translateError(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  body: Buffer,
  maxRetryAfterMs: number,
): ErrorTranslation {
  const e = parseError(body);
  const type =
    e.type ?? (Object.hasOwn(TYPE_FOR_STATUS, status) ? TYPE_FOR_STATUS[status] : status >= 500 ? 'api_error' : 'invalid_request_error');
  const code = status === 400 && OUTPUT_LIMIT.test(e.message) ? 'context_length_exceeded' : undefined;
  let failure: Failure = classifyStatus({ status, headers, type, code, message: e.message }, maxRetryAfterMs);
  // No credit left (billing_error, whatever the status): the key cannot serve until someone pays, as with a revoked key.
  if (type === 'billing_error' && failure.reason === 'client_error') failure = { ...failure, reason: 'quota_exhausted' };
  // own keys only: an error type of "constructor" is just unknown
  const mapped = Object.hasOwn(OPENAI_ERROR, type)
    ? OPENAI_ERROR[type]
    : status >= 500
      ? OPENAI_ERROR.api_error
      : OPENAI_ERROR.invalid_request_error;
  const clientCode = failure.reason === 'context_length' ? 'context_length_exceeded' : mapped.code;
  return { failure, clientBody: openaiErrorBody(e.message, mapped.type, clientCode) };
}

export const anthropicAdapter: ProviderAdapter = {
  buildRequest(req: ChatRequest, target: ModelTarget): UpstreamRequest {
    const model = requestedModel(req, target);
    const key = `anthropic:${model ?? ''}`;
    let body = req.bodies.get(key);
    if (body === undefined) {
      body = JSON.stringify(anthropicRequest(req.json, model, req.stream));
      req.bodies.set(key, body);
    }
    return {
      path: target.path,
      headers: {
        'content-type': 'application/json',
        accept: req.stream ? 'text/event-stream' : 'application/json',
        ...ANTHROPIC.headers(target),
        ...authHeaders(req, target),
      },
      body,
    };
  },

  translateResponse(body: Buffer, req: ChatRequest, target: ModelTarget): Translated {
    return translateMessage(body, requestedModel(req, target), isLegacyFunctions(req.json));
  },

  translateError,

  streamTranslator(req: ChatRequest, target: ModelTarget): StreamTranslator {
    return new AnthropicStream(requestedModel(req, target), wantsUsage(req.json), isLegacyFunctions(req.json), req.clientAuthorization);
  },
};
