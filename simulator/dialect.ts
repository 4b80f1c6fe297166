/**
 * What a provider's wire format has to supply to the shared server machinery
 * (server.ts): routing, auth and validation, error bodies, completions and
 * stream frames. openai.ts and anthropic.ts implement it.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { roughTokens } from './text.ts';
import type { JsonBody, Reply } from './types.ts';

/** An error to send, in provider-neutral terms; the dialect fills in the defaults for the status. */
export interface ErrorSpec {
  status: number;
  type?: string;
  message?: string;
  /** OpenAI only. */
  code?: string | null;
  /** OpenAI only. */
  param?: string | null;
  /** Over the dialect's own headers for the status; null leaves one out. */
  headers?: Record<string, string | null>;
}

export interface ErrorReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * One SSE event of a successful stream:
 * 'pre' precedes any content (OpenAI role chunk; Anthropic message_start + ping),
 * 'delta' carries content (text or tool-argument fragment) and is what faults count as a chunk,
 * 'block' is structure around content (tool call header, content_block_start/stop),
 * 'tail' finishes the stream (finish_reason, usage, [DONE]; message_delta, message_stop).
 */
export interface Frame {
  kind: 'pre' | 'delta' | 'block' | 'tail';
  text: string;
}

export type Route = 'chat' | 'models' | 'unknown';

export interface Dialect {
  readonly kind: 'openai' | 'anthropic';
  /** Header carrying the request id on every response. */
  readonly requestIdHeader: string;
  /** Status used when an in-stream error fault hits a non-stream request. */
  readonly streamErrorStatus: number;
  /** Data of an SSE event that is not JSON (for the invalidJson fault on streams). */
  readonly invalidJsonFrame: string;
  newRequestId(): string;
  route(method: string, pathname: string): Route;
  /** 401 spec when the credentials are missing or wrong. */
  authError(headers: IncomingHttpHeaders, apiKey: string | undefined): ErrorSpec | undefined;
  /** 400 spec when the chat request is not acceptable (headers or body). */
  validate(headers: IncomingHttpHeaders, body: JsonBody, rawBody: string): ErrorSpec | undefined;
  notFound(method: string, pathname: string): ErrorSpec;
  error(spec: ErrorSpec, requestId: string): ErrorReply;
  models(): string;
  /** Non-stream success body. */
  completion(body: JsonBody, reply: Reply): string;
  /** Every event of a successful stream, in order. */
  stream(body: JsonBody, reply: Reply): Frame[];
  /** The provider's in-stream error event. */
  streamError(errorType: string | undefined): string;
  /** An error object followed by the stream's normal terminator (the errorThenDone fault). */
  errorThenDone(errorType: string | undefined): string;
  /** An event that keeps the stream open without progress (OpenAI: an empty-delta chunk; Anthropic: ping). */
  keepAlive(): string;
}

export interface ResolvedUsage {
  promptTokens: number;
  completionTokens: number;
  cacheReadTokens: number;
  cacheCreationTokens: number;
}

/** The reply's usage, or a rough count from the request and the reply. */
export function resolveUsage(body: JsonBody, reply: Reply): ResolvedUsage {
  const u = reply.usage;
  if (u) {
    return {
      promptTokens: u.promptTokens,
      completionTokens: u.completionTokens,
      cacheReadTokens: u.cacheReadTokens ?? 0,
      cacheCreationTokens: u.cacheCreationTokens ?? 0,
    };
  }
  const prompt = JSON.stringify([body?.system ?? null, body?.messages ?? null]);
  const completion = (reply.content ?? '') + (reply.toolCalls ?? []).map((c) => c.name + c.arguments).join('');
  return {
    promptTokens: Math.max(1, roughTokens(prompt)),
    completionTokens: Math.max(1, roughTokens(completion)),
    cacheReadTokens: 0,
    cacheCreationTokens: 0,
  };
}

/** `text/event-stream` event: `data: <data>` with an optional `event:` line. */
export function sse(data: string, event?: string): string {
  return `${event ? `event: ${event}\n` : ''}data: ${data}\n\n`;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Header sets merged left to right; a null value removes that header. */
export function mergeHeaders(...sets: (Record<string, string | null> | undefined)[]): Record<string, string> {
  const out: Record<string, string | null> = {};
  for (const set of sets) for (const [k, v] of Object.entries(set ?? {})) out[k.toLowerCase()] = v;
  return Object.fromEntries(Object.entries(out).filter((e): e is [string, string] => e[1] !== null));
}
