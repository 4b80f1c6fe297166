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
  #afterCr = false;
  #event = '';
  readonly #data: string[] = [];
  /** Bytes of the event being assembled, to bound a malformed stream that never ends an event. */
  #pending = 0;
  readonly #maxEventBytes: number;

  constructor(maxEventBytes = 4 * 1024 * 1024) {
    this.#maxEventBytes = maxEventBytes;
  }

  push(chunk: Uint8Array): SseEvent[] {
    let buf = this.#buffer + this.#decoder.decode(chunk, { stream: true });
    // the "\n" of a "\r\n" split across chunks: its "\r" already ended the line
    if (this.#afterCr && buf.length > 0) {
      if (buf.charCodeAt(0) === 10) buf = buf.slice(1);
      this.#afterCr = false;
    }
    const events: SseEvent[] = [];
    let start = 0;
    if (buf.indexOf('\r') === -1) {
      // "\n" line ends only (what providers send): jump from one to the next
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n', start)) {
        if (nl === start) this.#dispatch(events);
        else if (buf.startsWith('data: ', start)) this.#data.push(buf.slice(start + 6, nl));
        else this.#line(buf.slice(start, nl), events);
        start = nl + 1;
      }
    } else {
      for (let i = 0; i < buf.length; i++) {
        const c = buf.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        this.#line(buf.slice(start, i), events);
        if (c === 13) {
          if (i + 1 === buf.length) this.#afterCr = true;
          else if (buf.charCodeAt(i + 1) === 10) i++;
        }
        start = i + 1;
      }
    }
    this.#buffer = start === 0 ? buf : buf.slice(start);
    this.#pending = events.length > 0 ? this.#buffer.length : this.#pending + chunk.byteLength;
    if (this.#pending > this.#maxEventBytes) throw new SseTooLargeError(this.#maxEventBytes);
    return events;
  }

  /** A blank line: the event assembled so far is complete. */
  #dispatch(events: SseEvent[]): void {
    const data = this.#data;
    if (data.length > 0) events.push({ event: this.#event || 'message', data: data.length === 1 ? data[0] : data.join('\n') });
    this.#event = '';
    data.length = 0;
  }

  #line(line: string, events: SseEvent[]): void {
    if (line === '') {
      this.#dispatch(events);
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

/** One SSE event of `data`, each of its lines framed (data may span lines). */
export function sseData(data: string): string {
  return data.includes('\n') ? `data: ${data.split('\n').join('\ndata: ')}\n\n` : `data: ${data}\n\n`;
}
