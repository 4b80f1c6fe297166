/**
 * OpenAI and every OpenAI-compatible server (vLLM, Ollama, LocalAI, a company proxy): the
 * request goes out as the client wrote it with `model` set, the answer comes back untouched
 * once it proved to be a real answer.
 */
import type { ModelTarget } from '../config/plan.ts';
import { classifyStatus } from '../retry/classify.ts';
import type { Failure } from '../retry/failure.ts';
import { openaiErrorBody } from '../server/errors.ts';
import {
  authHeaders,
  type ChatRequest,
  type ErrorTranslation,
  type ProviderAdapter,
  requestedModel,
  type StreamStep,
  type StreamTranslator,
  type Translated,
  type UpstreamRequest,
  RequestRejected,
  type Usage,
} from './provider.ts';
import { type SseEvent, sseData } from './sse.ts';

/**
 * The body with `model` set. When the client sent no model (the normal case here) the field is
 * spliced in before the final brace: no parse or stringify of a large prompt.
 */
export function bodyWithModel(req: ChatRequest, model: string | undefined): string | Buffer {
  if (model === undefined) return req.raw;
  const cached = req.bodies.get(model);
  if (cached !== undefined) return cached;
  let body: string | Buffer;
  if (!req.hasModel) {
    // bytes, not strings: a large prompt is neither decoded nor encoded again
    const end = req.raw.lastIndexOf(0x7d); // "}"
    const tail = Buffer.from(`${Object.keys(req.json).length > 0 ? ',' : ''}"model":${JSON.stringify(model)}}`);
    body = Buffer.concat([req.raw.subarray(0, end), tail]);
  } else {
    try {
      body = JSON.stringify({ ...req.json, model });
    } catch (err) {
      if (err instanceof RangeError) throw new RequestRejected(400, 'request_too_deep', 'the request body is nested too deeply to process');
      throw err;
    }
  }
  req.bodies.set(model, body);
  return body;
}

function parseError(body: Buffer): { type?: string; code?: string; message: string } {
  try {
    const json = JSON.parse(body.toString('utf8')) as { error?: { message?: unknown; type?: unknown; code?: unknown } | string; message?: unknown };
    const e = json.error;
    if (typeof e === 'string') return { message: e };
    if (e && typeof e === 'object')
      return {
        message: typeof e.message === 'string' ? e.message : 'no message',
        type: typeof e.type === 'string' ? e.type : undefined,
        code: typeof e.code === 'string' ? e.code : undefined,
      };
    if (typeof json.message === 'string') return { message: json.message };
  } catch {
    // not JSON: use the text
  }
  return { message: body.toString('utf8').slice(0, 300) || 'empty body' };
}

function bad(message: string): Failure {
  return { reason: 'bad_response', message };
}

/** The usage an OpenAI-shaped answer reports, in the seam's terms (openai-output.ts builds the other direction). */
export function reportedUsage(json: { usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } | null }): Usage | undefined {
  const u = json.usage;
  if (!u || typeof u.prompt_tokens !== 'number' || typeof u.completion_tokens !== 'number') return undefined;
  return { inputTokens: u.prompt_tokens, outputTokens: u.completion_tokens };
}

function hasContent(chunk: { choices?: { delta?: Record<string, unknown>; finish_reason?: unknown }[] }): boolean {
  const choices = chunk.choices;
  if (!Array.isArray(choices)) return false;
  for (const c of choices) {
    if (!c || typeof c !== 'object') continue;
    if (c.finish_reason) return true;
    const d = c.delta;
    if (!d) continue;
    if ((typeof d.content === 'string' && d.content !== '') || (Array.isArray(d.tool_calls) && d.tool_calls.length > 0)) return true;
    if ((typeof d.refusal === 'string' && d.refusal !== '') || (typeof d.reasoning_content === 'string' && d.reasoning_content !== '')) return true;
    if (d.function_call) return true;
  }
  return false;
}

class OpenAIStream implements StreamTranslator {
  #committed = false;

  push(event: SseEvent): StreamStep {
    const data = event.data;
    if (data === '[DONE]') return { out: 'data: [DONE]\n\n', done: true, content: true };
    // After the commit point only errors and usage matter: OpenAI's chunks start with {"id", so the
    // full parse is reserved for chunks that could be an error or carry usage.
    if (this.#committed && data.startsWith('{"id"') && !data.includes('"usage":{')) return { out: sseData(data) };
    let json: { error?: { message?: string; type?: string }; choices?: unknown; model?: unknown; usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } | null };
    try {
      json = JSON.parse(data);
    } catch {
      return { error: bad(`malformed stream event: ${data.slice(0, 80)}`) };
    }
    if (json === null || typeof json !== 'object') return { error: bad('stream event is not a JSON object') };
    if (json.error || event.event === 'error') {
      const e = json.error ?? {};
      return { error: { reason: 'stream_error', message: `in-stream error${e.type ? ` ${e.type}` : ''}: ${e.message ?? 'no message'}` } };
    }
    const wasCommitted = this.#committed;
    const content = wasCommitted || hasContent(json as Parameters<typeof hasContent>[0]);
    if (content) this.#committed = true;
    const step: StreamStep = { out: sseData(data), content, usage: reportedUsage(json) };
    if (!wasCommitted && typeof json.model === 'string') step.model = json.model;
    return step;
  }
}

export const openaiAdapter: ProviderAdapter = {
  buildRequest(req: ChatRequest, target: ModelTarget): UpstreamRequest {
    return {
      path: target.path,
      headers: { 'content-type': 'application/json', accept: req.stream ? 'text/event-stream' : 'application/json', ...authHeaders(req, target) },
      body: bodyWithModel(req, target.model),
    };
  },

  translateResponse(body: Buffer, req: ChatRequest, target: ModelTarget): Translated {
    if (body.length === 0) return { ok: false, failure: bad('empty response body') };
    let json: { choices?: unknown; model?: unknown; error?: unknown; usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } | null };
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      return { ok: false, failure: bad('response body is not valid JSON') };
    }
    if (json && typeof json === 'object' && json.error) return { ok: false, failure: { reason: 'upstream_5xx', message: 'a 200 carrying an error object' } };
    if (!json || typeof json !== 'object' || !Array.isArray(json.choices)) return { ok: false, failure: bad('response has no choices') };
    return { ok: true, body, model: typeof json.model === 'string' ? json.model : requestedModel(req, target), usage: reportedUsage(json) };
  },

  translateError(status, headers, body, maxRetryAfterMs): ErrorTranslation {
    const e = parseError(body);
    const failure = classifyStatus({ status, headers, ...e }, maxRetryAfterMs);
    // A client error is handed back as the provider sent it, when that is already OpenAI-shaped.
    const clientBody = e.type || e.code ? body : openaiErrorBody(e.message, 'invalid_request_error', null);
    return { failure, clientBody };
  },

  streamTranslator(): StreamTranslator {
    return new OpenAIStream();
  },
};
