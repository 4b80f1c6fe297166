/**
 * The OpenAI chat-completions output every non-OpenAI adapter produces: the `chat.completion`
 * object and the framed `chat.completion.chunk` stream. Provider-neutral: Anthropic uses it
 * today, Gemini or Bedrock adapters build their answers with the same pieces, so the client
 * sees one shape whoever answered.
 */
import { sseData } from './sse.ts';

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'function_call';

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface OpenAIUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number; audio_tokens: number; cache_creation_tokens?: number };
  completion_tokens_details: {
    reasoning_tokens: number;
    audio_tokens: number;
    accepted_prediction_tokens: number;
    rejected_prediction_tokens: number;
  };
}

/** Token counts in provider-neutral terms; `input` excludes the cached parts. */
export interface TokenCounts {
  input: number;
  cacheRead: number;
  cacheCreation: number;
  output: number;
}

/**
 * OpenAI's usage object. `prompt_tokens` counts every prompt token the model read (fresh, read
 * from cache, written to cache), as OpenAI's does; `cached_tokens` the cache reads among them.
 */
export function usageOf(t: TokenCounts): OpenAIUsage {
  const prompt = t.input + t.cacheRead + t.cacheCreation;
  const details: OpenAIUsage['prompt_tokens_details'] = { cached_tokens: t.cacheRead, audio_tokens: 0 };
  if (t.cacheCreation > 0) details.cache_creation_tokens = t.cacheCreation;
  return {
    prompt_tokens: prompt,
    completion_tokens: t.output,
    total_tokens: prompt + t.output,
    prompt_tokens_details: details,
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export interface AssistantMessage {
  role: 'assistant';
  content: string | null;
  refusal: null;
  tool_calls?: ToolCall[];
  function_call?: { name: string; arguments: string };
}

/** A whole non-streamed answer. */
export function chatCompletion(
  id: string,
  model: string,
  message: AssistantMessage,
  finishReason: FinishReason,
  usage: OpenAIUsage | undefined,
): string {
  return JSON.stringify({
    id,
    object: 'chat.completion',
    created: nowSeconds(),
    model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason }],
    ...(usage ? { usage } : {}),
  });
}

export type Delta = {
  role?: 'assistant';
  content?: string;
  refusal?: null;
  tool_calls?: { index: number; id?: string; type?: 'function'; function: { name?: string; arguments: string } }[];
  function_call?: { name?: string; arguments: string };
};

/**
 * Frames the chunks of one streamed answer: every chunk carries the same id, created and model;
 * with `stream_options.include_usage` every chunk says `usage: null` and a last chunk with no
 * choices carries the usage, as OpenAI's streams do.
 */
export class ChunkFramer {
  readonly #head: string;
  readonly #includeUsage: boolean;

  constructor(id: string, model: string, includeUsage: boolean) {
    // The common prefix of every chunk, serialised once.
    this.#head = `{"id":${JSON.stringify(id)},"object":"chat.completion.chunk","created":${nowSeconds()},"model":${JSON.stringify(model)},`;
    this.#includeUsage = includeUsage;
  }

  chunk(delta: Delta, finishReason: FinishReason | null = null): string {
    const choice = { index: 0, delta, logprobs: null, finish_reason: finishReason };
    return sseData(`${this.#head}"choices":[${JSON.stringify(choice)}]${this.#includeUsage ? ',"usage":null' : ''}}`);
  }

  /** `chunk({ content: text })`, the most frequent chunk of all, templated: only the text is serialised. */
  text(text: string): string {
    // JSON.stringify escapes line breaks: the event stays on one data line
    return `data: ${this.#head}"choices":[{"index":0,"delta":{"content":${JSON.stringify(text)}},"logprobs":null,"finish_reason":null}]${this.#includeUsage ? ',"usage":null' : ''}}\n\n`;
  }

  /** The finish chunk, the usage chunk when the client asked for it, and `[DONE]`. */
  end(finishReason: FinishReason, usage: OpenAIUsage): string {
    let out = this.chunk({}, finishReason);
    if (this.#includeUsage) out += sseData(`${this.#head}"choices":[],"usage":${JSON.stringify(usage)}}`);
    return `${out}data: [DONE]\n\n`;
  }
}

/** Whether the client asked for the usage chunk (`stream_options.include_usage`). */
export function wantsUsage(json: Record<string, unknown>): boolean {
  const o = json.stream_options;
  return typeof o === 'object' && o !== null && (o as { include_usage?: unknown }).include_usage === true;
}
