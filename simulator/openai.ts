/**
 * OpenAI Chat Completions wire format: POST …/chat/completions (JSON or SSE
 * `chat.completion.chunk`s ending in `data: [DONE]`), GET /v1/models, and
 * `{"error":{message,type,param,code}}` error bodies.
 */
import type { Dialect, ErrorReply, ErrorSpec, Frame } from './dialect.ts';
import { headerValue, isRecord, mergeHeaders, resolveUsage, sse } from './dialect.ts';
import { startSimulator } from './server.ts';
import { randomId, serializeJson, splitArguments, splitText } from './text.ts';
import type { JsonBody, Reply, SimulatedProvider, SimulatorOptions } from './types.ts';

const CONTEXT_LENGTH_MESSAGE =
  "This model's maximum context length is 128000 tokens. However, your messages resulted in 135000 tokens. Please reduce the length of the messages.";

function statusDefaults(status: number, model: string): { type: string; code: string | null; message: string } {
  switch (status) {
    case 400:
      return { type: 'invalid_request_error', code: null, message: 'Invalid request.' };
    case 401:
      return {
        type: 'invalid_request_error',
        code: 'invalid_api_key',
        message: 'Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.',
      };
    case 403:
      return {
        type: 'invalid_request_error',
        code: 'unsupported_country_region_territory',
        message: 'Country, region, or territory not supported',
      };
    case 404:
      return {
        type: 'invalid_request_error',
        code: 'model_not_found',
        message: `The model \`${model}\` does not exist or you do not have access to it.`,
      };
    case 429:
      return { type: 'requests', code: 'rate_limit_exceeded', message: rateLimitMessage(model, 'requests') };
    case 502:
      return { type: 'server_error', code: null, message: 'Bad gateway.' };
    case 503:
      return { type: 'server_error', code: null, message: 'The server is overloaded or not ready yet.' };
    case 504:
      return { type: 'server_error', code: null, message: 'Gateway timeout.' };
    default:
      return status >= 500
        ? {
            type: 'server_error',
            code: null,
            message: 'The server had an error while processing your request. Sorry about that!',
          }
        : { type: 'invalid_request_error', code: null, message: `Request failed with status ${status}.` };
  }
}

const QUOTA_MESSAGE =
  'You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.';

/** OpenAI's 429 message for the limit that ran out (the wait it names is the reset header's). */
function rateLimitMessage(model: string, limit: 'requests' | 'tokens'): string {
  return limit === 'requests'
    ? `Rate limit reached for ${model} in organization org-simulated on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms. Visit https://platform.openai.com/account/rate-limits to learn more.`
    : `Rate limit reached for ${model} in organization org-simulated on tokens per min (TPM): Limit 30000, Used 29950, Requested 400. Please try again in 700ms. Visit https://platform.openai.com/account/rate-limits to learn more.`;
}

/**
 * The x-ratelimit-* headers OpenAI sends with a 429, all together: the limit, what remains and
 * when it resets (a Go duration) for requests and for tokens. Which one ran out follows the
 * error's type; the wait is the one the message names. No retry-after: OpenAI sends one only
 * now and then, a fault adds it. An insufficient_quota 429 is no rate limit: none of these.
 */
export function rateLimitHeaders(limit: 'requests' | 'tokens'): Record<string, string> {
  return limit === 'requests'
    ? {
        'x-ratelimit-limit-requests': '500',
        'x-ratelimit-remaining-requests': '0',
        'x-ratelimit-reset-requests': '120ms',
        'x-ratelimit-limit-tokens': '30000',
        'x-ratelimit-remaining-tokens': '29990',
        'x-ratelimit-reset-tokens': '20ms',
      }
    : {
        'x-ratelimit-limit-requests': '500',
        'x-ratelimit-remaining-requests': '499',
        'x-ratelimit-reset-requests': '120ms',
        'x-ratelimit-limit-tokens': '30000',
        'x-ratelimit-remaining-tokens': '50',
        'x-ratelimit-reset-tokens': '700ms',
      };
}

/** The error object inside `{"error": …}`, with errorType special cases mapped as the real API reports them. */
function errorObject(spec: ErrorSpec, model: string): Record<string, unknown> {
  const d = statusDefaults(spec.status, model);
  let type = spec.type ?? d.type;
  let code = spec.code !== undefined ? spec.code : d.code;
  let message = spec.message ?? d.message;
  let param = spec.param ?? null;
  if (spec.type === 'context_length_exceeded') {
    type = 'invalid_request_error';
    code = 'context_length_exceeded';
    param = 'messages';
    message = spec.message ?? CONTEXT_LENGTH_MESSAGE;
  } else if (spec.type === 'insufficient_quota') {
    code = 'insufficient_quota';
    message = spec.message ?? QUOTA_MESSAGE;
  } else if (spec.status === 429 && spec.type === 'tokens') {
    message = spec.message ?? rateLimitMessage(model, 'tokens');
  }
  return { message, type, param, code };
}

function invalid(message: string, param: string | null = null, code: string | null = null): ErrorSpec {
  return { status: 400, type: 'invalid_request_error', message, param, code };
}

function jsonTypeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a decimal';
  if (typeof value === 'boolean') return 'a boolean';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function maskKey(key: string): string {
  return key.length <= 8 ? '*'.repeat(key.length) : `${key.slice(0, 3)}${'*'.repeat(8)}${key.slice(-4)}`;
}

/** `options`: the wire style (SimulatorOptions.jsonStyle, keyOrder). */
export function createOpenAIDialect(model: string, options: Pick<SimulatorOptions, 'jsonStyle' | 'keyOrder'> = {}): Dialect {
  const style = { spacing: options.jsonStyle, keyOrder: options.keyOrder };
  const json = (value: unknown) => serializeJson(value, style);
  const finishReasonOf = (reply: Reply) => reply.finishReason ?? (reply.toolCalls?.length ? 'tool_calls' : 'stop');
  const toolCallsOf = (reply: Reply) =>
    (reply.toolCalls ?? []).map((c) => ({ id: c.id ?? randomId('call_'), name: c.name, arguments: c.arguments }));
  const usageOf = (body: JsonBody, reply: Reply) => {
    const u = resolveUsage(body, reply);
    return {
      prompt_tokens: u.promptTokens,
      completion_tokens: u.completionTokens,
      total_tokens: u.promptTokens + u.completionTokens,
      prompt_tokens_details: { cached_tokens: u.cacheReadTokens, audio_tokens: 0 },
      completion_tokens_details: {
        reasoning_tokens: 0,
        audio_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0,
      },
    };
  };

  return {
    kind: 'openai',
    requestIdHeader: 'x-request-id',
    streamErrorStatus: 500,
    invalidJsonFrame: sse('{not json'),

    newRequestId: () => randomId('req_', 32),

    route(method, pathname) {
      if (method === 'POST' && pathname.endsWith('/chat/completions')) return 'chat';
      if (method === 'GET' && pathname.endsWith('/models')) return 'models';
      return 'unknown';
    },

    authError(headers, apiKey) {
      if (apiKey === undefined) return undefined;
      const auth = headerValue(headers, 'authorization');
      if (!auth?.startsWith('Bearer ') || auth.slice(7).trim() === '') {
        return {
          status: 401,
          type: 'invalid_request_error',
          code: null,
          message:
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
        };
      }
      const key = auth.slice(7).trim();
      if (key !== apiKey) {
        return {
          status: 401,
          code: 'invalid_api_key',
          message: `Incorrect API key provided: ${maskKey(key)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
        };
      }
      return undefined;
    },

    validate(_headers, body, rawBody) {
      if (body === undefined) {
        return invalid(
          rawBody.trim() === ''
            ? "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
            : "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
        );
      }
      if (!isRecord(body)) return invalid(`Invalid type for request body: expected an object, but got ${jsonTypeName(body)} instead.`);
      if (body.model === undefined || body.model === null || body.model === '') {
        return invalid('you must provide a model parameter');
      }
      if (typeof body.model !== 'string') {
        return invalid(
          `Invalid type for 'model': expected a string, but got ${jsonTypeName(body.model)} instead.`,
          'model',
          'invalid_type',
        );
      }
      if (body.messages === undefined) return invalid("Missing required parameter: 'messages'.", 'messages', 'missing_required_parameter');
      if (!Array.isArray(body.messages)) {
        return invalid(
          `Invalid type for 'messages': expected an array of objects, but got ${jsonTypeName(body.messages)} instead.`,
          'messages',
          'invalid_type',
        );
      }
      if (body.messages.length === 0) {
        return invalid(
          "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
          'messages',
          'empty_array',
        );
      }
      for (const [i, m] of body.messages.entries()) {
        if (!isRecord(m) || typeof m.role !== 'string') {
          return invalid(`Missing required parameter: 'messages[${i}].role'.`, `messages[${i}].role`, 'missing_required_parameter');
        }
      }
      return undefined;
    },

    notFound(method, pathname) {
      return { status: 404, type: 'invalid_request_error', code: null, message: `Invalid URL (${method} ${pathname})` };
    },

    error(spec, requestId): ErrorReply {
      return {
        status: spec.status,
        headers: mergeHeaders(
          spec.status === 429 && spec.type !== 'insufficient_quota' ? rateLimitHeaders(spec.type === 'tokens' ? 'tokens' : 'requests') : {},
          { 'x-request-id': requestId },
          spec.headers,
        ),
        body: json({ error: errorObject(spec, model) }),
      };
    },

    models() {
      return json({
        object: 'list',
        data: [{ id: model, object: 'model', created: 1715367049, owned_by: 'system' }],
      });
    },

    completion(body, reply) {
      const toolCalls = toolCallsOf(reply);
      const message: Record<string, unknown> = {
        role: 'assistant',
        content: toolCalls.length > 0 && !reply.content ? null : (reply.content ?? ''),
        refusal: null,
        annotations: [],
      };
      if (toolCalls.length > 0) {
        message.tool_calls = toolCalls.map((c) => ({
          id: c.id,
          type: 'function',
          function: { name: c.name, arguments: c.arguments },
        }));
      }
      return json({
        id: randomId('chatcmpl-', 29),
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: finishReasonOf(reply) }],
        usage: usageOf(body, reply),
        service_tier: 'default',
        system_fingerprint: null,
      });
    },

    stream(body, reply) {
      const includeUsage = isRecord(body?.stream_options) && body.stream_options.include_usage === true;
      const base = {
        id: randomId('chatcmpl-', 29),
        object: 'chat.completion.chunk',
        created: Math.floor(Date.now() / 1000),
        model,
        service_tier: 'default',
        system_fingerprint: null,
      };
      const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) =>
        sse(
          json({
            ...base,
            choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
            ...(includeUsage ? { usage: null } : {}),
          }),
        );

      const frames: Frame[] = [{ kind: 'pre', text: chunk({ role: 'assistant', content: '', refusal: null }) }];
      // reasoning precedes the answer, as reasoning_content deltas (not content: faults count answer chunks)
      for (const piece of splitText(reply.thinking ?? '')) frames.push({ kind: 'pre', text: chunk({ reasoning_content: piece }) });
      for (const piece of splitText(reply.content ?? '')) frames.push({ kind: 'delta', text: chunk({ content: piece }) });
      toolCallsOf(reply).forEach((call, index) => {
        frames.push({
          kind: 'block',
          text: chunk({
            tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } }],
          }),
        });
        for (const fragment of splitArguments(call.arguments)) {
          frames.push({ kind: 'delta', text: chunk({ tool_calls: [{ index, function: { arguments: fragment } }] }) });
        }
      });
      frames.push({ kind: 'tail', text: chunk({}, finishReasonOf(reply)) });
      if (includeUsage) {
        frames.push({ kind: 'tail', text: sse(json({ ...base, choices: [], usage: usageOf(body, reply) })) });
      }
      frames.push({ kind: 'tail', text: sse('[DONE]') });
      return frames;
    },

    streamError(errorType) {
      return sse(json({ error: errorObject({ status: 500, type: errorType }, model) }));
    },

    errorThenDone(errorType) {
      const chunk = {
        id: randomId('chatcmpl-', 29),
        object: 'chat.completion.chunk',
        created: Math.floor(Date.now() / 1000),
        model,
        choices: [],
      };
      return sse(json({ ...chunk, error: errorObject({ status: 500, type: errorType }, model) })) + sse('[DONE]');
    },

    keepAlive() {
      const chunk = { id: randomId('chatcmpl-', 29), object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model };
      return sse(json({ ...chunk, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: null }] }));
    },
  };
}

export function startOpenAISimulator(opts: SimulatorOptions): Promise<SimulatedProvider> {
  return startSimulator(createOpenAIDialect(opts.model, opts), opts);
}
