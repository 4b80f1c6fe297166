/**
 * OpenAI and every OpenAI-compatible server (vLLM, Ollama, LocalAI, a company proxy): the
 * request goes out as the client wrote it with `model` set, the answer comes back untouched
 * once it proved to be a real answer.
 */
import type { ModelTarget } from '../config/plan.ts';
import { excerpt } from '../core/secret.ts';
import { classifyStatus } from '../core/classify.ts';
import type { Failure } from '../core/failure.ts';
import { openaiErrorBody } from '../core/errors.ts';
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
 * spliced in before the final brace; when it sent one, the value of every top-level `model` key
 * is replaced in the raw bytes. Either way nothing else the client sent changes: no parse or
 * stringify of a large prompt, and numbers such as a 20-digit `seed` or `1.0` go out as written.
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
    const spliced = replaceTopLevel(req.raw, 'model', Buffer.from(JSON.stringify(model)));
    if (spliced !== undefined) body = spliced;
    else {
      // not reached for a body JSON.parse accepted; kept as a guard, with its old limit
      try {
        body = JSON.stringify({ ...req.json, model });
      } catch (err) {
        if (err instanceof RangeError)
          throw new RequestRejected(400, 'request_too_deep', 'the request body is nested too deeply to process');
        throw err;
      }
    }
  }
  req.bodies.set(model, body);
  return body;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipSpace(raw: Buffer, i: number): number {
  while (i < raw.length && isSpace(raw[i])) i++;
  return i;
}

/** Index just past the string whose opening quote is at `i`, or -1. */
function skipString(raw: Buffer, i: number): number {
  let j = i + 1;
  for (;;) {
    const q = raw.indexOf(QUOTE, j);
    if (q === -1) return -1;
    let slashes = 0;
    for (let k = q - 1; k > i && raw[k] === BACKSLASH; k--) slashes++;
    if (slashes % 2 === 0) return q + 1;
    j = q + 1;
  }
}

/** Index just past the JSON value starting at `i` (nested values walked without recursion), or -1. */
function skipValue(raw: Buffer, i: number): number {
  const c = raw[i];
  if (c === QUOTE) return skipString(raw, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    for (let j = i; j < raw.length; j++) {
      const d = raw[j];
      if (d === QUOTE) {
        j = skipString(raw, j) - 1;
        if (j < 0) return -1;
      } else if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        depth--;
        if (depth === 0) return j + 1;
      }
    }
    return -1;
  }
  // a number, true, false or null: up to the next delimiter
  let j = i;
  while (j < raw.length && raw[j] !== 0x2c && raw[j] !== 0x7d && raw[j] !== 0x5d && !isSpace(raw[j])) j++;
  return j > i ? j : -1;
}

/**
 * `raw` (a JSON object, as JSON.parse accepted it) with the value of every top-level `key`
 * replaced by `value`: spellings with escapes ("mod\u0065l") count, as JSON.parse reads them,
 * and duplicates are all replaced, so whichever one a provider's parser keeps is ours. Strings
 * and nested values are skipped, never parsed. Undefined when `raw` is not what was expected.
 */
export function replaceTopLevel(raw: Buffer, key: string, value: Buffer): Buffer | undefined {
  const plain = Buffer.from(JSON.stringify(key));
  const ranges: [number, number][] = [];
  let i = skipSpace(raw, 0);
  if (raw[i] !== 0x7b) return undefined;
  i = skipSpace(raw, i + 1);
  if (raw[i] === 0x7d) return undefined;
  for (;;) {
    if (raw[i] !== QUOTE) return undefined;
    const keyEnd = skipString(raw, i);
    if (keyEnd === -1) return undefined;
    let matches = keyEnd - i === plain.length && raw.compare(plain, 0, plain.length, i, keyEnd) === 0;
    if (!matches && raw.subarray(i, keyEnd).includes(BACKSLASH)) {
      try {
        matches = JSON.parse(raw.toString('utf8', i, keyEnd)) === key;
      } catch {
        return undefined;
      }
    }
    i = skipSpace(raw, keyEnd);
    if (raw[i] !== 0x3a) return undefined; // ":"
    const start = skipSpace(raw, i + 1);
    const end = skipValue(raw, start);
    if (end === -1) return undefined;
    if (matches) ranges.push([start, end]);
    i = skipSpace(raw, end);
    if (raw[i] === 0x2c) {
      i = skipSpace(raw, i + 1);
      continue;
    }
    if (raw[i] !== 0x7d) return undefined;
    break;
  }
  if (ranges.length === 0) return undefined;
  const parts: Buffer[] = [];
  let from = 0;
  for (const [start, end] of ranges) {
    parts.push(raw.subarray(from, start), value);
    from = end;
  }
  parts.push(raw.subarray(from));
  return Buffer.concat(parts);
}

function parseError(body: Buffer): { type?: string; code?: string; message: string } {
  try {
    const json = JSON.parse(body.toString('utf8')) as {
      error?: { message?: unknown; type?: unknown; code?: unknown } | string;
      message?: unknown;
    };
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
  return { message: excerpt(body.toString('utf8'), 300) || 'empty body' };
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

type Choice = { delta?: Record<string, unknown> | null; finish_reason?: unknown };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function nonEmpty(value: unknown): boolean {
  return typeof value === 'string' && value !== '';
}

/**
 * What a chunk's choices carry: `content` (the commit point: text, a tool call, a refusal,
 * reasoning, a finish reason) and `progress` (the model is producing: everything but the finish).
 */
function weigh(choices: Choice[]): { content: boolean; progress: boolean } {
  let content = false;
  let progress = false;
  for (const c of choices) {
    if (c.finish_reason) content = true;
    const d = c.delta;
    if (!isObject(d)) continue;
    if (
      nonEmpty(d.content) ||
      (Array.isArray(d.tool_calls) && d.tool_calls.length > 0) ||
      nonEmpty(d.refusal) ||
      nonEmpty(d.reasoning_content) ||
      d.function_call
    ) {
      content = true;
      progress = true;
    } else if (nonEmpty(d.reasoning)) progress = true; // vLLM / OpenRouter reasoning deltas
  }
  return { content, progress };
}

/** An in-stream error object, in the failure vocabulary; its text scrubbed, then cut. */
function streamError(error: unknown, client: string | undefined): Failure {
  const e = isObject(error) ? error : typeof error === 'string' ? { message: error } : {};
  const type = typeof e.type === 'string' ? ` ${excerpt(e.type, 60, client)}` : '';
  const message = typeof e.message === 'string' ? excerpt(e.message, 300, client) : 'no message';
  return { reason: 'stream_error', message: `in-stream error${type}: ${message}` };
}

/**
 * Every upstream event is parsed, before and after the commit point: an error object or a
 * malformed chunk after content is a cut, not a success, and usage is read however the JSON is
 * spaced. Chunks go out as they came; events without a `choices` array are not forwarded (an
 * app's `chunk.choices[0]` would throw on them), the usage chunk (`choices: []`) is.
 */
class OpenAIStream implements StreamTranslator {
  readonly #client: string | undefined;
  #committed = false;

  constructor(client: string | undefined) {
    this.#client = client;
  }

  push(event: SseEvent): StreamStep {
    const data = event.data;
    if (data === '[DONE]') {
      if (!this.#committed) return { error: bad('the stream ended with no content and no finish reason') };
      return { out: 'data: [DONE]\n\n', done: true, content: true };
    }
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      return { error: bad(`malformed stream event: ${excerpt(data, 80, this.#client)}`) };
    }
    if (!isObject(json)) return { error: bad('stream event is not a JSON object') };
    if (json.error || event.event === 'error') return { error: streamError(json.error, this.#client) };
    const usage = reportedUsage(json as Parameters<typeof reportedUsage>[0]);
    const choices = json.choices;
    if (!Array.isArray(choices)) return usage ? { usage } : {};
    if (!choices.every(isObject)) return { error: bad('stream chunk whose choices are not objects') };
    const weight = weigh(choices as Choice[]);
    const wasCommitted = this.#committed;
    if (weight.content) this.#committed = true;
    const step: StreamStep = { out: sseData(data), content: this.#committed, progress: weight.progress || weight.content };
    if (usage) step.usage = usage;
    if (!wasCommitted && typeof json.model === 'string') step.model = json.model;
    return step;
  }
}

export const openaiAdapter: ProviderAdapter = {
  buildRequest(req: ChatRequest, target: ModelTarget): UpstreamRequest {
    return {
      path: target.path,
      headers: {
        'content-type': 'application/json',
        accept: req.stream ? 'text/event-stream' : 'application/json',
        ...authHeaders(req, target),
      },
      body: bodyWithModel(req, target.model),
    };
  },

  translateResponse(body: Buffer, req: ChatRequest, target: ModelTarget): Translated {
    if (body.length === 0) return { ok: false, failure: bad('empty response body') };
    let json: {
      choices?: unknown;
      model?: unknown;
      error?: unknown;
      usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } | null;
    };
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      return { ok: false, failure: bad('response body is not valid JSON') };
    }
    if (json && typeof json === 'object' && json.error)
      return { ok: false, failure: { reason: 'upstream_5xx', message: 'a 200 carrying an error object' } };
    if (!json || typeof json !== 'object' || !Array.isArray(json.choices)) return { ok: false, failure: bad('response has no choices') };
    if (json.choices.length === 0) return { ok: false, failure: bad('response has an empty choices array') };
    if (!json.choices.every((c) => isObject(c) && isObject(c.message)))
      return { ok: false, failure: bad('response has a choice without a message object') };
    return { ok: true, body, model: typeof json.model === 'string' ? json.model : requestedModel(req, target), usage: reportedUsage(json) };
  },

  translateError(status, headers, body, maxRetryAfterMs): ErrorTranslation {
    const e = parseError(body);
    const failure = classifyStatus({ status, headers, ...e }, maxRetryAfterMs);
    // A client error is handed back as the provider sent it, when that is already OpenAI-shaped.
    const clientBody = e.type || e.code ? body : openaiErrorBody(e.message, 'invalid_request_error', null);
    return { failure, clientBody };
  },

  streamTranslator(req: ChatRequest): StreamTranslator {
    return new OpenAIStream(req.clientAuthorization);
  },
};
