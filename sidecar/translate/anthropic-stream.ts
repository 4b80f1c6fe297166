/**
 * Anthropic's named SSE events (message_start, content_block_start/delta/stop, message_delta,
 * message_stop, ping, error) as OpenAI `chat.completion.chunk` events, one upstream event at a
 * time: nothing is buffered beyond what attempt.ts holds until the commit point.
 *
 * The role chunk goes out on message_start but carries no content, so it is held until the first
 * text delta, tool call or finish; the finish chunk, the usage chunk (when asked) and `[DONE]`
 * go out together on message_stop, so a stream that breaks before its end never looks finished.
 */
import { excerpt } from '../core/secret.ts';
import type { Failure } from '../core/failure.ts';
import { isRecord } from './anthropic-request.ts';
import { completionId, finishReasonOf, inStreamOrBodyError, seamUsage, tokenCounts, toolCallId } from './anthropic-response.ts';
import { ChunkFramer, type FinishReason, type TokenCounts, usageOf } from './openai-output.ts';
import type { StreamStep, StreamTranslator } from './provider.ts';
import type { SseEvent } from './sse.ts';

interface ToolBlock {
  /** The OpenAI tool call index: counts tool_use blocks, not content blocks. */
  index: number;
  /** Input given whole in content_block_start (no deltas follow it). */
  startInput: unknown;
  sentArguments: boolean;
}

function bad(message: string): StreamStep {
  const error: Failure = { reason: 'bad_response', message };
  return { error };
}

export class AnthropicStream implements StreamTranslator {
  readonly #fallbackModel: string;
  readonly #includeUsage: boolean;
  readonly #legacyFunctions: boolean;
  #framer: ChunkFramer | undefined;
  readonly #tools = new Map<number, ToolBlock>();
  #toolCount = 0;
  #finish: FinishReason = 'stop';
  #tokens: TokenCounts | undefined;
  /** The client's credential (Passthrough auth), scrubbed from any upstream text quoted. */
  readonly #client: string | undefined;

  constructor(fallbackModel: string | undefined, includeUsage: boolean, legacyFunctions: boolean, client?: string) {
    this.#fallbackModel = fallbackModel ?? '';
    this.#client = client;
    this.#includeUsage = includeUsage;
    this.#legacyFunctions = legacyFunctions;
  }

  push(event: SseEvent): StreamStep {
    let json: unknown;
    try {
      json = JSON.parse(event.data);
    } catch {
      return bad(`malformed stream event: ${excerpt(event.data, 80, this.#client)}`);
    }
    if (!isRecord(json)) return bad('stream event is not a JSON object');
    const type = typeof json.type === 'string' ? json.type : event.event;
    if (type === 'error') return { error: inStreamOrBodyError(json.error) };
    if (type === 'ping') return {}; // not progress: a stalled model can ping forever
    if (type === 'message_start') return this.#start(json.message);
    const framer = this.#framer;
    if (!framer) return type.startsWith('message_') || type.startsWith('content_block_') ? bad(`${type} before message_start`) : {};
    switch (type) {
      case 'content_block_start':
        return this.#blockStart(framer, json.index, json.content_block);
      case 'content_block_delta':
        return this.#blockDelta(framer, json.index, json.delta);
      case 'content_block_stop':
        return this.#blockStop(framer, json.index);
      case 'message_delta':
        if (isRecord(json.delta) && json.delta.stop_reason != null)
          this.#finish = finishReasonOf(json.delta.stop_reason, this.#legacyFunctions);
        this.#tokens = tokenCounts(json.usage, this.#tokens);
        return {};
      case 'message_stop': {
        const tokens = this.#tokens ?? tokenCounts(undefined);
        return { out: framer.end(this.#finish, usageOf(tokens)), content: true, done: true, usage: seamUsage(tokens) };
      }
      default: // event types Anthropic adds later are ignored, as its docs ask
        return {};
    }
  }

  #start(message: unknown): StreamStep {
    if (!isRecord(message)) return bad('message_start without a message');
    if (this.#framer) return bad('a second message_start');
    const model = typeof message.model === 'string' && message.model !== '' ? message.model : this.#fallbackModel;
    this.#framer = new ChunkFramer(completionId(message.id), model, this.#includeUsage);
    this.#tokens = tokenCounts(message.usage);
    return { out: this.#framer.chunk({ role: 'assistant', content: '', refusal: null }), model };
  }

  #blockStart(framer: ChunkFramer, index: unknown, block: unknown): StreamStep {
    if (!isRecord(block) || typeof index !== 'number') return bad('content_block_start without a block');
    if (block.type === 'text') return this.#text(framer, block.text);
    if (block.type !== 'tool_use') return {}; // thinking, server tools: nothing the client sees
    const tool: ToolBlock = { index: this.#toolCount++, startInput: block.input, sentArguments: false };
    this.#tools.set(index, tool);
    const name = typeof block.name === 'string' ? block.name : '';
    if (this.#legacyFunctions) {
      // The legacy shape holds one call; Anthropic was asked for one at a time.
      if (tool.index > 0) return {};
      return { out: framer.chunk({ function_call: { name, arguments: '' } }), content: true };
    }
    return {
      out: framer.chunk({
        tool_calls: [{ index: tool.index, id: toolCallId(block.id), type: 'function', function: { name, arguments: '' } }],
      }),
      content: true,
    };
  }

  #text(framer: ChunkFramer, text: unknown): StreamStep {
    if (typeof text !== 'string' || text === '') return {};
    return { out: framer.text(text), content: true };
  }

  #arguments(framer: ChunkFramer, tool: ToolBlock, fragment: string): StreamStep {
    tool.sentArguments = true;
    if (this.#legacyFunctions)
      return tool.index > 0 ? {} : { out: framer.chunk({ function_call: { arguments: fragment } }), content: true };
    return { out: framer.chunk({ tool_calls: [{ index: tool.index, function: { arguments: fragment } }] }), content: true };
  }

  #blockDelta(framer: ChunkFramer, index: unknown, delta: unknown): StreamStep {
    if (!isRecord(delta)) return bad('content_block_delta without a delta');
    if (delta.type === 'text_delta') return this.#text(framer, delta.text);
    if (delta.type === 'input_json_delta') {
      const tool = typeof index === 'number' ? this.#tools.get(index) : undefined;
      if (!tool) return bad('input_json_delta outside a tool_use block');
      if (typeof delta.partial_json !== 'string' || delta.partial_json === '') return {};
      return this.#arguments(framer, tool, delta.partial_json);
    }
    // thinking_delta, signature_delta, citations_delta: nothing the client sees, but the model is
    // producing, so the stream is not idle
    return { progress: true };
  }

  #blockStop(framer: ChunkFramer, index: unknown): StreamStep {
    const tool = typeof index === 'number' ? this.#tools.get(index) : undefined;
    if (!tool || tool.sentArguments) return {};
    // No argument fragments came: the whole input (often {}) is the arguments, as in a non-streamed answer.
    return this.#arguments(framer, tool, JSON.stringify(tool.startInput ?? {}));
  }
}
