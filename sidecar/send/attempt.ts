/**
 * One attempt: send the request to one model and either commit an answer to the client or
 * report a failure having sent nothing, so the request can move on.
 *
 * The commit point: non-streamed, the whole answer arrived and proved valid; streamed, the
 * first event that carries content. Before it every failure (an error status, a timeout,
 * a reset, an in-stream error event, a malformed event, a stall) is reported back; after it
 * the client gets an OpenAI-style error event and the stream ends without `[DONE]`.
 */
import type { Dispatcher } from 'undici';
import type { FailoverSettings, ModelTarget } from '../config/plan.ts';
import type { Failure } from '../core/failure.ts';
import { openaiErrorBody, streamErrorEvent } from '../core/errors.ts';
import type { Sink } from '../core/sink.ts';
import { type ChatRequest, type ProviderAdapter, RequestRejected, type Usage } from '../translate/provider.ts';
import { type SseEvent, SseParser } from '../translate/sse.ts';
import { redact } from '../core/secret.ts';
import { AttemptAbort, failureFromError } from '../core/abort.ts';

export interface AttemptInput {
  req: ChatRequest;
  target: ModelTarget;
  adapter: ProviderAdapter;
  dispatcher: Dispatcher;
  settings: FailoverSettings;
  sink: Sink;
  /**
   * The attempt's controller, owned by the caller: aborted when the client goes away or the
   * health view marks this model down; the attempt aborts it too, on its own timeouts.
   */
  controller: AbortController;
  /** The answer's headers: its content type and the headers naming who served (a fresh object). */
  servedHeaders: (contentType: string) => Record<string, string>;
  /** Milliseconds left of the request's overall deadline. */
  remainingMs: number;
}

export type AttemptOutcome =
  /** The client got an answer from this model. */
  | { kind: 'answered'; status: number; model?: string; firstByteMs?: number; usage?: Usage }
  /** The client got this model's 4xx, handed back because it is the request's own fault. */
  | { kind: 'client_error'; status: number; failure: Failure }
  /** A committed stream broke: the client got an error event. */
  | { kind: 'cut'; failure: Failure }
  /** Nothing was sent: the request may move on. */
  | { kind: 'failed'; failure: Failure }
  | { kind: 'client_gone' };

const ERROR_BODY_LIMIT = 64 * 1024;
const JSON_TYPE = 'application/json';
const SSE_TYPE = 'text/event-stream; charset=utf-8';

/** The whole body, or undefined past `limit` (then the rest is not read). */
function readCapped(body: Dispatcher.ResponseData['body'], limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    body.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        body.destroy();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    body.once('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)));
    body.once('error', reject);
  });
}

export async function runAttempt(input: AttemptInput): Promise<AttemptOutcome> {
  const { req, target, adapter, sink, settings, controller } = input;
  const signal = controller.signal;
  if (signal.aborted && !(signal.reason instanceof AttemptAbort)) return { kind: 'client_gone' };

  const remainingMs = Math.max(0, input.remainingMs);
  const phaseMs = req.stream ? target.timeouts.firstTokenMs : target.timeouts.responseMs;
  const phaseReason = req.stream ? 'first_token_timeout' : 'response_timeout';
  // A phase that outlasts the request's deadline is bounded by the deadline alone: running out of
  // the request's time is not the model's fault (passive health ignores deadline_exceeded).
  const phaseTimer =
    phaseMs <= remainingMs ? setTimeout(() => controller.abort(new AttemptAbort(phaseReason, `no ${req.stream ? 'first token' : 'answer'} within ${phaseMs} ms`)), phaseMs) : undefined;
  // The request's deadline holds for the whole attempt, a committed stream included (then it ends
  // with the error event). The extra millisecond keeps the timer from firing a hair before the
  // failover loop's own clock says the deadline passed.
  const deadlineTimer = setTimeout(
    () => controller.abort(new AttemptAbort('deadline_exceeded', `the request deadline (timeouts.request) ran out during this attempt`)),
    Math.ceil(remainingMs) + 1,
  );
  const started = performance.now();
  let response: Dispatcher.ResponseData | undefined;
  /** The stream's answer is complete and the upstream's end of body is being read, not cut. */
  let draining = false;

  const outcomeOf = (err: unknown): AttemptOutcome => {
    if (signal.aborted && !(signal.reason instanceof AttemptAbort)) return { kind: 'client_gone' };
    return { kind: 'failed', failure: failureFromError(err, signal) };
  };

  try {
    let upstream: ReturnType<ProviderAdapter['buildRequest']>;
    try {
      upstream = adapter.buildRequest(req, target);
    } catch (err) {
      if (err instanceof RequestRejected) {
        const failure: Failure = { reason: 'client_error', status: err.status, message: err.message };
        sink.reply(err.status, input.servedHeaders(JSON_TYPE), openaiErrorBody(err.message, 'invalid_request_error', err.code));
        return { kind: 'client_error', status: err.status, failure };
      }
      // this provider cannot express the request; another may
      return { kind: 'failed', failure: { reason: 'untranslatable', message: `the ${target.provider} translator rejected the request: ${redact(err instanceof Error ? err.message : String(err), req.clientAuthorization)}` } };
    }
    try {
      response = await input.dispatcher.request({
        path: upstream.path,
        method: 'POST',
        // Compressed answers are decoded (send/pools.ts), but none are asked for: identity costs
        // the provider nothing and keeps a stream's events flowing one by one.
        headers: { ...upstream.headers, 'accept-encoding': 'identity' },
        body: upstream.body,
        signal,
      });
    } catch (err) {
      return outcomeOf(err);
    }
    const { statusCode, headers, body } = response;

    if (statusCode < 200 || statusCode >= 300) {
      let errorBody: Buffer | undefined;
      try {
        errorBody = await readCapped(body, ERROR_BODY_LIMIT);
      } catch (err) {
        return outcomeOf(err);
      }
      // scrubbed before any translator quotes (and cuts) it
      const scrubbed = errorBody && errorBody.length > 0 ? Buffer.from(redact(errorBody.toString('utf8'), req.clientAuthorization)) : Buffer.alloc(0);
      const { failure, clientBody } = adapter.translateError(statusCode, headers, scrubbed, settings.maxRetryAfterMs);
      failure.message = redact(failure.message, req.clientAuthorization);
      if (failure.reason !== 'client_error') return { kind: 'failed', failure };
      sink.reply(statusCode, input.servedHeaders(JSON_TYPE), redact(clientBody.toString(), req.clientAuthorization));
      return { kind: 'client_error', status: statusCode, failure };
    }

    if (!req.stream) {
      let raw: Buffer | undefined;
      try {
        raw = await readCapped(body, settings.maxResponseBytes);
      } catch (err) {
        return outcomeOf(err);
      }
      if (raw === undefined) return { kind: 'failed', failure: { reason: 'bad_response', message: `response larger than ${settings.maxResponseBytes} bytes` } };
      const translated = adapter.translateResponse(raw, req, target);
      if (!translated.ok) return { kind: 'failed', failure: translated.failure };
      if (signal.aborted) return outcomeOf(signal.reason);
      sink.reply(200, input.servedHeaders(JSON_TYPE), translated.body);
      return { kind: 'answered', status: 200, model: translated.model, usage: translated.usage };
    }

    const contentType = String(headers['content-type'] ?? '');
    if (!contentType.includes('text/event-stream')) {
      body.destroy();
      return { kind: 'failed', failure: { reason: 'bad_response', message: `a stream was asked for, the answer came as ${contentType || 'no content type'}` } };
    }
    const relayed = await relayStream(input, body, started, phaseTimer);
    draining = relayed.draining;
    return relayed.outcome;
  } finally {
    clearTimeout(phaseTimer);
    clearTimeout(deadlineTimer);
    if (response && !draining && !response.body.readableEnded) response.body.destroy();
  }
}

/**
 * Reads the upstream's SSE body as it arrives: events parsed, translated and handed to the
 * client in one write per upstream read; the upstream is paused while the client is slow, and
 * aborted after `streamIdle` of silence. Resolves with the attempt's outcome at the stream's
 * final event or at its first failure. After the final event the upstream's end of body is
 * still read (`draining`): the connection then goes back to the pool (destroying the body would
 * close it), bounded by the stream limit and, through the idle timer, by time.
 */
function relayStream(
  input: AttemptInput,
  body: Dispatcher.ResponseData['body'],
  started: number,
  phaseTimer: NodeJS.Timeout | undefined,
): Promise<{ outcome: AttemptOutcome; draining: boolean }> {
  const { req, target, adapter, sink, settings, controller } = input;
  const signal = controller.signal;
  const idleMs = target.timeouts.streamIdleMs;
  // While the client is slow to take what was sent, the model is not silent: no stall then.
  let waitingForClient = false;
  const idleTimer = setTimeout(function onIdle(this: NodeJS.Timeout) {
    if (waitingForClient) this.refresh();
    else controller.abort(new AttemptAbort('stream_stalled', `no model progress (content, tool call, reasoning) for ${idleMs} ms`));
  }, idleMs);
  const stopIdle = () => clearTimeout(idleTimer);
  const parser = new SseParser();
  const translator = adapter.streamTranslator(req, target);
  const held: string[] = [];
  let firstByteMs: number | undefined;
  let model: string | undefined;
  let usage: Usage | undefined;
  let streamed = 0;

  return new Promise((resolve, reject) => {
    let over = false;
    const stop = () => {
      over = true;
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      // an error after this point (the tail being dropped) has no one else to tell
      body.on('error', noop);
    };
    const finish = (outcome: AttemptOutcome) => {
      if (over) return;
      stop();
      if (outcome.kind !== 'answered' || body.readableEnded) {
        stopIdle();
        resolve({ outcome, draining: false });
        return;
      }
      body.dump({ limit: settings.maxStreamBytes, signal }).then(stopIdle, stopIdle);
      resolve({ outcome, draining: true });
    };
    const fail = (failure: Failure) => {
      body.destroy();
      failure.message = redact(failure.message, req.clientAuthorization);
      if (!sink.committed) return finish({ kind: 'failed', failure });
      sink.end(streamErrorEvent(`the stream from the model broke after it started: ${failure.message}`, 'stream_interrupted'));
      finish({ kind: 'cut', failure });
    };
    const onError = (err: unknown) => {
      if (signal.aborted && !(signal.reason instanceof AttemptAbort)) return finish({ kind: 'client_gone' });
      fail(failureFromError(err, signal));
    };
    const onEnd = () => fail({ reason: 'bad_response', message: 'the stream ended without its final event' });
    const onData = (chunk: Buffer) => {
      try {
        relay(chunk);
      } catch (err) {
        // a bug on our side (a translator threw): the attempt throws, as it would anywhere else
        if (over) return;
        stop();
        stopIdle();
        body.destroy();
        reject(err);
      }
    };
    const relay = (chunk: Buffer) => {
      streamed += chunk.length;
      if (streamed > settings.maxStreamBytes) return fail({ reason: 'bad_response', message: `stream larger than ${settings.maxStreamBytes} bytes` });
      let events: SseEvent[];
      try {
        events = parser.push(chunk);
      } catch (err) {
        return onError(err);
      }
      let batch = '';
      for (const event of events) {
        const step = translator.push(event);
        // only the model's progress holds off the idle timer: keep-alive comments (which yield no
        // event), pings and empty chunks do not
        if (step.progress ?? step.content) idleTimer.refresh();
        if (step.error) {
          // what the client was due before the error still reaches it
          if (batch) sink.write(batch);
          return fail(step.error);
        }
        if (step.model) model = step.model;
        if (step.usage) usage = step.usage;
        if (!sink.committed) {
          if (step.out) held.push(step.out);
          if (!step.content) continue;
          clearTimeout(phaseTimer);
          firstByteMs = performance.now() - started;
          const headers = input.servedHeaders(SSE_TYPE);
          headers['cache-control'] = 'no-cache';
          sink.commit(200, headers);
          batch += held.length === 1 ? held[0] : held.join('');
          held.length = 0;
          if (!step.done) continue;
        } else if (step.out) {
          batch += step.out;
        }
        if (step.done) {
          sink.end(batch);
          return finish({ kind: 'answered', status: 200, firstByteMs, model, usage });
        }
      }
      if (!batch || sink.write(batch)) return;
      // the client is slow: hold the upstream until it has taken what was sent
      body.pause();
      waitingForClient = true;
      sink.waitDrain(signal).then(
        () => {
          waitingForClient = false;
          idleTimer.refresh();
          body.resume();
        },
        () => {
          waitingForClient = false;
          // the client went away (the signal aborted): the body errors with it
        },
      );
    };
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
  });
}

function noop(): void {}
