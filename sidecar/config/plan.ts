/**
 * The resolved plan: what the sidecar runs after the YAML was validated and every reference
 * resolved. Everything the request path needs is computed here once, never per request.
 */
import type { Secret } from '../core/secret.ts';

export type ProviderKind = 'openai' | 'anthropic';

/** How the upstream request is authenticated. */
export type AuthPlan =
  | { kind: 'static'; header: string; prefix: string; token: Secret; source: 'SecretRef' | 'Inline'; secretName?: string; /** Where a SecretRef was found: the mounted file or the env variable. */ foundIn?: string }
  | { kind: 'passthrough'; header: string; prefix: string };

export interface Timeouts {
  /** TCP + TLS connect. */
  connectMs: number;
  /** Non-streamed: until the whole answer arrived. */
  responseMs: number;
  /** Streamed: until the first chunk that carries content. */
  firstTokenMs: number;
  /** Streamed: the longest silence between two chunks once the stream runs. */
  streamIdleMs: number;
}

export interface FailoverSettings {
  timeouts: Timeouts;
  /** The whole request, every attempt included. */
  requestDeadlineMs: number;
  /** 0 = every candidate once. */
  maxAttempts: number;
  cooldownAfterFailureMs: number;
  cooldownAfterAuthFailureMs: number;
  maxRetryAfterMs: number;
  /** A non-streamed answer larger than this is not a sane completion: fail over. */
  maxResponseBytes: number;
  /** A stream that grows past this is cut with an error event. */
  maxStreamBytes: number;
}

export type ProbeKind = 'auto' | 'chat' | 'models' | 'none';

export interface HealthSettings {
  probe: {
    /** auto: free model-list probes for idle models, chat probes where generation must be proven. */
    kind: ProbeKind;
    intervalMs: number;
    /** For idle models two or more groups below the one carrying traffic. */
    idleIntervalMs: number;
    timeoutMs: number;
    jitterPercent: number;
    healthyThreshold: number;
    unhealthyThreshold: number;
    prompt: string;
    maxTokens: number;
  };
  /** Time to first token over this marks the model degraded. */
  slowThresholdMs: number;
  /** An attempt with no first token after this long (or 4x the model's usual) triggers a probe. */
  suspectAfterMs: number;
  breaker: {
    enabled: boolean;
    /** Failed attempts in a row that open the breaker whatever the window says (0: off). */
    consecutiveFailures: number;
    windowMs: number;
    errorThresholdPercentage: number;
    volumeThreshold: number;
    resetTimeoutMs: number;
  };
}

/** One model a request can be sent to: a provider entry of a priority group. */
export interface ModelTarget {
  /** The provider entry's name, unique within its Backend (e.g. "openai-gpt-4o"). */
  name: string;
  /** "<namespace>/<backend>/<name>": unique across the whole plan. */
  key: string;
  backend: string;
  /** 0-based priority group index (0 = highest priority). */
  group: number;
  provider: ProviderKind;
  /** The model to ask for; undefined = the client's `model` is sent as is (kgateway semantics). */
  model: string | undefined;
  origin: string;
  path: string;
  auth: AuthPlan;
  /** Anthropic's `anthropic-version`. */
  apiVersion?: string;
  timeouts: Timeouts;
  health: HealthSettings;
}

export interface BackendPlan {
  name: string;
  namespace: string;
  groups: ModelTarget[][];
  settings: FailoverSettings;
}

export interface RoutePlan {
  match: { type: 'PathPrefix' | 'Exact' | 'RegularExpression'; value: string };
  backend: BackendPlan;
  /** Where the rule came from, for /status and error messages. */
  source: string;
}

export interface ServerSettings {
  listen: string;
  admin: string;
  maxBodyBytes: number;
  /** Requests served upstream at once; beyond it they queue. */
  maxConcurrentRequests: number;
  /** Requests waiting for a slot; beyond it: 503 at once. */
  maxQueuedRequests: number;
  queueTimeoutMs: number;
  maxConnections: number;
  /** Time a client may take to send its request headers (slowloris bound). */
  headersTimeoutMs: number;
  /** Time a client may take to send its whole request (headers and body). */
  requestBodyTimeoutMs: number;
  drainGraceMs: number;
  logLevel: string;
}

export interface Plan {
  backends: BackendPlan[];
  /** HTTPRoute rules, then the default `/v1/chat/completions` route to the first Backend. */
  routes: RoutePlan[];
  server: ServerSettings;
}

export const DEFAULT_SERVER: ServerSettings = {
  listen: '127.0.0.1:8080',
  admin: '127.0.0.1:15000',
  maxBodyBytes: 32 * 1024 * 1024,
  // LLM calls last seconds to minutes: at 200 req/s and 10 s each a pod holds 2,000 at once
  maxConcurrentRequests: 4096,
  maxQueuedRequests: 1024,
  queueTimeoutMs: 10_000,
  maxConnections: 4096,
  headersTimeoutMs: 30_000,
  requestBodyTimeoutMs: 60_000,
  drainGraceMs: 25_000,
  logLevel: 'info',
};

export const DEFAULT_FAILOVER: FailoverSettings = {
  timeouts: { connectMs: 5_000, responseMs: 300_000, firstTokenMs: 30_000, streamIdleMs: 30_000 },
  requestDeadlineMs: 600_000,
  maxAttempts: 0,
  cooldownAfterFailureMs: 10_000,
  cooldownAfterAuthFailureMs: 60_000,
  maxRetryAfterMs: 300_000,
  maxResponseBytes: 8 * 1024 * 1024,
  maxStreamBytes: 64 * 1024 * 1024,
};

export const DEFAULT_HEALTH: HealthSettings = {
  probe: {
    kind: 'auto',
    intervalMs: 10_000,
    idleIntervalMs: 60_000,
    timeoutMs: 5_000,
    jitterPercent: 20,
    healthyThreshold: 2,
    unhealthyThreshold: 2,
    prompt: 'Reply with the single word: ok',
    maxTokens: 16,
  },
  slowThresholdMs: 8_000,
  suspectAfterMs: 3_000,
  breaker: { enabled: true, consecutiveFailures: 5, windowMs: 10_000, errorThresholdPercentage: 50, volumeThreshold: 3, resetTimeoutMs: 10_000 },
};

/** The same plan with every probe off (as if each model said `probe.kind: none`). */
export function withoutProbes(plan: Plan): Plan {
  const backends = new Map<BackendPlan, BackendPlan>();
  for (const b of plan.backends) {
    backends.set(b, { ...b, groups: b.groups.map((g) => g.map((m) => ({ ...m, health: { ...m.health, probe: { ...m.health.probe, kind: 'none' as const } } }))) });
  }
  return { ...plan, backends: [...backends.values()], routes: plan.routes.map((r) => ({ ...r, backend: backends.get(r.backend)! })) };
}

export function allModels(backend: BackendPlan): ModelTarget[] {
  return backend.groups.flat();
}
