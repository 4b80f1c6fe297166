/**
 * The commit gate: the one way an attempt reaches its client. Until the answer proved itself it
 * sends nothing: a stream's events before its first content are held. Then it commits the status
 * and headers (the content type and the `x-llm-failover-*` headers naming who served), and from
 * then on it frames every failure, a thrown bug included, as an OpenAI error event that ends the
 * stream without `[DONE]`, never a cut that looks like success. In undici's handler terms it is
 * the downstream handler the attempt (status) and the relay (body) decorate.
 */
import type { ModelTarget } from '../config/plan.ts';
import { streamErrorEvent } from '../core/errors.ts';
import type { Failure } from '../core/failure.ts';
import type { Sink } from '../core/sink.ts';
import type { ChatRequest } from '../translate/provider.ts';
import type { AttemptOutcome } from './outcome.ts';

const JSON_TYPE = 'application/json';
const SSE_TYPE = 'text/event-stream; charset=utf-8';

export class CommitGate {
  readonly #sink: Sink;
  readonly #target: ModelTarget;
  readonly #req: ChatRequest;
  readonly #attempt: number;
  /** A stream's events before its first content: they go out at the commit, or never. */
  readonly #held: string[] = [];

  /** `attempt`: which attempt of its request this is (the `x-llm-failover-attempts` header). */
  constructor(sink: Sink, target: ModelTarget, req: ChatRequest, attempt: number) {
    this.#sink = sink;
    this.#target = target;
    this.#req = req;
    this.#attempt = attempt;
  }

  get committed(): boolean {
    return this.#sink.committed;
  }

  /** A whole answer (a proven answer, or the model's own 4xx handed back): status, headers and body in one write. */
  reply(status: number, body: string | Buffer): void {
    this.#sink.reply(status, this.#headers(JSON_TYPE), body);
  }

  /** Before the first content: an event the client gets only if the stream commits. */
  hold(out: string | undefined): void {
    if (out) this.#held.push(out);
  }

  /** The stream's first content: status and headers go out now. Returns the held events, the start of the first write. */
  commit(): string {
    const headers = this.#headers(SSE_TYPE);
    headers['cache-control'] = 'no-cache';
    this.#sink.commit(200, headers);
    const held = this.#held.length === 1 ? this.#held[0] : this.#held.join('');
    this.#held.length = 0;
    return held;
  }

  /** After the commit: false when the client is slow to take it (then `waitDrain`). */
  write(chunk: string): boolean {
    return this.#sink.write(chunk);
  }

  waitDrain(signal: AbortSignal): Promise<void> {
    return this.#sink.waitDrain(signal);
  }

  /** The stream's last write (its final events, `[DONE]` included). */
  end(chunk: string): void {
    this.#sink.end(chunk);
  }

  /**
   * The model failed (its message already scrubbed). Before the commit nothing was sent: `failed`,
   * the request may move on. After it, an error event ends the stream: `cut`.
   */
  fail(failure: Failure): AttemptOutcome {
    if (!this.#sink.committed) return { kind: 'failed', failure };
    this.#sink.end(streamErrorEvent(`the stream from the model broke after it started: ${failure.message}`, 'stream_interrupted'));
    return { kind: 'cut', failure };
  }

  /** Something of ours threw: after the commit the stream ends with an error event, never silently. */
  crashed(): void {
    if (this.#sink.committed) this.#sink.end(streamErrorEvent('the sidecar failed while streaming this answer', 'stream_interrupted'));
  }

  #headers(contentType: string): Record<string, string> {
    const target = this.#target;
    return {
      'content-type': contentType,
      'x-llm-failover-provider': headerValue(target.name),
      'x-llm-failover-model': headerValue(target.model ?? String(this.#req.json.model ?? '')),
      'x-llm-failover-group': String(target.group + 1),
      'x-llm-failover-attempts': String(this.#attempt),
    };
  }
}

/**
 * A header value as HTTP carries it: visible ASCII as it is; anything else (a model named
 * `qwen-通义千问`, a client's model with CR/LF) percent-encoded, so the answer never breaks on
 * its own headers. The body carries the name as it is.
 */
export function headerValue(text: string): string {
  return /^[\x20-\x7e]*$/.test(text) ? text : encodeURIComponent(text);
}
