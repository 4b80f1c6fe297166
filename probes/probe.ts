/**
 * One synthetic probe of one model.
 * - chat: a minimal streamed chat request in the model's own wire format, sent through the same
 *   translator and attempt code as user traffic, so it fails exactly where users would. It
 *   measures time to first token and total time. `max_completion_tokens` (not `max_tokens: 1`,
 *   which reasoning models reject) bounds its cost.
 * - models: the provider's model list. Free: proves reachability and credentials, not generation.
 */
import { DEFAULT_FAILOVER, type ModelTarget } from '../sidecar/config/plan.ts';
import { providerFacts } from '../sidecar/config/providers/index.ts';
import type { ProbeResult } from '../sidecar/health/active.ts';
import { redact } from '../sidecar/core/secret.ts';
import { classifyStatus } from '../sidecar/core/classify.ts';
import type { Failure } from '../sidecar/core/failure.ts';
import { failureFromError } from '../sidecar/core/abort.ts';
import { runAttempt } from '../sidecar/send/attempt.ts';
import type { Pools } from '../sidecar/send/pools.ts';
import { DiscardSink } from '../sidecar/core/sink.ts';
import { authHeaders, type ChatRequest, type ProviderAdapter } from '../sidecar/translate/provider.ts';

export interface ProbeDeps {
  pools: Pools;
  adapters: Record<ModelTarget['provider'], ProviderAdapter>;
}

function probeRequest(model: ModelTarget): ChatRequest {
  const json = {
    messages: [{ role: 'user', content: model.health.probe.prompt }],
    max_completion_tokens: model.health.probe.maxTokens,
    stream: true,
  };
  return { raw: Buffer.from(JSON.stringify(json)), json, stream: true, hasModel: false, bodies: new Map() };
}

/** How much of a failed model-list answer is read (the provider error body bound of the request path). */
const MAX_ERROR_BODY = 64 * 1024;

/** At most `max` bytes of a body, as text; the rest is not read (the connection is dropped instead). */
async function boundedText(body: AsyncIterable<Buffer> & { destroy(err?: Error): unknown }, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= max) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).subarray(0, max).toString('utf8');
}

/** Every probe failure message ends up on /status and in logs: scrubbed, whatever produced it. */
function scrubbed(failure: Failure): Failure {
  return { ...failure, message: redact(failure.message) };
}

/** The model-list path beside the chat path (the provider's facts: /v1/chat/completions -> /v1/models, /v1/messages -> /v1/models). */
export function modelsPath(model: ModelTarget): string {
  return providerFacts(model.provider).modelsProbe(model).path;
}

export async function chatProbe(model: ModelTarget, deps: ProbeDeps, signal: AbortSignal): Promise<Omit<ProbeResult, 'trigger' | 'id'>> {
  const started = performance.now();
  const timeoutMs = model.health.probe.timeoutMs;
  const target = { ...model, timeouts: { ...model.timeouts, firstTokenMs: timeoutMs, streamIdleMs: timeoutMs, responseMs: timeoutMs } };
  const controller = new AbortController();
  const forward = () => controller.abort(signal.reason);
  signal.addEventListener('abort', forward, { once: true });
  const outcome = await runAttempt({
    req: probeRequest(model),
    target,
    adapter: deps.adapters[model.provider],
    dispatcher: deps.pools.for(model),
    settings: DEFAULT_FAILOVER,
    sink: new DiscardSink(),
    controller,
    remainingMs: timeoutMs,
  }).finally(() => signal.removeEventListener('abort', forward));
  const durationMs = performance.now() - started;
  switch (outcome.kind) {
    case 'answered':
      return { kind: 'chat', ok: true, durationMs, ttftMs: outcome.firstByteMs };
    case 'client_error':
      // The model answered; only our probe request displeased it. Reachable, and the operator
      // sees the probe's error on /status.
      return { kind: 'chat', ok: true, durationMs, failure: scrubbed(outcome.failure) };
    case 'client_gone':
      return { kind: 'chat', ok: false, durationMs, failure: { reason: 'marked_down', message: 'probe cancelled' } };
    default:
      return { kind: 'chat', ok: false, durationMs, failure: scrubbed(outcome.failure) };
  }
}

export async function modelsProbe(model: ModelTarget, deps: ProbeDeps, signal: AbortSignal): Promise<Omit<ProbeResult, 'trigger' | 'id'>> {
  const started = performance.now();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), model.health.probe.timeoutMs);
  const onAbort = () => controller.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  const request = providerFacts(model.provider).modelsProbe(model);
  const headers: Record<string, string> = { accept: 'application/json', ...authHeaders(probeRequest(model), model), ...request.headers };
  try {
    const res = await deps.pools.for(model).request({ path: request.path, method: 'GET', headers, signal: controller.signal });
    const text = await boundedText(res.body, MAX_ERROR_BODY);
    const durationMs = performance.now() - started;
    // Passthrough auth has no key of ours to probe with: any HTTP answer proves reachability.
    if (res.statusCode < 300 || model.auth.kind === 'passthrough') return { kind: 'models', ok: true, durationMs };
    // the whole text: classifyStatus scrubs it, then cuts it (a key cut first would survive as a piece)
    const failure = classifyStatus({ status: res.statusCode, headers: res.headers, message: text }, DEFAULT_FAILOVER.maxRetryAfterMs);
    return { kind: 'models', ok: false, durationMs, failure: scrubbed(failure) };
  } catch (err) {
    const failure =
      controller.signal.aborted && !signal.aborted
        ? { reason: 'response_timeout' as const, message: `no answer within ${model.health.probe.timeoutMs} ms` }
        : failureFromError(err, controller.signal);
    return { kind: 'models', ok: false, durationMs: performance.now() - started, failure: scrubbed(failure) };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}
