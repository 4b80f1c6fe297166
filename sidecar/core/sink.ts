/**
 * The client's side of a response, as the request path sees it: nothing is sent until an
 * attempt commits; after that, writes respect the client's pace (backpressure).
 * Works the same over HTTP/1.1 and HTTP/2 (node's compatibility API).
 */
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';

export type AnyResponse = ServerResponse | Http2ServerResponse;

/** Where an attempt writes once it commits: the client, or nowhere (a probe). */
export interface Sink {
  readonly committed: boolean;
  status: number;
  /** Starts a stream: status and headers now, the body in writes to come. */
  commit(status: number, headers: Record<string, string>): void;
  /**
   * A whole answer at once: status, headers (content-length added: no chunked framing) and
   * body in one write. Takes ownership of `headers`.
   */
  reply(status: number, headers: Record<string, string>, body: string | Buffer): void;
  write(chunk: string | Buffer): boolean;
  waitDrain(signal: AbortSignal): Promise<void>;
  end(chunk?: string | Buffer): void;
}

/** A sink that takes everything and keeps nothing: probes run real attempts into it. */
export class DiscardSink implements Sink {
  committed = false;
  status = 0;
  commit(status: number): void {
    this.committed = true;
    this.status = status;
  }
  reply(status: number): void {
    this.commit(status);
  }
  write(): boolean {
    return true;
  }
  async waitDrain(): Promise<void> {}
  end(): void {}
}

/** What `ClientSink.interrupt` did: ended a committed stream, answered instead, or nothing (already answered). */
export type Interrupted = 'cut' | 'refused' | 'none';

export class ClientSink implements Sink {
  readonly #res: AnyResponse;
  #committed = false;
  /** Interrupted (shutdown): every later commit, write and end is a no-op. */
  #closed = false;
  status = 0;

  constructor(res: AnyResponse) {
    this.#res = res;
  }

  get committed(): boolean {
    return this.#committed;
  }

  commit(status: number, headers: Record<string, string>): void {
    if (this.#closed) return;
    this.#committed = true;
    this.status = status;
    // writeHead's typing differs between the two response classes; both accept this call.
    (this.#res as ServerResponse).writeHead(status, headers);
  }

  reply(status: number, headers: Record<string, string>, body: string | Buffer): void {
    if (this.#closed) return;
    this.#committed = true;
    this.status = status;
    sendWhole(this.#res, status, headers, body);
  }

  write(chunk: string | Buffer): boolean {
    if (this.#closed) return true;
    return (this.#res as ServerResponse).write(chunk);
  }

  /** Resolves when the client took what was written; rejects when the signal aborts (client gone). */
  async waitDrain(signal: AbortSignal): Promise<void> {
    await once(this.#res as ServerResponse, 'drain', { signal });
  }

  end(chunk?: string | Buffer): void {
    if (this.#closed) return;
    if (chunk === undefined) this.#res.end();
    else (this.#res as ServerResponse).end(chunk);
  }

  /**
   * Ends the response now, whatever the attempt is doing: a committed stream gets `streamEvent`
   * as its last event (no [DONE]); a response that sent nothing yet gets `reply` (status,
   * headers, body). From then on every commit, write and end is a no-op, so the attempt's
   * pending writes cannot throw or splice anything after it.
   */
  interrupt(streamEvent: string, reply: { status: number; headers: Record<string, string>; body: string }): Interrupted {
    if (this.#closed || this.#res.writableEnded || this.#res.destroyed) return 'none';
    this.#closed = true;
    if ('shouldKeepAlive' in this.#res) this.#res.shouldKeepAlive = false;
    if (this.#res.headersSent) {
      (this.#res as ServerResponse).end(streamEvent);
      return 'cut';
    }
    this.#committed = true;
    this.status = reply.status;
    sendWhole(this.#res, reply.status, reply.headers, reply.body);
    return 'refused';
  }
}

/** Status, sized headers and body in one write (HTTP/1.1 and HTTP/2 alike). Takes ownership of `headers`. */
export function sendWhole(res: AnyResponse, status: number, headers: Record<string, string>, body: string | Buffer): void {
  headers['content-length'] = String(typeof body === 'string' ? Buffer.byteLength(body) : body.length);
  (res as ServerResponse).writeHead(status, headers);
  (res as ServerResponse).end(body);
}
