/**
 * Settings: what the sidecar runs with when the YAML says nothing, and how what it does say is
 * laid over that. Three groups, each a schema of schema.ts (where every setting is described):
 * server settings (SidecarConfig), failover settings (a FailoverPolicy's spec) and health
 * settings (its `health`, per model). One rule for all of them, `layered`: the defaults, then
 * the FailoverPolicy, then its `providers.<name>` override; a layer's field replaces the one
 * below it, a field the layer leaves out does not. The layers are schema outputs, durations
 * already in milliseconds, so nothing here parses.
 *
 * The plan's names (`connectMs`, `requestDeadlineMs`, `cooldownAfterFailureMs`) are the ones
 * the request path reads; `serverPlan`, `failoverPlan` and `healthPlan` are the one place the
 * schema's name of a setting meets the plan's, and plan.ts takes its settings types from them.
 */
import type { z } from 'zod';
import type { failoverSettings, healthSettings, sidecarConfig, timeouts } from './schema.ts';

/** The settings groups as the schema outputs them: every field optional, durations in milliseconds. */
export type SidecarSpec = z.output<typeof sidecarConfig>['spec'];
export type FailoverSpec = Omit<z.output<typeof failoverSettings>, 'health'>;
export type TimeoutsSpec = z.output<typeof timeouts>;
export type HealthSpec = z.output<typeof healthSettings>;
/** A FailoverPolicy's `providers.<name>` override. */
type ProviderOverride = { timeouts?: TimeoutsSpec; health?: HealthSpec };

/** A settings group with every field present, nested groups included: the defaults, and what `layered` returns. */
export type Complete<T> = {
  [K in keyof T]-?: NonNullable<T[K]> extends Record<string, unknown> ? Complete<NonNullable<T[K]>> : NonNullable<T[K]>;
};

// ---- the defaults (durations in milliseconds, as the schema outputs them) ----
// (schema.ts reads them for the documented defaults, so they are typed by the checks below,
// not by an annotation that would make their type and the schema's depend on each other)

export const SERVER_DEFAULTS = {
  listen: '127.0.0.1:8080',
  admin: '127.0.0.1:15000',
  maxBodyBytes: 32 * 1024 * 1024,
  // LLM calls last seconds to minutes: at 200 req/s and 10 s each a pod holds 2,000 at once
  maxConcurrentRequests: 4096,
  maxQueuedRequests: 1024,
  queueTimeout: 10_000,
  maxConnections: 4096,
  headersTimeout: 30_000,
  requestBodyTimeout: 60_000,
  drainGrace: 25_000,
  logLevel: 'info',
} as const;

export const FAILOVER_DEFAULTS = {
  timeouts: { connect: 5_000, response: 300_000, firstToken: 30_000, streamIdle: 30_000, request: 600_000 },
  maxAttempts: 0,
  cooldown: { afterFailure: 10_000, afterAuthFailure: 60_000, maxRetryAfter: 300_000 },
  maxResponseBytes: 8 * 1024 * 1024,
  maxStreamBytes: 64 * 1024 * 1024,
} as const;

export const HEALTH_DEFAULTS = {
  probe: {
    kind: 'auto',
    interval: 10_000,
    idleInterval: 60_000,
    edgeInterval: 1_000,
    timeout: 5_000,
    jitterPercent: 20,
    healthyThreshold: 2,
    unhealthyThreshold: 2,
    prompt: 'Reply with the single word: ok',
    maxTokens: 16,
  },
  slowThreshold: 8_000,
  suspectAfter: 3_000,
  breaker: {
    enabled: true,
    consecutiveFailures: 5,
    window: 10_000,
    errorThresholdPercentage: 50,
    volumeThreshold: 3,
    resetTimeout: 10_000,
  },
} as const;

// every setting of the schema has a default of its type (a setting without one, or of another type, does not compile)
SERVER_DEFAULTS satisfies Complete<SidecarSpec>;
FAILOVER_DEFAULTS satisfies Complete<FailoverSpec>;
HEALTH_DEFAULTS satisfies Complete<HealthSpec>;

// ---- the one merge ----

function isGroup(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `layer` over `base`: field by field, nested groups merged the same way. Only the base's fields are read (a policy's targetRefs are not settings). */
function over(base: Record<string, unknown>, layer: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const key of Object.keys(base)) {
    const value = layer[key];
    if (value === undefined) continue;
    out[key] = isGroup(base[key]) && isGroup(value) ? over(base[key], value) : value;
  }
  return out;
}

/** The defaults with each layer laid over them in turn (undefined: a layer that is not there). */
export function layered<T extends object>(defaults: Complete<T>, ...layers: (T | undefined)[]): Complete<T> {
  let merged = defaults as Record<string, unknown>;
  for (const layer of layers) if (layer) merged = over(merged, layer as Record<string, unknown>);
  return merged as Complete<T>;
}

// ---- the schema's names to the plan's ----

export function serverPlan(s: Complete<SidecarSpec>) {
  return {
    listen: s.listen,
    admin: s.admin,
    maxBodyBytes: s.maxBodyBytes,
    maxConcurrentRequests: s.maxConcurrentRequests,
    maxQueuedRequests: s.maxQueuedRequests,
    queueTimeoutMs: s.queueTimeout,
    maxConnections: s.maxConnections,
    headersTimeoutMs: s.headersTimeout,
    requestBodyTimeoutMs: s.requestBodyTimeout,
    drainGraceMs: s.drainGrace,
    // a string: the --log-level flag replaces it after loading
    logLevel: s.logLevel as string,
  };
}

/** Per attempt, per phase. (`request` is the whole request's: failoverPlan's requestDeadlineMs.) */
export function timeoutsPlan(t: Complete<TimeoutsSpec>) {
  return { connectMs: t.connect, responseMs: t.response, firstTokenMs: t.firstToken, streamIdleMs: t.streamIdle };
}

export function failoverPlan(f: Complete<FailoverSpec>) {
  return {
    timeouts: timeoutsPlan(f.timeouts),
    requestDeadlineMs: f.timeouts.request,
    maxAttempts: f.maxAttempts,
    cooldownAfterFailureMs: f.cooldown.afterFailure,
    cooldownAfterAuthFailureMs: f.cooldown.afterAuthFailure,
    maxRetryAfterMs: f.cooldown.maxRetryAfter,
    maxResponseBytes: f.maxResponseBytes,
    maxStreamBytes: f.maxStreamBytes,
  };
}

export function healthPlan(h: Complete<HealthSpec>) {
  const { probe: p, breaker: b } = h;
  return {
    probe: {
      kind: p.kind,
      intervalMs: p.interval,
      idleIntervalMs: p.idleInterval,
      edgeIntervalMs: p.edgeInterval,
      timeoutMs: p.timeout,
      jitterPercent: p.jitterPercent,
      healthyThreshold: p.healthyThreshold,
      unhealthyThreshold: p.unhealthyThreshold,
      prompt: p.prompt,
      maxTokens: p.maxTokens,
    },
    slowThresholdMs: h.slowThreshold,
    suspectAfterMs: h.suspectAfter,
    breaker: {
      enabled: b.enabled,
      consecutiveFailures: b.consecutiveFailures,
      windowMs: b.window,
      errorThresholdPercentage: b.errorThresholdPercentage,
      volumeThreshold: b.volumeThreshold,
      resetTimeoutMs: b.resetTimeout,
    },
  };
}

export type ServerSettings = ReturnType<typeof serverPlan>;
export type FailoverSettings = ReturnType<typeof failoverPlan>;
export type Timeouts = ReturnType<typeof timeoutsPlan>;
export type HealthSettings = ReturnType<typeof healthPlan>;

/** The plan's settings when the YAML sets nothing. */
export const DEFAULT_SERVER: ServerSettings = serverPlan(SERVER_DEFAULTS);
export const DEFAULT_FAILOVER: FailoverSettings = failoverPlan(FAILOVER_DEFAULTS);
export const DEFAULT_HEALTH: HealthSettings = healthPlan(HEALTH_DEFAULTS);

// ---- the settings of a plan ----

/** The process's settings: the defaults, then the SidecarConfig's spec. */
export function resolveServer(spec: SidecarSpec | undefined): ServerSettings {
  return serverPlan(layered(SERVER_DEFAULTS, spec));
}

/** A Backend's failover settings: the defaults, then its FailoverPolicy's spec. */
export function resolveFailover(policy: FailoverSpec | undefined): FailoverSettings {
  return failoverPlan(layered(FAILOVER_DEFAULTS, policy));
}

/**
 * One model's timeouts and health: the defaults, then the policy, then the policy's override for
 * this provider entry. (An override's `timeouts.request` is not read: the deadline is the whole
 * request's, not one model's.)
 */
export function resolveModel(
  policy: { timeouts?: TimeoutsSpec; health?: HealthSpec } | undefined,
  override: ProviderOverride | undefined,
): { timeouts: Timeouts; health: HealthSettings } {
  return {
    timeouts: timeoutsPlan(layered(FAILOVER_DEFAULTS.timeouts, policy?.timeouts, override?.timeouts)),
    health: healthPlan(layered(HEALTH_DEFAULTS, policy?.health, override?.health)),
  };
}
