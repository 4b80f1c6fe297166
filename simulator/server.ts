/**
 * The machinery shared by both simulated providers: a loopback node:http
 * server that can stop and resume listening on the same port, records chat
 * requests, counts them in flight, and plays faults over the answer that the
 * provider's dialect builds.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { brotliCompressSync, createBrotliCompress, createDeflate, createGzip, deflateSync, gzipSync } from 'node:zlib';
import type { Dialect, ErrorSpec, Frame } from './dialect.ts';
import { isRecord } from './dialect.ts';
import { FaultSchedule } from './faults.ts';
import type { Fault } from './faults.ts';
import { fillerText } from './text.ts';
import type { JsonBody, RecordedRequest, Reply, SimulatedProvider, SimulatorOptions } from './types.ts';

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };
const JSON_TYPE = 'application/json';

export async function startSimulator(dialect: Dialect, opts: SimulatorOptions): Promise<SimulatedProvider> {
  const sim = new Simulator(dialect, opts);
  await sim.start();
  return sim;
}

/** Reads the whole request body; undefined if the client went away first. */
function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.once('error', () => resolve(undefined));
    req.once('close', () => resolve(req.complete ? Buffer.concat(chunks).toString('utf8') : undefined));
  });
}

function parseJson(text: string): JsonBody {
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Waits `ms`; false if the response closed meanwhile. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/** Writes and waits until the data is handed to the socket; false if the response closed meanwhile. */
function write(res: ServerResponse, data: string | Buffer, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted || res.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => resolve(false);
    signal.addEventListener('abort', onAbort, { once: true });
    res.write(data, (err) => {
      signal.removeEventListener('abort', onAbort);
      resolve(!err);
    });
  });
}

type Encoding = NonNullable<SimulatorOptions['compress']>['encoding'];

/** The content coding each answer to a request gets (SimulatorOptions.compress), by response. */
const ENCODING = new WeakMap<ServerResponse, Encoding>();

function compressed(encoding: Encoding, body: string | Buffer): Buffer {
  const buf = typeof body === 'string' ? Buffer.from(body) : body;
  return encoding === 'gzip' ? gzipSync(buf) : encoding === 'br' ? brotliCompressSync(buf) : deflateSync(buf);
}

/** The body as it goes on the wire (compressed when this response is), and its headers. */
function encoded(
  res: ServerResponse,
  body: string | Buffer,
  headers: Record<string, string>,
): { body: string | Buffer; headers: Record<string, string> } {
  const encoding = ENCODING.get(res);
  if (!encoding) return { body, headers };
  return { body: compressed(encoding, body), headers: { ...headers, 'content-encoding': encoding } };
}

function sendBody(res: ServerResponse, status: number, contentType: string, body: string | Buffer, headers?: Record<string, string>): void {
  const wire = encoded(res, body, { 'content-type': contentType, ...headers });
  res.writeHead(status, { ...wire.headers, 'content-length': String(Buffer.byteLength(wire.body)) });
  res.end(wire.body);
}

/** Whether an accept-encoding header admits `encoding` (no header admits any, RFC 9110 §12.5.3). */
function admits(header: string | undefined, encoding: Encoding): boolean {
  if (header === undefined) return true;
  return header.split(',').some((item) => {
    const [name, ...params] = item.trim().toLowerCase().split(';');
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return (name === encoding || name === '*') && (q === undefined || Number(q.slice(2)) > 0);
  });
}

/** Where a stream's events go: the response itself, or a compressor flushed after every write. */
interface StreamOut {
  write(data: string, signal: AbortSignal): Promise<boolean>;
  end(): void;
}

function streamOut(res: ServerResponse): StreamOut {
  const encoding = ENCODING.get(res);
  if (!encoding) return { write: (data, signal) => write(res, data, signal), end: () => res.end() };
  const z = encoding === 'gzip' ? createGzip() : encoding === 'br' ? createBrotliCompress() : createDeflate();
  z.pipe(res);
  res.once('close', () => z.destroy());
  return {
    write(data, signal) {
      if (signal.aborted || res.destroyed) return Promise.resolve(false);
      return new Promise((resolve) => {
        const onAbort = () => resolve(false);
        signal.addEventListener('abort', onAbort, { once: true });
        z.write(data);
        // flushed event by event, as a streaming server must, so each arrives when written
        z.flush(() => {
          signal.removeEventListener('abort', onAbort);
          resolve(!signal.aborted && !res.destroyed);
        });
      });
    },
    end: () => z.end(),
  };
}

/** Index just past the `n`th 'delta' frame; with fewer deltas, the index of the first 'tail' frame. */
function cutAfterDeltas(frames: Frame[], n: number): number {
  let seen = 0;
  for (let i = 0; i < frames.length; i++) {
    const kind = frames[i].kind;
    if (kind === 'tail' || (kind !== 'pre' && seen >= n)) return i;
    if (kind === 'delta') seen += 1;
  }
  return frames.length;
}

class Simulator implements SimulatedProvider {
  readonly kind: 'openai' | 'anthropic';
  readonly model: string;
  readonly requests: RecordedRequest[] = [];
  readonly #dialect: Dialect;
  readonly #opts: SimulatorOptions;
  readonly #host: string;
  readonly #schedule = new FaultSchedule();
  readonly #sockets = new Set<Socket>();
  #connectionsAccepted = 0;
  #port: number;
  #server: Server | undefined;
  #closed = false;
  #inFlight = 0;
  /** Serialises listen/unlisten work so that listening state follows the latest fault. */
  #sync: Promise<void> = Promise.resolve();

  constructor(dialect: Dialect, opts: SimulatorOptions) {
    this.#dialect = dialect;
    this.#opts = opts;
    this.kind = dialect.kind;
    this.model = opts.model;
    this.#host = opts.host ?? '127.0.0.1';
    this.#port = opts.port ?? 0;
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    const host = this.#host.includes(':') ? `[${this.#host}]` : this.#host;
    return `http://${host}:${this.#port}`;
  }

  async start(): Promise<void> {
    await this.#listen(false);
  }

  setFault(fault: Fault, opts?: { times?: number }): void {
    this.#schedule.set(fault, opts?.times);
    this.#reconcile();
  }

  clearFault(): void {
    this.#schedule.clear();
    this.#reconcile();
  }

  /** TCP connections accepted so far: shows whether a client reuses its connections. */
  get connectionsAccepted(): number {
    return this.#connectionsAccepted;
  }

  inFlight(): number {
    return this.#inFlight;
  }

  reset(): void {
    this.requests.length = 0;
  }

  ready(): Promise<void> {
    return this.#sync;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#sync;
    const server = this.#server;
    this.#server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  // ---- listening ------------------------------------------------------------

  #wantsListening(): boolean {
    return !this.#closed && this.#schedule.peek().kind !== 'refuse';
  }

  /** Brings the listening state in line with the fault: stops at once, re-listens asynchronously. */
  #reconcile(): void {
    if (!this.#wantsListening()) this.#unlisten();
    this.#sync = this.#sync.then(async () => {
      if (this.#wantsListening() && !this.#server) {
        await this.#listen(true).catch((err: unknown) => {
          process.emitWarning(`simulator could not re-listen on port ${this.#port}: ${String(err)}`);
        });
      }
      if (!this.#wantsListening()) this.#unlisten();
    });
  }

  /** Closes the port and drops every connection, as a crashed provider would. */
  #unlisten(): void {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    server.close();
    for (const socket of this.#sockets) socket.destroy();
  }

  async #listen(retry: boolean): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const server = createServer((req, res) => this.#handle(req, res));
      server.on('connection', (socket) => {
        this.#connectionsAccepted++;
        this.#sockets.add(socket);
        socket.once('close', () => this.#sockets.delete(socket));
      });
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(this.#port, this.#host, () => {
            server.off('error', reject);
            resolve();
          });
        });
        this.#server = server;
        this.#port = (server.address() as AddressInfo).port;
        return;
      } catch (err) {
        const inUse = (err as NodeJS.ErrnoException).code === 'EADDRINUSE';
        if (!retry || !inUse || attempt >= 40 || this.#closed) throw err;
        await sleep(25);
      }
    }
  }

  // ---- requests -------------------------------------------------------------

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? 'GET';
    const pathname = (req.url ?? '/').split('?')[0];
    const requestId = this.#dialect.newRequestId();
    res.setHeader(this.#dialect.requestIdHeader, requestId);
    const compress = this.#opts.compress;
    const accept = req.headers['accept-encoding'];
    if (compress && (compress.always || admits(Array.isArray(accept) ? accept.join(',') : accept, compress.encoding)))
      ENCODING.set(res, compress.encoding);
    const route = this.#dialect.route(method, pathname);
    const handler =
      route === 'chat'
        ? this.#chat(req, res, requestId)
        : route === 'models'
          ? this.#models(req, res, requestId)
          : this.#unknown(req, res, requestId, method, pathname);
    handler.catch(() => res.destroy());
  }

  #sendError(res: ServerResponse, requestId: string, spec: ErrorSpec): void {
    const { status, headers, body } = this.#dialect.error(spec, requestId);
    sendBody(res, status, JSON_TYPE, body, headers);
  }

  async #unknown(req: IncomingMessage, res: ServerResponse, requestId: string, method: string, pathname: string): Promise<void> {
    if ((await readBody(req)) === undefined) return;
    this.#sendError(res, requestId, this.#dialect.notFound(method, pathname));
  }

  async #models(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    const fault = this.#schedule.peek();
    if ((await readBody(req)) === undefined) return;
    if (fault.kind === 'reset') {
      req.socket.resetAndDestroy();
      return;
    }
    if (fault.kind === 'hang') return;
    if (fault.kind === 'status') return this.#sendError(res, requestId, statusSpec(fault));
    const authError = this.#dialect.authError(req.headers, this.#opts.apiKey);
    if (authError) return this.#sendError(res, requestId, authError);
    sendBody(res, 200, JSON_TYPE, this.#dialect.models());
  }

  async #chat(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    this.#inFlight += 1;
    const life = new AbortController();
    res.once('close', () => {
      this.#inFlight -= 1;
      life.abort();
    });
    const record: RecordedRequest = {
      method: req.method ?? 'POST',
      path: req.url ?? '/',
      headers: { ...req.headers },
      body: undefined,
      raw: '',
      at: Date.now(),
    };
    this.requests.push(record);
    const fault = this.#schedule.take();

    const raw = await readBody(req);
    if (raw === undefined) return;
    const body = parseJson(raw);
    record.body = body;
    record.raw = raw;
    const stream = isRecord(body) && body.stream === true;

    // Faults that replace the answer entirely come before auth and validation.
    switch (fault.kind) {
      case 'reset':
        req.socket.resetAndDestroy();
        return;
      case 'hang':
        return;
      case 'status':
        return this.#sendError(res, requestId, statusSpec(fault));
      case 'errorEventBeforeFirstToken':
      case 'errorEventAfterFirstToken':
      case 'errorThenDone':
        if (!stream) {
          return this.#sendError(res, requestId, { status: this.#dialect.streamErrorStatus, type: fault.errorType });
        }
        break;
    }

    const problem = this.#dialect.authError(req.headers, this.#opts.apiKey) ?? this.#dialect.validate(req.headers, body, raw);
    if (problem) return this.#sendError(res, requestId, problem);

    if (fault.kind === 'slowFirstToken' && !(await pause(fault.delayMs, life.signal))) return;
    if (fault.kind === 'raw') return this.#raw(res, fault, stream, life.signal);

    let reply: Reply;
    try {
      reply = fault.kind === 'huge' ? { content: fillerText(fault.bytes) } : this.#reply(body);
    } catch (err) {
      return this.#sendError(res, requestId, { status: 500, message: `simulator reply hook failed: ${String(err)}` });
    }

    if (stream) await this.#stream(res, fault, this.#dialect.stream(body, reply), life.signal);
    else this.#complete(req, res, fault, this.#dialect.completion(body, reply));
  }

  #reply(body: JsonBody): Reply {
    return this.#opts.reply ? this.#opts.reply(body) : { content: `Hello from ${this.model}` };
  }

  /** The 'raw' fault: exactly the body given, piece by piece when it is a list. */
  async #raw(res: ServerResponse, fault: Extract<Fault, { kind: 'raw' }>, stream: boolean, signal: AbortSignal): Promise<void> {
    const contentType = fault.contentType ?? (stream ? SSE_HEADERS['content-type'] : JSON_TYPE);
    if (typeof fault.body === 'string') return sendBody(res, 200, contentType, fault.body);
    res.writeHead(200, encoded(res, '', { ...SSE_HEADERS, 'content-type': contentType }).headers);
    res.flushHeaders();
    const out = streamOut(res);
    const delayMs = this.#opts.chunkDelayMs ?? 0;
    for (let i = 0; i < fault.body.length; i++) {
      if (i > 0 && delayMs > 0 && !(await pause(delayMs, signal))) return;
      if (!(await out.write(fault.body[i], signal))) return;
    }
    out.end();
  }

  /** Non-stream answer, shaped by the fault. */
  #complete(req: IncomingMessage, res: ServerResponse, fault: Fault, json: string): void {
    const full = Buffer.from(encoded(res, json, {}).body);
    const half = full.subarray(0, Math.floor(full.length / 2));
    switch (fault.kind) {
      case 'resetMidBody':
      case 'stallMidStream':
      case 'keepAliveStall':
        res.writeHead(200, { ...encoded(res, '', { 'content-type': JSON_TYPE }).headers, 'content-length': String(full.length) });
        res.write(half, () => {
          if (fault.kind === 'resetMidBody') req.socket.destroy();
        });
        return;
      case 'invalidJson':
        sendBody(res, 200, JSON_TYPE, '{not json: the simulator answered garbage');
        return;
      case 'truncatedJson':
      case 'truncatedChunk':
        sendBody(res, 200, JSON_TYPE, Buffer.from(json).subarray(0, Math.floor(Buffer.byteLength(json) / 2)));
        return;
      case 'emptyBody':
        sendBody(res, 200, JSON_TYPE, '');
        return;
      default:
        sendBody(res, 200, JSON_TYPE, json);
    }
  }

  /** SSE answer, shaped by the fault. */
  async #stream(res: ServerResponse, fault: Fault, frames: Frame[], signal: AbortSignal): Promise<void> {
    const deltas = frames.filter((f) => f.kind === 'delta').length;
    let upto = frames.length;
    let extra: string | undefined;
    let ending: 'end' | 'destroy' | 'stall' | 'keepAlive' = 'end';
    /** Frames after `extra`: the rest of the stream (truncatedChunk). */
    let rest: Frame[] = [];
    switch (fault.kind) {
      case 'emptyBody':
        upto = 0;
        break;
      case 'resetMidBody':
        upto = cutAfterDeltas(frames, 1);
        ending = 'destroy';
        break;
      case 'stallMidStream':
        upto = cutAfterDeltas(frames, fault.afterChunks);
        ending = 'stall';
        break;
      case 'errorEventBeforeFirstToken':
        upto = cutAfterDeltas(frames, 0);
        extra = this.#dialect.streamError(fault.errorType);
        break;
      case 'errorEventAfterFirstToken':
        upto = cutAfterDeltas(frames, Math.max(1, Math.ceil(deltas / 2)));
        extra = this.#dialect.streamError(fault.errorType);
        break;
      case 'invalidJson':
        upto = cutAfterDeltas(frames, 0);
        extra = this.#dialect.invalidJsonFrame;
        break;
      case 'truncatedJson':
        upto = cutAfterDeltas(frames, Math.ceil(deltas / 2));
        break;
      case 'keepAliveStall':
        upto = cutAfterDeltas(frames, fault.afterChunks);
        ending = 'keepAlive';
        break;
      case 'errorThenDone':
        upto = cutAfterDeltas(frames, Math.max(1, Math.ceil(deltas / 2)));
        extra = this.#dialect.errorThenDone(fault.errorType);
        break;
      case 'truncatedChunk': {
        // the chunk after half the deltas, cut in the middle of its JSON, its event ended early
        upto = cutAfterDeltas(frames, Math.max(1, Math.ceil(deltas / 2)));
        const cut = frames[upto];
        if (cut) {
          extra = `${cut.text.slice(0, Math.floor(cut.text.trimEnd().length / 2))}\n\n`;
          rest = frames.slice(upto + 1);
        }
        break;
      }
    }
    const out = frames.slice(0, upto).map((f) => f.text);
    if (extra !== undefined) out.push(extra);
    for (const f of rest) out.push(f.text);

    res.writeHead(200, encoded(res, '', SSE_HEADERS).headers);
    res.flushHeaders();
    const stream = streamOut(res);
    const delayMs = this.#opts.chunkDelayMs ?? 0;
    for (let i = 0; i < out.length; i++) {
      if (i > 0 && delayMs > 0 && !(await pause(delayMs, signal))) return;
      if (!(await stream.write(out[i], signal))) return;
    }
    if (fault.kind === 'keepAliveStall') {
      const ping = fault.as === 'event' ? this.#dialect.keepAlive() : ': keep-alive\n\n';
      while (await pause(fault.everyMs, signal)) if (!(await stream.write(ping, signal))) return;
      return;
    }
    if (fault.kind === 'slowEnd' && !(await pause(fault.delayMs, signal))) return;
    if (ending === 'end') stream.end();
    else if (ending === 'destroy') res.socket?.destroy();
  }
}

function statusSpec(fault: Extract<Fault, { kind: 'status' }>): ErrorSpec {
  return { status: fault.status, type: fault.errorType, message: fault.message, headers: fault.headers };
}
