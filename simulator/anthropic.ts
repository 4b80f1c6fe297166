/**
 * Anthropic Messages wire format: POST /v1/messages (JSON or named SSE events
 * message_start … message_stop), GET /v1/models, and
 * `{"type":"error","error":{type,message},"request_id"}` error bodies.
 */
import type { Dialect, ErrorReply, ErrorSpec, Frame } from './dialect.ts';
import { anthropicRequestProblem } from './anthropic-validate.ts';
import { headerValue, mergeHeaders, resolveUsage, sse } from './dialect.ts';
import { startSimulator } from './server.ts';
import { randomId, splitArguments, splitText } from './text.ts';
import type { JsonBody, Reply, SimulatedProvider, SimulatorOptions } from './types.ts';

const TYPE_FOR_STATUS: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  409: 'conflict_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  504: 'timeout_error',
  529: 'overloaded_error',
};

const MESSAGE_FOR_TYPE: Record<string, string> = {
  invalid_request_error: 'Invalid request',
  authentication_error: 'invalid x-api-key',
  billing_error: 'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.',
  permission_error: 'Your API key does not have permission to use the specified resource.',
  not_found_error: 'Not found',
  conflict_error: 'Conflict',
  request_too_large: 'Request exceeds the maximum allowed number of bytes.',
  rate_limit_error:
    'This request would exceed the rate limit for your organization of 50 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.',
  api_error: 'Internal server error',
  timeout_error: 'Request timeout',
  overloaded_error: 'Overloaded',
};

function errorObject(spec: ErrorSpec): { type: string; message: string } {
  if (spec.type === 'context_length_exceeded') {
    // Anthropic has no such type: a too-long prompt is an invalid_request_error.
    return { type: 'invalid_request_error', message: spec.message ?? 'prompt is too long: 215000 tokens > 200000 maximum' };
  }
  const type = spec.type ?? TYPE_FOR_STATUS[spec.status] ?? (spec.status >= 500 ? 'api_error' : 'invalid_request_error');
  return { type, message: spec.message ?? MESSAGE_FOR_TYPE[type] ?? 'An unexpected error occurred' };
}

/** An RFC 3339 instant on a whole second, at least `ms` from now, as Anthropic writes its resets. */
function resetIn(ms: number): string {
  return new Date(Math.ceil((Date.now() + ms) / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/**
 * The headers of Anthropic's real 429, sent together: retry-after (seconds) and every
 * anthropic-ratelimit-* limit / remaining / reset (RFC 3339). The requests bucket is the one that
 * ran out (50 requests per minute, one back within the second); a fault's headers override these.
 */
export function rateLimitHeaders(): Record<string, string> {
  const soon = resetIn(1000);
  return {
    'retry-after': '1',
    'anthropic-ratelimit-requests-limit': '50',
    'anthropic-ratelimit-requests-remaining': '0',
    'anthropic-ratelimit-requests-reset': soon,
    'anthropic-ratelimit-tokens-limit': '90000',
    'anthropic-ratelimit-tokens-remaining': '89000',
    'anthropic-ratelimit-tokens-reset': soon,
    'anthropic-ratelimit-input-tokens-limit': '50000',
    'anthropic-ratelimit-input-tokens-remaining': '49500',
    'anthropic-ratelimit-input-tokens-reset': soon,
    'anthropic-ratelimit-output-tokens-limit': '40000',
    'anthropic-ratelimit-output-tokens-remaining': '39500',
    'anthropic-ratelimit-output-tokens-reset': soon,
  };
}

function invalid(message: string): ErrorSpec {
  return { status: 400, type: 'invalid_request_error', message };
}

function displayName(model: string): string {
  return model
    .split(/[-_]/)
    .filter((w) => w.length > 0)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join(' ');
}

export function createAnthropicDialect(model: string): Dialect {
  const stopReasonOf = (reply: Reply) => reply.finishReason ?? (reply.toolCalls?.length ? 'tool_use' : 'end_turn');
  const stopSequenceOf = (reply: Reply) => (stopReasonOf(reply) === 'stop_sequence' ? (reply.stopSequence ?? null) : null);
  const toolUsesOf = (reply: Reply) =>
    (reply.toolCalls ?? []).map((c) => ({ id: c.id ?? randomId('toolu_'), name: c.name, arguments: c.arguments }));
  const parseInput = (args: string): unknown => {
    try {
      return JSON.parse(args === '' ? '{}' : args);
    } catch {
      return {};
    }
  };
  const usageOf = (body: JsonBody, reply: Reply) => {
    const u = resolveUsage(body, reply);
    return {
      input_tokens: u.promptTokens,
      cache_creation_input_tokens: u.cacheCreationTokens,
      cache_read_input_tokens: u.cacheReadTokens,
      output_tokens: u.completionTokens,
      service_tier: 'standard',
    };
  };

  return {
    kind: 'anthropic',
    requestIdHeader: 'request-id',
    streamErrorStatus: 529,
    invalidJsonFrame: sse('{not json', 'content_block_delta'),

    newRequestId: () => randomId('req_', 24),

    route(method, pathname) {
      if (method === 'POST' && (pathname === '/v1/messages' || pathname.endsWith('/messages'))) return 'chat';
      if (method === 'GET' && pathname.endsWith('/models')) return 'models';
      return 'unknown';
    },

    authError(headers, apiKey) {
      // The API takes the key as x-api-key or (as the current SDK sends it) Authorization: Bearer.
      const bearer = headerValue(headers, 'authorization')
        ?.match(/^Bearer\s+(.+)$/i)?.[1]
        .trim();
      const key = headerValue(headers, 'x-api-key') || bearer;
      if (!key) return { status: 401, type: 'authentication_error', message: 'x-api-key header is required' };
      if (apiKey !== undefined && key !== apiKey) {
        return { status: 401, type: 'authentication_error', message: 'invalid x-api-key' };
      }
      return undefined;
    },

    validate(headers, body, rawBody) {
      if (!headerValue(headers, 'anthropic-version')) return invalid('anthropic-version: header is required');
      if (body === undefined) {
        return invalid(rawBody.trim() === '' ? 'Request body is empty' : 'There was an issue with your request body: invalid JSON');
      }
      const problem = anthropicRequestProblem(body);
      return problem ? invalid(problem) : undefined;
    },

    notFound() {
      return { status: 404, type: 'not_found_error', message: 'Not Found' };
    },

    error(spec, requestId): ErrorReply {
      return {
        status: spec.status,
        headers: mergeHeaders(spec.status === 429 ? rateLimitHeaders() : {}, { 'request-id': requestId }, spec.headers),
        body: JSON.stringify({ type: 'error', error: errorObject(spec), request_id: requestId }),
      };
    },

    models() {
      return JSON.stringify({
        data: [{ type: 'model', id: model, display_name: displayName(model), created_at: '2025-05-14T00:00:00Z' }],
        has_more: false,
        first_id: model,
        last_id: model,
      });
    },

    completion(body, reply) {
      const content: Record<string, unknown>[] = [];
      if (reply.content) content.push({ type: 'text', text: reply.content });
      for (const t of toolUsesOf(reply)) {
        content.push({ type: 'tool_use', id: t.id, name: t.name, input: parseInput(t.arguments) });
      }
      return JSON.stringify({
        id: randomId('msg_'),
        type: 'message',
        role: 'assistant',
        model,
        content,
        stop_reason: stopReasonOf(reply),
        stop_sequence: stopSequenceOf(reply),
        usage: usageOf(body, reply),
      });
    },

    stream(body, reply) {
      const usage = usageOf(body, reply);
      const event = (type: string, data: Record<string, unknown>) => sse(JSON.stringify({ type, ...data }), type);
      const frames: Frame[] = [
        {
          kind: 'pre',
          text: event('message_start', {
            message: {
              id: randomId('msg_'),
              type: 'message',
              role: 'assistant',
              model,
              content: [],
              stop_reason: null,
              stop_sequence: null,
              usage: { ...usage, output_tokens: 1 },
            },
          }),
        },
        { kind: 'pre', text: event('ping', {}) },
      ];
      let index = 0;
      if (reply.thinking) {
        frames.push({
          kind: 'pre',
          text: event('content_block_start', { index, content_block: { type: 'thinking', thinking: '', signature: '' } }),
        });
        for (const thinking of splitText(reply.thinking)) {
          frames.push({ kind: 'pre', text: event('content_block_delta', { index, delta: { type: 'thinking_delta', thinking } }) });
        }
        frames.push({
          kind: 'pre',
          text: event('content_block_delta', { index, delta: { type: 'signature_delta', signature: 'EqQBCgIYAhIM' } }),
        });
        frames.push({ kind: 'pre', text: event('content_block_stop', { index }) });
        index += 1;
      }
      if (reply.content) {
        frames.push({ kind: 'block', text: event('content_block_start', { index, content_block: { type: 'text', text: '' } }) });
        for (const text of splitText(reply.content)) {
          frames.push({ kind: 'delta', text: event('content_block_delta', { index, delta: { type: 'text_delta', text } }) });
        }
        frames.push({ kind: 'block', text: event('content_block_stop', { index }) });
        index += 1;
      }
      for (const t of toolUsesOf(reply)) {
        frames.push({
          kind: 'block',
          text: event('content_block_start', { index, content_block: { type: 'tool_use', id: t.id, name: t.name, input: {} } }),
        });
        for (const partial_json of splitArguments(t.arguments)) {
          frames.push({
            kind: 'delta',
            text: event('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json } }),
          });
        }
        frames.push({ kind: 'block', text: event('content_block_stop', { index }) });
        index += 1;
      }
      frames.push({
        kind: 'tail',
        text: event('message_delta', {
          delta: { stop_reason: stopReasonOf(reply), stop_sequence: stopSequenceOf(reply) },
          usage: { output_tokens: usage.output_tokens },
        }),
      });
      frames.push({ kind: 'tail', text: event('message_stop', {}) });
      return frames;
    },

    streamError(errorType) {
      return sse(JSON.stringify({ type: 'error', error: errorObject({ status: 529, type: errorType }) }), 'error');
    },

    errorThenDone(errorType) {
      return this.streamError(errorType) + sse(JSON.stringify({ type: 'message_stop' }), 'message_stop');
    },

    keepAlive() {
      return sse(JSON.stringify({ type: 'ping' }), 'ping');
    },
  };
}

export function startAnthropicSimulator(opts: SimulatorOptions): Promise<SimulatedProvider> {
  return startSimulator(createAnthropicDialect(opts.model), opts);
}
