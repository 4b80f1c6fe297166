/**
 * An incremental Server-Sent Events parser: bytes in, complete events out, whatever the
 * chunking (an event split across reads, "\n", "\r\n" or "\r" line ends, split UTF-8).
 */
export interface SseEvent {
  /** The `event:` field; "message" when absent. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
}

export class SseParser {
  readonly #decoder = new TextDecoder('utf-8');
  #buffer = '';
  #event = '';
  #data: string[] = [];
  /** Bytes of the event being assembled, to bound a malformed stream that never ends an event. */
  #pending = 0;
  readonly #maxEventBytes: number;

  constructor(maxEventBytes = 4 * 1024 * 1024) {
    this.#maxEventBytes = maxEventBytes;
  }

  push(chunk: Uint8Array): SseEvent[] {
    const buf = this.#buffer + this.#decoder.decode(chunk, { stream: true });
    const events: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      // A "\r" at the very end may be the first half of "\r\n": decide when more arrives.
      if (c === 13 && i === buf.length - 1) break;
      this.#line(buf.slice(start, i), events);
      if (c === 13 && buf.charCodeAt(i + 1) === 10) i++;
      start = i + 1;
    }
    this.#buffer = start === 0 ? buf : buf.slice(start);
    this.#pending = events.length > 0 ? this.#buffer.length : this.#pending + chunk.byteLength;
    if (this.#pending > this.#maxEventBytes) throw new SseTooLargeError(this.#maxEventBytes);
    return events;
  }

  #line(line: string, events: SseEvent[]): void {
    if (line === '') {
      if (this.#data.length > 0) events.push({ event: this.#event || 'message', data: this.#data.join('\n') });
      this.#event = '';
      this.#data = [];
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ":" comment
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'data') this.#data.push(value);
    else if (field === 'event') this.#event = value;
  }
}

export class SseTooLargeError extends Error {
  constructor(limit: number) {
    super(`an SSE event grew past ${limit} bytes without ending`);
    this.name = 'SseTooLargeError';
  }
}

export function sseData(data: string): string {
  return `data: ${data}\n\n`;
}
