/**
 * The YAML that points a sidecar at simulated providers: a kgateway Backend with one priority
 * group per `group` index and an HTTPRoute mapping /model to it, the way the seed page writes
 * them. Used by the demo, the tests and the bench.
 */
export interface SimulatedModel {
  /** The provider entry's name. */
  name: string;
  kind?: 'openai' | 'anthropic';
  /** Defaults to the name. */
  model?: string;
  /** 0-based priority group. */
  group: number;
  port: number;
  /** Sent as an Inline authToken. */
  token: string;
  /** The provider's chat path (pathOverride.fullPath), when not its default. */
  path?: string;
}

/** `route`: the path prefix the HTTPRoute maps to the Backend (default /model). */
export function failoverYaml(models: SimulatedModel[], options: { backend?: string; namespace?: string; route?: string } = {}): string {
  const backend = options.backend ?? 'model-failover';
  const ns = options.namespace ? `\n  namespace: ${options.namespace}` : '';
  const groups: SimulatedModel[][] = [];
  for (const m of models) {
    groups[m.group] ??= [];
    groups[m.group].push(m);
  }
  const provider = (m: SimulatedModel) => `      - name: ${m.name}
        ${m.kind ?? 'openai'}:
          model: "${m.model ?? m.name}"
          authToken:
            kind: Inline
            inline: ${m.token}
        hostOverride:
          host: 127.0.0.1
          port: ${m.port}${m.path ? `\n        pathOverride:\n          fullPath: ${m.path}` : ''}`;
  const body = groups.map((g) => `    - providers:\n${g.map(provider).join('\n')}`).join('\n');
  return `apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata:
  name: ${backend}${ns}
spec:
  type: AI
  ai:
    priorityGroups:
${body}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: ${backend}${ns}
spec:
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: ${options.route ?? '/model'}
    filters:
    - type: URLRewrite
      urlRewrite:
        path:
          type: ReplaceFullPath
          replaceFullPath: /v1/chat/completions
    backendRefs:
    - name: ${backend}
      group: gateway.kgateway.dev
      kind: Backend
`;
}
