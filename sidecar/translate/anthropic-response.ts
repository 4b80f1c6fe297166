/**
 * An Anthropic Messages answer as an OpenAI `chat.completion`, and the pieces the stream
 * translation shares with it: finish reasons, token counts, ids.
 */
import type { Failure } from '../core/failure.ts';
import type { Usage as SeamUsage } from './provider.ts';
import { isRecord } from './anthropic-request.ts';
import { type AssistantMessage, chatCompletion, type FinishReason, type TokenCounts, type ToolCall, usageOf } from './openai-output.ts';

/**
 * Anthropic's stop_reason as OpenAI's finish_reason. `pause_turn` (a server tool paused a long
 * turn) and `model_context_window_exceeded` mean the answer is incomplete: `length`.
 */
export function finishReasonOf(stopReason: unknown, legacyFunctions: boolean): FinishReason {
  switch (stopReason) {
    case 'max_tokens':
    case 'pause_turn':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return legacyFunctions ? 'function_call' : 'tool_calls';
    case 'refusal':
      return 'content_filter';
    default: // end_turn, stop_sequence, and whatever Anthropic adds later
      return 'stop';
  }
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}

/** Anthropic usage into provider-neutral counts; fields a later event leaves out keep the earlier value. */
export function tokenCounts(usage: unknown, previous?: TokenCounts): TokenCounts {
  const base = previous ?? { input: 0, cacheRead: 0, cacheCreation: 0, output: 0 };
  if (!isRecord(usage)) return base;
  return {
    input: usage.input_tokens === undefined || usage.input_tokens === null ? base.input : count(usage.input_tokens),
    cacheRead:
      usage.cache_read_input_tokens === undefined || usage.cache_read_input_tokens === null
        ? base.cacheRead
        : count(usage.cache_read_input_tokens),
    cacheCreation:
      usage.cache_creation_input_tokens === undefined || usage.cache_creation_input_tokens === null
        ? base.cacheCreation
        : count(usage.cache_creation_input_tokens),
    output: usage.output_tokens === undefined || usage.output_tokens === null ? base.output : count(usage.output_tokens),
  };
}

/** `msg_…` as `chatcmpl-…`: OpenAI-looking, and the Anthropic id is still readable in it. */
export function completionId(messageId: unknown): string {
  const id = typeof messageId === 'string' && messageId !== '' ? messageId : `msg_${Date.now().toString(36)}`;
  return `chatcmpl-${id.replace(/^msg_/, '')}`;
}

/** `toolu_…` as `call_…`. The client sends it back as tool_call_id, and it goes to Anthropic as is: both sides match. */
export function toolCallId(toolUseId: unknown): string {
  return `call_${String(toolUseId ?? '').replace(/^toolu_/, '')}`;
}

export function inStreamOrBodyError(error: unknown): Failure {
  const e = isRecord(error) ? error : {};
  const type = typeof e.type === 'string' ? e.type : 'error';
  const message = typeof e.message === 'string' ? e.message : 'no message';
  return { reason: type === 'overloaded_error' ? 'overloaded' : 'stream_error', message: `in-stream error ${type}: ${message}` };
}

/** The counts the request path records (metrics, spans): prompt tokens as OpenAI counts them. */
export function seamUsage(t: TokenCounts): SeamUsage {
  return { inputTokens: t.input + t.cacheRead + t.cacheCreation, outputTokens: t.output };
}

export type ResponseResult = { ok: true; body: string; model: string; usage?: SeamUsage } | { ok: false; failure: Failure };

function bad(message: string): ResponseResult {
  return { ok: false, failure: { reason: 'bad_response', message } };
}

export function translateMessage(raw: Buffer, fallbackModel: string | undefined, legacyFunctions: boolean): ResponseResult {
  if (raw.length === 0) return bad('empty response body');
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    return bad('response body is not valid JSON');
  }
  if (!isRecord(json)) return bad('response body is not a JSON object');
  if (json.type === 'error') {
    const failure = inStreamOrBodyError(json.error);
    return {
      ok: false,
      failure: {
        ...failure,
        reason: failure.reason === 'overloaded' ? 'overloaded' : 'upstream_5xx',
        message: `a 200 carrying an error: ${failure.message}`,
      },
    };
  }
  if (json.type !== 'message' || !Array.isArray(json.content)) return bad('response is not a message');

  let text: string | undefined;
  const toolCalls: ToolCall[] = [];
  for (const block of json.content) {
    if (!isRecord(block)) continue;
    if (block.type === 'text' && typeof block.text === 'string') text = (text ?? '') + block.text;
    else if (block.type === 'tool_use' && typeof block.name === 'string') {
      toolCalls.push({
        id: toolCallId(block.id),
        type: 'function',
        function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) },
      });
    }
    // thinking, redacted_thinking and server-tool blocks have no place in a chat completion
  }

  const message: AssistantMessage = { role: 'assistant', content: text ?? (toolCalls.length > 0 ? null : ''), refusal: null };
  if (legacyFunctions && toolCalls.length > 0) message.function_call = toolCalls[0].function;
  else if (toolCalls.length > 0) message.tool_calls = toolCalls;

  const model = typeof json.model === 'string' && json.model !== '' ? json.model : (fallbackModel ?? '');
  const tokens = isRecord(json.usage) ? tokenCounts(json.usage) : undefined;
  const body = chatCompletion(
    completionId(json.id),
    model,
    message,
    finishReasonOf(json.stop_reason, legacyFunctions),
    tokens && usageOf(tokens),
  );
  return { ok: true, body, model, ...(tokens ? { usage: seamUsage(tokens) } : {}) };
}
