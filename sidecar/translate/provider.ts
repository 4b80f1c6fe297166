/**
 * The translation seam: everything that differs between providers' wire formats, behind one
 * interface. The request path (send/, failover/) never looks inside a provider's JSON; a new
 * provider (Azure OpenAI, Gemini, Vertex AI, Bedrock) is one more adapter beside openai.ts and
 * anthropic.ts, registered in index.ts, and its facts and Backend block in config/providers/
 * (default origin, chat path, auth header, fixed headers, the model-list probe).
 */
import type { ModelTarget } from '../config/plan.ts';
import type { Failure } from '../core/failure.ts';
import type { SseEvent } from './sse.ts';

/** The client's request, read and parsed once, replayed to every attempt. */
export interface ChatRequest {
  /** The body exactly as received. */
  raw: Buffer;
  json: Record<string, unknown>;
  stream: boolean;
  /** The client sent a `model` of its own (replaced by the chosen provider's model). */
  hasModel: boolean;
  /** The client's Authorization header, for Passthrough auth. Never logged. */
  clientAuthorization?: string;
  /** Bodies already built per model name, so a fallback to a model seen before costs nothing. */
  bodies: Map<string, string | Buffer>;
}

export interface UpstreamRequest {
  path: string;
  headers: Record<string, string>;
  body: string | Buffer;
}

/** Token counts as the provider reported them, for metrics and spans. */
export interface Usage {
  inputTokens: number;
  outputTokens: number;
}

export type Translated = { ok: true; body: string | Buffer; model?: string; usage?: Usage } | { ok: false; failure: Failure };

/** What one upstream SSE event means for the client's stream. */
export interface StreamStep {
  /** OpenAI-format SSE text to send to the client (already framed). */
  out?: string;
  /** This event carried content: the commit point is reached (or passed). */
  content?: boolean;
  /**
   * The model made progress: content, tool-call arguments, or reasoning/thinking deltas.
   * Only progress holds off the `streamIdle` timer: keep-alive comments, pings and empty chunks
   * do not. When absent, `content` stands for it.
   */
  progress?: boolean;
  /** The stream ended properly; `out` holds the final events including `data: [DONE]`. */
  done?: boolean;
  /** The provider reported an error inside the stream. */
  error?: Failure;
  /** The model the provider says answered, once known. */
  model?: string;
  /** Token usage, when the stream carries it. */
  usage?: Usage;
}

export interface StreamTranslator {
  push(event: SseEvent): StreamStep;
}

export interface ErrorTranslation {
  failure: Failure;
  /** The error as the client sees it when it is handed back unchanged (OpenAI error shape). */
  clientBody: string | Buffer;
}

export interface ProviderAdapter {
  buildRequest(req: ChatRequest, target: ModelTarget): UpstreamRequest;
  /** A non-streamed 2xx body into an OpenAI `chat.completion`, or a failure if it is not a valid answer. */
  translateResponse(body: Buffer, req: ChatRequest, target: ModelTarget): Translated;
  /** An error status into a failure (retryable or not) and the client-facing body. */
  translateError(
    status: number,
    headers: Record<string, string | string[] | undefined>,
    body: Buffer,
    maxRetryAfterMs: number,
  ): ErrorTranslation;
  streamTranslator(req: ChatRequest, target: ModelTarget): StreamTranslator;
}

/**
 * Thrown by a translator when the request itself cannot be sent anywhere (the client's fault):
 * the client gets this status with an OpenAI error, and no other model is tried. Any other
 * error thrown by buildRequest means "this provider cannot express it": the request moves on.
 */
export class RequestRejected extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'RequestRejected';
    this.status = status;
    this.code = code;
  }
}

/** The model name to ask for: the provider's, else the client's. */
export function requestedModel(req: ChatRequest, target: ModelTarget): string | undefined {
  if (target.model) return target.model;
  const m = req.json.model;
  return typeof m === 'string' ? m : undefined;
}

export function authHeaders(req: ChatRequest, target: ModelTarget): Record<string, string> {
  const auth = target.auth;
  if (auth.kind === 'static') return { [auth.header]: auth.prefix + auth.token.reveal() };
  const client = req.clientAuthorization;
  if (!client) return {};
  const token = client.replace(/^bearer\s+/i, '');
  return { [auth.header]: auth.prefix + token };
}
