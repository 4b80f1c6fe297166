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

export class ClientSink implements Sink {
  readonly #res: AnyResponse;
  #committed = false;
  status = 0;

  constructor(res: AnyResponse) {
    this.#res = res;
  }

  get committed(): boolean {
    return this.#committed;
  }

  commit(status: number, headers: Record<string, string>): void {
    this.#committed = true;
    this.status = status;
    // writeHead's typing differs between the two response classes; both accept this call.
    (this.#res as ServerResponse).writeHead(status, headers);
  }

  reply(status: number, headers: Record<string, string>, body: string | Buffer): void {
    this.#committed = true;
    this.status = status;
    sendWhole(this.#res, status, headers, body);
  }

  write(chunk: string | Buffer): boolean {
    return (this.#res as ServerResponse).write(chunk);
  }

  /** Resolves when the client took what was written; rejects when the signal aborts (client gone). */
  async waitDrain(signal: AbortSignal): Promise<void> {
    await once(this.#res as ServerResponse, 'drain', { signal });
  }

  end(chunk?: string | Buffer): void {
    if (chunk === undefined) this.#res.end();
    else (this.#res as ServerResponse).end(chunk);
  }
}

/** Status, sized headers and body in one write (HTTP/1.1 and HTTP/2 alike). Takes ownership of `headers`. */
export function sendWhole(res: AnyResponse, status: number, headers: Record<string, string>, body: string | Buffer): void {
  headers['content-length'] = String(typeof body === 'string' ? Buffer.byteLength(body) : body.length);
  (res as ServerResponse).writeHead(status, headers);
  (res as ServerResponse).end(body);
}
