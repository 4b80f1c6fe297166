/**
 * The sidecar configurations under test, written as the YAML users write (a kgateway Backend
 * with priority groups, an HTTPRoute, a FailoverPolicy, a SidecarConfig), the same shapes
 * test/helpers.ts builds (simulator/config.ts).
 */
import { failoverYaml } from '../simulator/config.ts';

export interface ProviderSpec {
  name: string;
  kind: 'openai' | 'anthropic';
  model: string;
  port: number;
  /** Upstream path (pathOverride.fullPath). */
  path: string;
}

export interface BackendSpec {
  name: string;
  /** Route path prefix on the sidecar. */
  route: string;
  groups: ProviderSpec[][];
  /** FailoverPolicy spec body (YAML lines indented by two), if any. */
  policy?: string;
}

function backendYaml(b: BackendSpec): string {
  const models = b.groups.flatMap((g, group) => g.map((p) => ({ ...p, group, token: 'sk-bench-not-a-real-key' })));
  let yaml = `---\n${failoverYaml(models, { backend: b.name, route: b.route })}`;
  if (b.policy) {
    yaml += `---
apiVersion: llm-failover.dev/v1alpha1
kind: FailoverPolicy
metadata:
  name: ${b.name}
spec:
  targetRefs:
  - kind: Backend
    name: ${b.name}
${b.policy}
`;
  }
  return yaml;
}

export function sidecarYaml(backends: BackendSpec[], listen: string, admin: string, logLevel = 'warn'): string {
  return `${backends.map(backendYaml).join('')}---
apiVersion: llm-failover.dev/v1alpha1
kind: SidecarConfig
spec:
  listen: ${listen}
  admin: ${admin}
  logLevel: ${logLevel}
  drainGrace: 2s
`;
}

/**
 * Failover on the request path for every request: health must not take the failing models
 * out of rotation. Breaker off (else it opens after 3 failures), probes off (else a failing
 * model is marked unhealthy), and the cooldown a failure starts (passive.ts) as short as the
 * grammar allows (1ms: durations must be above zero; the model is `cooling` for that long).
 */
export const NO_HEALTH_POLICY = `  cooldown:
    afterFailure: 1ms
  health:
    probe:
      kind: none
    breaker:
      enabled: false`;
