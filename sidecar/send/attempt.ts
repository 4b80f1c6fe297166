/**
 * One attempt at one model: build the upstream request, dispatch it, and route the answer by
 * its status. An error status goes through the provider's translateError to a failure (or, the
 * request's own fault, back to the client); a whole answer is read, translated and committed;
 * a stream goes to the relay (relay.ts). Everything the client gets passes the commit gate
 * (commit-gate.ts): before the commit every failure is reported back having sent nothing, so the
 * request can move on. The attempt's clocks live here: its phase (first token, or the whole
 * answer) and the request's deadline, both aborting it through its controller. In undici's
 * handler terms: onRequestStart and onResponseStart.
 */
import type { Dispatcher } from 'undici';
import type { FailoverSettings, ModelTarget } from '../config/plan.ts';
import { AttemptAbort, failureFromError } from '../core/abort.ts';
import { openaiErrorBody } from '../core/errors.ts';
import { FAILURES, type Failure } from '../core/failure.ts';
import { redact } from '../core/secret.ts';
import type { Sink } from '../core/sink.ts';
import { type ChatRequest, type ProviderAdapter, RequestRejected } from '../translate/provider.ts';
import { CommitGate } from './commit-gate.ts';
import type { AttemptOutcome } from './outcome.ts';
import { relayStream } from './relay.ts';

export interface AttemptInput {
  req: ChatRequest;
  target: ModelTarget;
  adapter: ProviderAdapter;
  dispatcher: Dispatcher;
  settings: FailoverSettings;
  /** Where the answer goes: the client, or nowhere (a probe). Written only through the commit gate. */
  sink: Sink;
  /**
   * The attempt's controller, owned by the caller: aborted when the client goes away or the
   * health view marks this model down; the attempt aborts it too, on its own timeouts.
   */
  controller: AbortController;
  /** Milliseconds left of the request's overall deadline. */
  remainingMs: number;
  /** Which attempt of its request this is (the `x-llm-failover-attempts` header); 1 when absent (a probe). */
  attempt?: number;
}

const ERROR_BODY_LIMIT = 64 * 1024;

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

/**
 * Runs the attempt. Throws only on a bug of ours (a translator threw), after the commit gate
 * ended a committed stream with an error event.
 */
export async function runAttempt(input: AttemptInput): Promise<AttemptOutcome> {
  const { req, target, adapter, settings, controller } = input;
  const signal = controller.signal;
  if (signal.aborted && !(signal.reason instanceof AttemptAbort)) return { kind: 'client_gone' };

  const remainingMs = Math.max(0, input.remainingMs);
  const phaseMs = req.stream ? target.timeouts.firstTokenMs : target.timeouts.responseMs;
  const phaseReason = req.stream ? 'first_token_timeout' : 'response_timeout';
  // A phase that outlasts the request's deadline is bounded by the deadline alone: running out of
  // the request's time is not the model's fault (deadline_exceeded blames no model: FAILURES).
  const phaseTimer =
    phaseMs <= remainingMs
      ? setTimeout(
          () => controller.abort(new AttemptAbort(phaseReason, `no ${req.stream ? 'first token' : 'answer'} within ${phaseMs} ms`)),
          phaseMs,
        )
      : undefined;
  // The request's deadline holds for the whole attempt, a committed stream included (then it ends
  // with the error event). The extra millisecond keeps the timer from firing a hair before the
  // failover loop's own clock says the deadline passed.
  const deadlineTimer = setTimeout(
    () => controller.abort(new AttemptAbort('deadline_exceeded', `the request deadline (timeouts.request) ran out during this attempt`)),
    Math.ceil(remainingMs) + 1,
  );
  const started = performance.now();
  const gate = new CommitGate(input.sink, target, req, input.attempt ?? 1);
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
        gate.reply(err.status, openaiErrorBody(err.message, 'invalid_request_error', err.code));
        return { kind: 'client_error', status: err.status, failure };
      }
      // this provider cannot express the request; another may
      return {
        kind: 'failed',
        failure: {
          reason: 'untranslatable',
          message: `the ${target.provider} translator rejected the request: ${redact(err instanceof Error ? err.message : String(err), req.clientAuthorization)}`,
        },
      };
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
      const scrubbed =
        errorBody && errorBody.length > 0 ? Buffer.from(redact(errorBody.toString('utf8'), req.clientAuthorization)) : Buffer.alloc(0);
      const { failure, clientBody } = adapter.translateError(statusCode, headers, scrubbed, settings.maxRetryAfterMs);
      failure.message = redact(failure.message, req.clientAuthorization);
      if (FAILURES[failure.reason].failsOver) return { kind: 'failed', failure };
      gate.reply(statusCode, redact(clientBody.toString(), req.clientAuthorization));
      return { kind: 'client_error', status: statusCode, failure };
    }

    if (!req.stream) {
      let raw: Buffer | undefined;
      try {
        raw = await readCapped(body, settings.maxResponseBytes);
      } catch (err) {
        return outcomeOf(err);
      }
      if (raw === undefined)
        return { kind: 'failed', failure: { reason: 'bad_response', message: `response larger than ${settings.maxResponseBytes} bytes` } };
      const translated = adapter.translateResponse(raw, req, target);
      if (!translated.ok) return { kind: 'failed', failure: translated.failure };
      if (signal.aborted) return outcomeOf(signal.reason);
      gate.reply(200, translated.body);
      return { kind: 'answered', status: 200, model: translated.model, usage: translated.usage };
    }

    const contentType = String(headers['content-type'] ?? '');
    if (!contentType.includes('text/event-stream')) {
      body.destroy();
      return {
        kind: 'failed',
        failure: { reason: 'bad_response', message: `a stream was asked for, the answer came as ${contentType || 'no content type'}` },
      };
    }
    const relayed = await relayStream({
      body,
      gate,
      translator: adapter.streamTranslator(req, target),
      controller,
      idleMs: target.timeouts.streamIdleMs,
      maxStreamBytes: settings.maxStreamBytes,
      clientAuthorization: req.clientAuthorization,
      started,
      phaseTimer,
    });
    draining = relayed.draining;
    return relayed.outcome;
  } catch (err) {
    gate.crashed();
    throw err;
  } finally {
    clearTimeout(phaseTimer);
    clearTimeout(deadlineTimer);
    if (response && !draining && !response.body.readableEnded) response.body.destroy();
  }
}
