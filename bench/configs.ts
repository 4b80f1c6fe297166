/**
 * The sidecar configurations under test, written as the YAML users write (a kgateway Backend
 * with priority groups, an HTTPRoute, a FailoverPolicy, a SidecarConfig), the same shapes
 * test/helpers.ts builds.
 */
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
  const groups = b.groups
    .map(
      (g) => `    - providers:\n${g
        .map(
          (p) => `      - name: ${p.name}
        ${p.kind}:
          model: "${p.model}"
          authToken:
            kind: Inline
            inline: sk-bench-not-a-real-key
        hostOverride:
          host: 127.0.0.1
          port: ${p.port}
        pathOverride:
          fullPath: ${p.path}`,
        )
        .join('\n')}`,
    )
    .join('\n');
  let yaml = `---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata:
  name: ${b.name}
spec:
  type: AI
  ai:
    priorityGroups:
${groups}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: ${b.name}
spec:
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: ${b.route}
    filters:
    - type: URLRewrite
      urlRewrite:
        path:
          type: ReplaceFullPath
          replaceFullPath: /v1/chat/completions
    backendRefs:
    - name: ${b.name}
      group: gateway.kgateway.dev
      kind: Backend
`;
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
 * grammar allows (0ms: the model is `cooling` until the next timer tick).
 */
export const NO_HEALTH_POLICY = `  cooldown:
    afterFailure: 0ms
  health:
    probe:
      kind: none
    breaker:
      enabled: false`;
