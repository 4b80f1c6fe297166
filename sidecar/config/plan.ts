/**
 * The resolved plan: what the sidecar runs after the YAML was validated and every reference
 * resolved. Everything the request path needs is computed here once, never per request.
 */
import type { Secret } from '../core/secret.ts';
import type { ProviderKind } from './providers/index.ts';
import type { FailoverSettings, HealthSettings, ServerSettings, Timeouts } from './settings.ts';

export type { ProviderKind } from './providers/index.ts';
// The settings types and their defaults are settings.ts's (each setting is described in schema.ts).
export type { FailoverSettings, HealthSettings, ServerSettings, Timeouts } from './settings.ts';
export { DEFAULT_FAILOVER, DEFAULT_HEALTH, DEFAULT_SERVER } from './settings.ts';

export type ProbeKind = HealthSettings['probe']['kind'];

/** How the upstream request is authenticated. */
export type AuthPlan =
  | {
      kind: 'static';
      header: string;
      prefix: string;
      token: Secret;
      source: 'SecretRef' | 'Inline';
      secretName?: string /** Where a SecretRef was found: the mounted file or the env variable. */;
      foundIn?: string;
    }
  | { kind: 'passthrough'; header: string; prefix: string };

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
  /** Anthropic's `anthropic-version` (providers/anthropic.ts sets it). */
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

export interface Plan {
  backends: BackendPlan[];
  /** HTTPRoute rules, then the default `/v1/chat/completions` route to the first Backend. */
  routes: RoutePlan[];
  server: ServerSettings;
}

/** The same plan with every probe off (as if each model said `probe.kind: none`). */
export function withoutProbes(plan: Plan): Plan {
  const backends = new Map<BackendPlan, BackendPlan>();
  for (const b of plan.backends) {
    backends.set(b, {
      ...b,
      groups: b.groups.map((g) => g.map((m) => ({ ...m, health: { ...m.health, probe: { ...m.health.probe, kind: 'none' as const } } }))),
    });
  }
  return { ...plan, backends: [...backends.values()], routes: plan.routes.map((r) => ({ ...r, backend: backends.get(r.backend)! })) };
}

export function allModels(backend: BackendPlan): ModelTarget[] {
  return backend.groups.flat();
}
