/**
 * The inbound request: route it, read and check the body, hand it to failover, and make sure
 * the client always gets an answer (a response, an error in the OpenAI shape, or an error event).
 */
import { randomUUID } from 'node:crypto';
import type { Generation } from '../generation.ts';
import { serveWithFailover } from '../retry/failover.ts';
import { ClientGone } from '../send/abort.ts';
import { type AnyRequest, BodyTooLarge, parseChatRequest, readBody } from './body.ts';
import { type ErrorReply, errorReply, openaiErrorBody } from './errors.ts';
import type { Admission } from './admission.ts';
import { type AnyResponse, ClientSink, sendWhole } from './sink.ts';

export interface HandlerState {
  /** The configuration generation new requests are served by. */
  current(): Generation;
  admission: Admission;
  maxBodyBytes: number;
  draining: boolean;
  inFlight: number;
  onError(err: unknown): void;
}

export function sendError(res: AnyResponse, reply: ErrorReply, extraHeaders?: Record<string, string>): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  sendWhole(res, reply.status, { 'content-type': 'application/json', ...reply.headers, ...extraHeaders }, openaiErrorBody(reply.message, reply.type, reply.code, reply.extra));
}

export function createHandler(state: HandlerState) {
  return (req: AnyRequest, res: AnyResponse): void => {
    state.inFlight++;
    // the request is served by the configuration current when it arrived, to the end
    const generation = state.current();
    const leave = generation.enter();
    // on, not once: 'close' comes once per response, and once() wraps every listener (allocations per request)
    res.on('close', () => {
      state.inFlight--;
      leave();
    });
    handle(state, generation, req, res).catch((err: unknown) => {
      state.onError(err);
      if (!res.headersSent) sendError(res, errorReply(500, 'internal_error', 'the sidecar failed to handle the request'));
      else res.destroy();
    });
  };
}

async function handle(state: HandlerState, generation: Generation, req: AnyRequest, res: AnyResponse): Promise<void> {
  /** An answer before any model was asked: counted, so load shedding and bad clients are visible. */
  const reject = (reply: ErrorReply, headers?: Record<string, string>) => {
    generation.deps.events.emit('rejected', { status: reply.status, code: reply.code ?? 'error', at: Date.now() });
    sendError(res, reply, headers);
  };
  if (state.draining && 'shouldKeepAlive' in res) res.shouldKeepAlive = false;
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const route = generation.router.match(path);
  if (!route) {
    reject(errorReply(404, 'not_found', `no route for ${req.method} ${path}: POST to /v1/chat/completions or a path of the HTTPRoute`));
    return;
  }
  if (req.method !== 'POST') {
    reject(errorReply(405, 'method_not_allowed', `${req.method} is not allowed on ${path}: use POST`), { allow: 'POST' });
    return;
  }
  const contentType = req.headers['content-type'];
  if (contentType !== undefined && !/^application\/(.+\+)?json\b/i.test(contentType)) {
    reject(errorReply(415, 'unsupported_media_type', `content-type must be application/json, got ${contentType.slice(0, 100)}`));
    return;
  }

  const gone = new AbortController();
  // writableEnded, not writableFinished: node's HTTP/2 layer reports a cancelled stream as finished
  const onClose = () => {
    if (!res.writableEnded) gone.abort(new ClientGone());
  };
  res.on('close', onClose);

  // Bounded: a slot before the body is read, so memory is bounded by slots x body limit.
  const admitted = await state.admission.acquire(gone.signal);
  if (!admitted.ok) {
    if (admitted.why !== 'aborted') {
      reject(errorReply(503, 'sidecar_overloaded', `the sidecar is at its limit of concurrent requests (${admitted.why === 'queue_full' ? 'the queue is full' : 'no slot freed in time'}); retry shortly`, { 'retry-after': '1' }));
    }
    return;
  }
  res.on('close', admitted.release);

  let raw: Buffer;
  try {
    raw = await readBody(req, state.maxBodyBytes);
  } catch (err) {
    if (err instanceof BodyTooLarge) {
      if ('shouldKeepAlive' in res) res.shouldKeepAlive = false;
      reject(errorReply(413, 'request_too_large', `the request body is larger than the limit of ${state.maxBodyBytes} bytes`));
      return;
    }
    return; // the client went away while sending
  }
  const authorization = req.headers.authorization;
  const parsed = parseChatRequest(raw, typeof authorization === 'string' ? authorization : undefined);
  if ('status' in parsed) {
    reject(parsed);
    return;
  }
  // Our own id, always: a client's x-request-id need not be unique.
  const requestId = randomUUID();
  if (generation.deps.events.wants('request-start')) generation.deps.events.emit('request-start', { requestId, route: route.match.value, path, method: req.method ?? 'POST', stream: parsed.stream, headers: req.headers, at: Date.now() });
  const sink = new ClientSink(res);
  const reply = await serveWithFailover(generation.deps, { requestId, route: route.match.value, backend: route.backend, req: parsed, sink, signal: gone.signal });
  if (reply && !gone.signal.aborted) sendError(res, reply);
}
