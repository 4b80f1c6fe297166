/**
 * The relay: the pump of a streamed answer, from the upstream's SSE body to the commit gate.
 * Events are parsed and translated as they arrive and handed on in one write per upstream read;
 * the upstream is paused while the client is slow (backpressure), aborted after `streamIdle`
 * without model progress and past `maxStreamBytes`. After the final event the upstream's end of
 * body is still read (the tail drain): the connection then goes back to the pool instead of
 * being closed. In undici's handler terms: onResponseData, onResponseEnd, onResponseError.
 */
import type { Dispatcher } from 'undici';
import { AttemptAbort, failureFromError } from '../core/abort.ts';
import type { Failure } from '../core/failure.ts';
import { redact } from '../core/secret.ts';
import type { StreamTranslator, Usage } from '../translate/provider.ts';
import { type SseEvent, SseParser } from '../translate/sse.ts';
import type { CommitGate } from './commit-gate.ts';
import type { AttemptOutcome } from './outcome.ts';

export interface RelayInput {
  body: Dispatcher.ResponseData['body'];
  gate: CommitGate;
  translator: StreamTranslator;
  /** The attempt's controller: the relay aborts it on a stall; its signal ends the drain and a client wait. */
  controller: AbortController;
  idleMs: number;
  maxStreamBytes: number;
  /** The client's own credential, scrubbed from failure messages. */
  clientAuthorization?: string;
  /** When the attempt started (performance.now()), for the time to first content. */
  started: number;
  /** The attempt's first-token timer: stopped at the first content. */
  phaseTimer: NodeJS.Timeout | undefined;
}

/**
 * Resolves with the attempt's outcome at the stream's final event or at its first failure;
 * `draining` when the outcome is an answer and the upstream's tail is still being read. Rejects
 * when something of ours threw (a translator): a bug, which the attempt rethrows.
 */
export function relayStream(input: RelayInput): Promise<{ outcome: AttemptOutcome; draining: boolean }> {
  const { body, gate, translator, controller, idleMs, maxStreamBytes, started } = input;
  const signal = controller.signal;
  // While the client is slow to take what was sent, the model is not silent: no stall then.
  let waitingForClient = false;
  const idleTimer = setTimeout(function onIdle(this: NodeJS.Timeout) {
    if (waitingForClient) this.refresh();
    else controller.abort(new AttemptAbort('stream_stalled', `no model progress (content, tool call, reasoning) for ${idleMs} ms`));
  }, idleMs);
  const stopIdle = () => clearTimeout(idleTimer);
  const parser = new SseParser();
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
      body.dump({ limit: maxStreamBytes, signal }).then(stopIdle, stopIdle);
      resolve({ outcome, draining: true });
    };
    const fail = (failure: Failure) => {
      body.destroy();
      failure.message = redact(failure.message, input.clientAuthorization);
      finish(gate.fail(failure));
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
      if (streamed > maxStreamBytes) return fail({ reason: 'bad_response', message: `stream larger than ${maxStreamBytes} bytes` });
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
          if (batch) gate.write(batch);
          return fail(step.error);
        }
        if (step.model) model = step.model;
        if (step.usage) usage = step.usage;
        if (!gate.committed) {
          gate.hold(step.out);
          if (!step.content) continue;
          clearTimeout(input.phaseTimer);
          firstByteMs = performance.now() - started;
          batch += gate.commit();
        } else if (step.out) {
          batch += step.out;
        }
        if (step.done) {
          gate.end(batch);
          return finish({ kind: 'answered', status: 200, firstByteMs, model, usage });
        }
      }
      if (!batch || gate.write(batch)) return;
      // the client is slow: hold the upstream until it has taken what was sent
      body.pause();
      waitingForClient = true;
      gate.waitDrain(signal).then(
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
