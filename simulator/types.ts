/** Public types of the simulated providers. */
import type { Fault } from './faults.ts';

/** A parsed JSON request body: free-form, as the providers accept it. */
// biome-ignore lint/suspicious/noExplicitAny: request bodies are arbitrary JSON read by tests
export type JsonBody = any;

export interface RecordedRequest {
  method: string;
  /** The request target as received (path plus query string, if any). */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON body, or undefined when it was empty or not JSON. */
  body: JsonBody;
  /** The body exactly as received (UTF-8), to check bytes a parse would hide (number spellings, key order). */
  raw: string;
  /** Date.now() when the request arrived. */
  at: number;
}

export interface Reply {
  content?: string;
  /**
   * Reasoning streamed before the answer: Anthropic a thinking block (thinking_delta events),
   * OpenAI-compatible servers `reasoning_content` deltas (as DeepSeek and vLLM send them).
   */
  thinking?: string;
  toolCalls?: { id?: string; name: string; arguments: string }[];
  /** In the provider's own terms: OpenAI finish_reason, Anthropic stop_reason. */
  finishReason?: string;
  /** Anthropic only: the stop_sequence reported with stop_reason 'stop_sequence'. */
  stopSequence?: string;
  usage?: { promptTokens: number; completionTokens: number; cacheReadTokens?: number; cacheCreationTokens?: number };
}

export interface SimulatorOptions {
  /** Model name reported in responses. */
  model: string;
  /** 0/undefined = ephemeral. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default: content `Hello from ${model}`, split into several stream chunks. */
  reply?: (body: JsonBody) => Reply;
  /** Delay between stream chunks, default 0. */
  chunkDelayMs?: number;
  /** When set, requests without this key get the provider's real 401. */
  apiKey?: string;
  /**
   * Compress every answer (JSON, SSE streams flushed event by event, error bodies, /v1/models)
   * with this content coding: when the request's accept-encoding admits it (no header admits
   * anything, RFC 9110), or with `always`, whatever the request asked (as some servers and
   * proxies do).
   */
  compress?: { encoding: 'gzip' | 'br' | 'deflate'; always?: boolean };
  /**
   * OpenAI dialect: how its JSON is written. 'compact' (OpenAI's own) or 'spaced' (`", "` and
   * `": "`, as Python servers built on json.dumps write it: vLLM, LiteLLM, many proxies).
   */
  jsonStyle?: 'compact' | 'spaced';
  /** OpenAI dialect: key order of every object, OpenAI's own or reversed (`id` last, `usage` first). */
  keyOrder?: 'openai' | 'reversed';
}

export interface SimulatedProvider {
  readonly kind: 'openai' | 'anthropic';
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  readonly model: string;
  /** Every request received on the chat/messages path, in order of arrival. */
  readonly requests: RecordedRequest[];
  /** `times`: the fault applies to the next N chat requests, then reverts to none; omitted = until changed. */
  setFault(fault: Fault, opts?: { times?: number }): void;
  clearFault(): void;
  /** Requests currently open on the chat path. */
  inFlight(): number;
  /** TCP connections accepted so far: shows whether a client reuses its connections. */
  readonly connectionsAccepted: number;
  /** Clear the recorded requests. */
  reset(): void;
  /** Resolves once the port is listening (or not) as the current fault says, e.g. after clearFault() ends a 'refuse'. */
  ready(): Promise<void>;
  /** Stop listening and destroy every socket. */
  close(): Promise<void>;
}
