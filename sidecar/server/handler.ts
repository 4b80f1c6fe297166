/**
 * The inbound request: route it, read and check the body, hand it to failover, and make sure
 * the client always gets an answer (a response, an error in the OpenAI shape, or an error event).
 */
import { randomUUID } from 'node:crypto';
import type { Router } from '../config/routes.ts';
import { type FailoverDeps, serveWithFailover } from '../failover/failover.ts';
import { ClientGone } from '../core/abort.ts';
import { type AnyRequest, BodyTooLarge, parseChatRequest, readBody } from './body.ts';
import { type ErrorReply, errorReply, openaiErrorBody, streamErrorEvent } from '../core/errors.ts';
import type { Admission } from './admission.ts';
import { type AnyResponse, ClientSink, type Interrupted, sendWhole } from '../core/sink.ts';

/**
 * The abort reason of a request cut by shutdown (drain grace ended). Not an AttemptAbort: the
 * attempt ends as if the client had gone (nothing charged to the model, no other model tried).
 */
export class ShuttingDown extends Error {
  constructor() {
    super('the sidecar is shutting down');
    this.name = 'ShuttingDown';
  }
}

/** A request the drain can still interrupt: its response, and the abort of its upstream work. */
interface LiveRequest {
  sink: ClientSink;
  gone: AbortController;
}

/** The configuration a request is served by, as the handler sees it (runtime/generation.ts builds it). */
export interface ServingGeneration {
  router: Router;
  deps: FailoverDeps;
  /** A request starts on this generation; call the returned function when it is done. */
  enter(): () => void;
}

export interface HandlerState {
  /** The configuration generation new requests are served by. */
  current(): ServingGeneration;
  admission: Admission;
  maxBodyBytes: number;
  draining: boolean;
  inFlight: number;
  /** Requests past the route checks whose response has not closed yet (shutdown walks them). */
  live: Set<LiveRequest>;
  /** Set when the drain grace ended: whatever arrives from now on is refused at once. */
  closing?: { graceMs: number };
  onError(err: unknown): void;
}

function interrupt(live: LiveRequest, graceMs: number): Interrupted {
  const message = `the sidecar is shutting down and its drain grace (${graceMs} ms) ended before this request finished; retry it`;
  const done = live.sink.interrupt(streamErrorEvent(message, 'sidecar_shutting_down'), {
    status: 503,
    // no connection header (HTTP/2 forbids it): over HTTP/1.1 the sink closes the connection after this
    headers: { 'content-type': 'application/json', 'retry-after': '1' },
    body: openaiErrorBody(message, 'service_unavailable', 'sidecar_shutting_down'),
  });
  live.gone.abort(new ShuttingDown());
  return done;
}

/**
 * Drain grace ended: every request still in flight is answered now. A committed stream ends with
 * a `sidecar_shutting_down` error event (no [DONE]); a request that sent nothing yet (queued,
 * reading its body, waiting upstream) gets a 503 with Retry-After. Then its upstream work is
 * aborted. Returns how many of each.
 */
export function interruptInFlight(state: HandlerState, graceMs: number): { cut: number; refused: number } {
  state.closing = { graceMs };
  const counts = { cut: 0, refused: 0 };
  for (const live of [...state.live]) {
    const done = interrupt(live, graceMs);
    if (done === 'cut') counts.cut++;
    else if (done === 'refused') counts.refused++;
  }
  state.live.clear();
  return counts;
}

export function sendError(res: AnyResponse, reply: ErrorReply, extraHeaders?: Record<string, string>): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  sendWhole(
    res,
    reply.status,
    { 'content-type': 'application/json', ...reply.headers, ...extraHeaders },
    openaiErrorBody(reply.message, reply.type, reply.code, reply.extra),
  );
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

async function handle(state: HandlerState, generation: ServingGeneration, req: AnyRequest, res: AnyResponse): Promise<void> {
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
  // As OpenAI's own API does: a body that is JSON is accepted whatever the content type says
  // (`curl -d` sends application/x-www-form-urlencoded); only a body that is not JSON under a
  // non-JSON type gets the 415 (parseChatRequest decides, once the body is read).
  const contentType = req.headers['content-type'];
  const otherType = contentType !== undefined && !/^application\/(.+\+)?json\b/i.test(contentType) ? contentType : undefined;

  const gone = new AbortController();
  const sink = new ClientSink(res);
  const live: LiveRequest = { sink, gone };
  state.live.add(live);
  // writableEnded, not writableFinished: node's HTTP/2 layer reports a cancelled stream as finished
  const onClose = () => {
    state.live.delete(live);
    if (!res.writableEnded) gone.abort(new ClientGone());
  };
  res.on('close', onClose);
  if (state.closing) {
    interrupt(live, state.closing.graceMs);
    return;
  }

  // Bounded: a slot before the body is read, so memory is bounded by slots x body limit.
  const admitted = await state.admission.acquire(gone.signal);
  if (!admitted.ok) {
    if (admitted.why !== 'aborted') {
      reject(
        errorReply(
          503,
          'sidecar_overloaded',
          `the sidecar is at its limit of concurrent requests (${admitted.why === 'queue_full' ? 'the queue is full' : 'no slot freed in time'}); retry shortly`,
          { 'retry-after': '1' },
        ),
      );
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
  if (gone.signal.aborted) return; // answered already (shutdown)
  const authorization = req.headers.authorization;
  const parsed = parseChatRequest(raw, typeof authorization === 'string' ? authorization : undefined, otherType);
  if ('status' in parsed) {
    reject(parsed);
    return;
  }
  // Our own id, always: a client's x-request-id need not be unique.
  const requestId = randomUUID();
  if (generation.deps.events.wants('request-start'))
    generation.deps.events.emit('request-start', {
      requestId,
      route: route.match.value,
      path,
      method: req.method ?? 'POST',
      stream: parsed.stream,
      headers: req.headers,
      at: Date.now(),
    });
  const reply = await serveWithFailover(generation.deps, {
    requestId,
    route: route.match.value,
    backend: route.backend,
    req: parsed,
    sink,
    signal: gone.signal,
  });
  if (reply && !gone.signal.aborted) sendError(res, reply);
}
