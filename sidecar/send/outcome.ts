/**
 * What one attempt came to, as its caller (failover, health, probes) sees it.
 */
import type { Failure } from '../core/failure.ts';
import type { Usage } from '../translate/provider.ts';

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
