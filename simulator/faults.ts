/**
 * Faults a simulated provider can be switched into, and the schedule that
 * decides which fault the next request gets.
 */

export type Fault =
  | { kind: 'none' }
  /** The port stops listening (ECONNREFUSED); clearing the fault re-listens on the same port. */
  | { kind: 'refuse' }
  /** Accept the request, then reset the connection before any header is sent. */
  | { kind: 'reset' }
  /** 200 headers and part of the body (non-stream: half the JSON; stream: up to the first content chunk), then the socket is destroyed. */
  | { kind: 'resetMidBody' }
  /**
   * That status with the provider's real error body and headers; `errorType`/`message` override
   * the defaults for the status. A 429 carries the provider's whole set of rate-limit headers
   * (OpenAI: x-ratelimit-limit/remaining/reset-requests and -tokens; Anthropic: retry-after and
   * every anthropic-ratelimit-*); `headers` are sent over them (a null value leaves one out).
   * OpenAI's 429 `errorType`: 'requests' (the default, an RPM limit), 'tokens' (a TPM limit) or
   * 'insufficient_quota' (no credit left: its own message, no rate-limit headers).
   */
  | { kind: 'status'; status: number; headers?: Record<string, string | null>; errorType?: string; message?: string }
  /** Read the request, never answer. */
  | { kind: 'hang' }
  /** Wait `delayMs` before the response headers and first content. */
  | { kind: 'slowFirstToken'; delayMs: number }
  /** Stream: preamble + `afterChunks` content chunks, then silence. Non-stream: headers + half the body, then silence. */
  | { kind: 'stallMidStream'; afterChunks: number }
  /** Stream: preamble, then an in-stream error event, then the end. Non-stream: like a 500 (OpenAI) / 529 (Anthropic) status fault. */
  | { kind: 'errorEventBeforeFirstToken'; errorType?: string }
  /** Stream: some content chunks, then an in-stream error event, then the end. Non-stream: like errorEventBeforeFirstToken. */
  | { kind: 'errorEventAfterFirstToken'; errorType?: string }
  /** 200 with a body that is not JSON (stream: an event whose data is not JSON). */
  | { kind: 'invalidJson' }
  /** 200 with the JSON cut in half, ended cleanly (stream: half the content, then a clean end without the terminator). */
  | { kind: 'truncatedJson' }
  /** 200 with an empty body. */
  | { kind: 'emptyBody' }
  /** Stream: every event, the final one included, then the body ends `delayMs` later (its end arrives apart from its last event). */
  | { kind: 'slowEnd'; delayMs: number }
  /** 200 with a valid but enormous completion of about `bytes` bytes. */
  | { kind: 'huge'; bytes: number }
  /**
   * 200 with exactly this body, whatever the request (after auth and validation). A string is
   * sent whole; an array is written piece by piece (`chunkDelayMs` apart), e.g. hand-made SSE
   * events. Content type: the request's (SSE for a stream, JSON otherwise) unless given.
   */
  | { kind: 'raw'; body: string | string[]; contentType?: string }
  /**
   * Stream: preamble + `afterChunks` content chunks, then only keep-alives every `everyMs`, for as
   * long as the client listens: SSE comments (`as: 'comment'`, the default) or the provider's own
   * non-progress event (`as: 'event'`: OpenAI a chunk with an empty delta, Anthropic `ping`).
   * Non-stream: like stallMidStream.
   */
  | { kind: 'keepAliveStall'; afterChunks: number; everyMs: number; as?: 'comment' | 'event' }
  /**
   * Stream: half the content chunks, then an error object, then the stream's normal terminator
   * (OpenAI: a chunk-shaped `{"id":…,"object":"chat.completion.chunk","choices":[],"error":{…}}`
   * then `data: [DONE]`, as some OpenAI-compatible servers send it; Anthropic: an error event,
   * then message_stop). Non-stream: like errorEventAfterFirstToken.
   */
  | { kind: 'errorThenDone'; errorType?: string }
  /**
   * Stream: half the content chunks, then one chunk cut in half (its line ended early, as a
   * proxy that lost bytes sends it), then the rest of the stream, terminator included.
   * Non-stream: like truncatedJson.
   */
  | { kind: 'truncatedChunk' };

export type FaultKind = Fault['kind'];

const NONE: Fault = { kind: 'none' };

/** The current fault plus how many more chat requests it applies to. */
export class FaultSchedule {
  #fault: Fault = NONE;
  #remaining = Number.POSITIVE_INFINITY;

  /** `times` = number of chat requests the fault applies to; omitted = until changed. */
  set(fault: Fault, times?: number): void {
    if (times !== undefined && (!Number.isInteger(times) || times < 0)) {
      throw new RangeError(`times must be a non-negative integer, got ${times}`);
    }
    this.#fault = times === 0 ? NONE : fault;
    this.#remaining = times ?? Number.POSITIVE_INFINITY;
  }

  clear(): void {
    this.set(NONE);
  }

  /** The fault in force, without consuming it (used by /v1/models). */
  peek(): Fault {
    return this.#fault;
  }

  /** The fault for the next chat request; counts down `times`. */
  take(): Fault {
    const fault = this.#fault;
    if (fault.kind !== 'none' && Number.isFinite(this.#remaining)) {
      this.#remaining -= 1;
      if (this.#remaining <= 0) this.clear();
    }
    return fault;
  }
}
