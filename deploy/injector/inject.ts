/**
 * The injector's decisions, free of I/O: an AdmissionReview (admission.k8s.io/v1) in, an
 * AdmissionReview out, with a JSONPatch that adds the sidecar as a native sidecar (an
 * initContainers entry with restartPolicy Always) and its two volumes.
 *
 * Rules, in order (the first that applies decides; every "no" is still allowed=true: a webhook
 * that cannot patch must never block a pod):
 *   - only Pod CREATE is patched;
 *   - excluded namespaces (the injector's own, kube-*) are never patched;
 *   - opt-in: the API server calls /mutate/namespace for pods of namespaces labelled
 *     `llm-failover.dev/inject: enabled` (a pod label `llm-failover.dev/inject: "false"` opts
 *     out) and /mutate/pod for pods labelled `llm-failover.dev/inject: "true"`;
 *   - a pod that already has a container named `llm-failover-sidecar` is left alone (idempotent);
 *   - the ConfigMap is named by the `llm-failover.dev/config` annotation: without it, no patch and
 *     a warning (a sidecar without configuration would not start, and would hold the pod);
 *   - pods whose injection would not start are skipped with a warning: hostNetwork, a declared
 *     port that clashes with the sidecar's, volume names already taken, invalid names.
 *
 * Node builtins only: the injector image ships no node_modules. Types come from
 * kubernetes-models (a devDependency; `import type` is erased at run time).
 */
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IVolume } from 'kubernetes-models/v1/Volume';

export const SIDECAR_NAME = 'llm-failover-sidecar';
export const INJECT_LABEL = 'llm-failover.dev/inject';
/** Set on every injected pod; the PodMonitor selects it. */
export const SIDECAR_LABEL = 'llm-failover.dev/sidecar';
export const CONFIG_ANNOTATION = 'llm-failover.dev/config';
export const SECRETS_ANNOTATION = 'llm-failover.dev/secrets';
export const PROXY_PORT_ANNOTATION = 'llm-failover.dev/proxy-port';
export const ADMIN_PORT_ANNOTATION = 'llm-failover.dev/admin-port';
export const STATUS_ANNOTATION = 'llm-failover.dev/status';

export const CONFIG_VOLUME = 'llm-failover-config';
export const SECRETS_VOLUME = 'llm-failover-secrets';
/** Where the ConfigMap is mounted (`--config`): a folder of YAML files. */
export const CONFIG_DIR = '/etc/llm-failover';
/** Where Secrets are mounted (`--secrets-dir`): `<dir>/<secret-name>/Authorization`. Same as sidecar/config/secrets.ts. */
export const SECRETS_DIR = '/var/run/secrets/llm-failover';
export const SECRET_KEY = 'Authorization';
export const DEFAULT_PROXY_PORT = 8080;
export const DEFAULT_ADMIN_PORT = 15000;
export const ADMIN_PORT_NAME = 'llm-admin';
/** The sidecar's default drain grace (sidecar/config/plan.ts DEFAULT_SERVER.drainGraceMs). */
export const DRAIN_GRACE_SECONDS = 25;
export const DEFAULT_EXCLUDED_NAMESPACES = ['kube-system', 'kube-public', 'kube-node-lease'];

/** Ports a container of another well-known sidecar holds on loopback without declaring them. */
const UNDECLARED_PORTS: Record<string, number[]> = {
  'istio-proxy': [15000, 15001, 15004, 15006, 15008, 15020, 15021, 15053, 15090],
};

export type PullPolicy = 'IfNotPresent' | 'Always' | 'Never';

export interface SidecarSpec {
  image: string;
  /** The ConfigMap holding the Backend / HTTPRoute YAML. */
  configMap: string;
  /** Secrets named by the config's secretRefs; each is mounted at SECRETS_DIR/<name>/Authorization. */
  secrets: string[];
  proxyPort?: number;
  adminPort?: number;
  imagePullPolicy?: PullPolicy;
  /** Sets OTEL_EXPORTER_OTLP_ENDPOINT when given. */
  otlpEndpoint?: string;
}

/** The sidecar container. The example Deployment and the kustomize component carry this same container. */
export function sidecarContainer(spec: SidecarSpec): IContainer {
  const adminPort = spec.adminPort ?? DEFAULT_ADMIN_PORT;
  const proxyPort = spec.proxyPort ?? DEFAULT_PROXY_PORT;
  const env: NonNullable<IContainer['env']> = [
    { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    { name: 'POD_UID', valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } },
    { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
    { name: 'OTEL_SERVICE_NAME', value: SIDECAR_NAME },
    {
      name: 'OTEL_RESOURCE_ATTRIBUTES',
      value: `k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.uid=$(POD_UID),k8s.node.name=$(NODE_NAME),k8s.container.name=${SIDECAR_NAME}`,
    },
  ];
  if (spec.otlpEndpoint) env.push({ name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: spec.otlpEndpoint });
  const volumeMounts: NonNullable<IContainer['volumeMounts']> = [{ name: CONFIG_VOLUME, mountPath: CONFIG_DIR, readOnly: true }];
  if (spec.secrets.length > 0) volumeMounts.push({ name: SECRETS_VOLUME, mountPath: SECRETS_DIR, readOnly: true });
  const httpGet = (path: string) => ({ path, port: adminPort });
  return {
    name: SIDECAR_NAME,
    image: spec.image,
    imagePullPolicy: spec.imagePullPolicy ?? 'IfNotPresent',
    // A native sidecar: started before the app containers, stopped after them.
    restartPolicy: 'Always',
    args: [
      '--config',
      CONFIG_DIR,
      '--secrets-dir',
      SECRETS_DIR,
      // The proxy spends API keys: loopback only, reachable by the pod's own containers.
      '--listen',
      `127.0.0.1:${proxyPort}`,
      // Health and status only (nothing that spends a key): the kubelet probes it from the node.
      '--admin',
      `0.0.0.0:${adminPort}`,
    ],
    env,
    ports: [{ name: ADMIN_PORT_NAME, containerPort: adminPort, protocol: 'TCP' }],
    // The app containers start only once this passes: listening with a valid configuration.
    startupProbe: { httpGet: httpGet('/readyz'), periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 30 },
    // Ready = listening with a valid configuration and not draining; never "every provider healthy".
    readinessProbe: { httpGet: httpGet('/readyz'), periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 },
    // The process only: a provider outage must never restart the sidecar.
    livenessProbe: { httpGet: httpGet('/healthz'), periodSeconds: 10, timeoutSeconds: 3, failureThreshold: 3 },
    // Measured idle RSS ~120 MB (docs/kubernetes.md, "Resource sizing"), above the issue's targets
    // (idle < 70 MB, saturation < 120 MB); revisit when the bench measures saturation.
    resources: { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '192Mi' } },
    securityContext: {
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts,
  };
}

/** The ConfigMap as a folder, and one projected volume with every Secret as `<name>/Authorization`. */
export function sidecarVolumes(spec: SidecarSpec): IVolume[] {
  const volumes: IVolume[] = [{ name: CONFIG_VOLUME, configMap: { name: spec.configMap } }];
  if (spec.secrets.length > 0) {
    volumes.push({
      name: SECRETS_VOLUME,
      projected: {
        sources: spec.secrets.map((name) => ({ secret: { name, items: [{ key: SECRET_KEY, path: `${name}/${SECRET_KEY}` }] } })),
      },
    });
  }
  return volumes;
}

// ---- AdmissionReview ----

export type Route = 'pod' | 'namespace';

export interface InjectorOptions {
  image: string;
  /** Namespaces never patched, whatever their labels (the injector's own among them). */
  excludeNamespaces: string[];
  imagePullPolicy?: PullPolicy;
  otlpEndpoint?: string;
}

export interface JsonPatchOp {
  op: 'add';
  path: string;
  value: unknown;
}

export type Decision =
  | { inject: true; reason: string; patch: JsonPatchOp[]; warnings: string[] }
  | { inject: false; reason: string; warnings: string[] };

export interface ReviewOutcome {
  /** 200 with an AdmissionReview, or 400 with a plain-text reason. */
  status: number;
  body: string;
  contentType: string;
  uid?: string;
  namespace?: string;
  pod?: string;
  decision?: Decision;
}

interface PodLike {
  metadata?: {
    name?: string;
    generateName?: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: {
    containers?: unknown;
    initContainers?: unknown;
    ephemeralContainers?: unknown;
    volumes?: unknown;
    hostNetwork?: boolean;
    terminationGracePeriodSeconds?: number;
  };
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function isDnsSubdomain(name: string): boolean {
  return name.length > 0 && name.length <= 253 && DNS1123_SUBDOMAIN.test(name);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === 'string';

/** RFC 6901: `~` -> `~0`, `/` -> `~1` (annotation keys hold a `/`). */
export function pointerEscape(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

/**
 * Checks the review's envelope. Returns a message for a review the API server would never send
 * (answered with HTTP 400: the API server then applies failurePolicy Ignore and admits the pod
 * unpatched, and the failure shows in its logs and webhook metrics).
 */
export function malformed(raw: unknown): string | undefined {
  if (!isObject(raw)) return 'expected a JSON object (an admission.k8s.io/v1 AdmissionReview)';
  if (raw.apiVersion !== 'admission.k8s.io/v1')
    return `apiVersion must be admission.k8s.io/v1, got ${JSON.stringify(raw.apiVersion ?? null)} (set admissionReviewVersions: [v1])`;
  if (raw.kind !== 'AdmissionReview') return `kind must be AdmissionReview, got ${JSON.stringify(raw.kind ?? null)}`;
  const req = raw.request;
  if (!isObject(req)) return 'request is missing';
  if (!isString(req.uid) || req.uid === '') return 'request.uid is missing';
  if (!isObject(req.kind) || !isString(req.kind.kind)) return 'request.kind is missing';
  if (!isObject(req.resource) || !isString(req.resource.resource)) return 'request.resource is missing';
  if (!isString(req.operation)) return 'request.operation is missing';
  if (req.operation === 'CREATE' && !isObject(req.object)) return 'request.object is missing for a CREATE';
  return undefined;
}

export function review(raw: unknown, route: Route, options: InjectorOptions): ReviewOutcome {
  const problem = malformed(raw);
  if (problem) return { status: 400, body: `malformed AdmissionReview: ${problem}\n`, contentType: 'text/plain; charset=utf-8' };
  const req = (raw as { request: Record<string, unknown> }).request;
  const uid = req.uid as string;
  const namespace = isString(req.namespace) ? req.namespace : '';
  const pod = (isObject(req.object) ? req.object : {}) as PodLike;
  const decision = decide(req, pod, namespace, route, options);
  const response: Record<string, unknown> = { uid, allowed: true };
  if (decision.inject) {
    response.patchType = 'JSONPatch';
    response.patch = Buffer.from(JSON.stringify(decision.patch)).toString('base64');
  }
  if (decision.warnings.length > 0) response.warnings = decision.warnings;
  return {
    status: 200,
    body: JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response }),
    contentType: 'application/json',
    uid,
    namespace,
    pod: pod.metadata?.name || (pod.metadata?.generateName ? `${pod.metadata.generateName}*` : undefined),
    decision,
  };
}

function parsePort(value: string | undefined, fallback: number, annotation: string, problems: string[]): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < 1 || n > 65535) {
    problems.push(`annotation ${annotation} must be a port number (1-65535), got "${value}"`);
    return fallback;
  }
  return n;
}

function containersOf(list: unknown): Record<string, unknown>[] {
  return Array.isArray(list) ? list.filter(isObject) : [];
}

export function decide(req: Record<string, unknown>, pod: PodLike, namespace: string, route: Route, options: InjectorOptions): Decision {
  const no = (reason: string, warnings: string[] = []): Decision => ({ inject: false, reason, warnings });
  const kind = req.kind as { group?: string; kind: string };
  const resource = req.resource as { group?: string; resource: string };
  if (
    kind.kind !== 'Pod' ||
    (kind.group ?? '') !== '' ||
    resource.resource !== 'pods' ||
    (isString(req.subResource) && req.subResource !== '')
  ) {
    return no(`not a pod (${kind.kind}${isString(req.subResource) && req.subResource ? `/${req.subResource}` : ''})`);
  }
  if (req.operation !== 'CREATE') return no(`operation ${req.operation}: only CREATE is patched`);
  if (options.excludeNamespaces.includes(namespace)) return no(`namespace ${namespace} is excluded`);

  const labels = pod.metadata?.labels ?? {};
  const podLabel = labels[INJECT_LABEL];
  const optedIn = route === 'pod' ? podLabel === 'true' : podLabel !== 'false';
  if (!optedIn) {
    return no(route === 'pod' ? `pod not labelled ${INJECT_LABEL}: "true"` : `pod opted out with ${INJECT_LABEL}: "false"`);
  }

  const spec = pod.spec;
  if (!isObject(spec) || !Array.isArray(spec.containers))
    return no('not a valid pod: spec.containers is missing', ['llm-failover: not injected: the pod has no spec.containers']);
  const all = [...containersOf(spec.initContainers), ...containersOf(spec.containers), ...containersOf(spec.ephemeralContainers)];
  if (all.some((c) => c.name === SIDECAR_NAME)) return no('already injected');

  const annotations = pod.metadata?.annotations ?? {};
  const configMap = annotations[CONFIG_ANNOTATION]?.trim();
  if (!configMap) {
    return no('no config annotation', [
      `llm-failover: not injected: the pod opted in but has no ${CONFIG_ANNOTATION} annotation naming the ConfigMap with its Backend and HTTPRoute`,
    ]);
  }
  const problems: string[] = [];
  if (!isDnsSubdomain(configMap)) problems.push(`annotation ${CONFIG_ANNOTATION}: "${configMap}" is not a valid ConfigMap name`);
  const secretsValue = annotations[SECRETS_ANNOTATION];
  const secrets = [
    ...new Set(
      (secretsValue ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    ),
  ];
  for (const s of secrets) if (!isDnsSubdomain(s)) problems.push(`annotation ${SECRETS_ANNOTATION}: "${s}" is not a valid Secret name`);
  const proxyPort = parsePort(annotations[PROXY_PORT_ANNOTATION], DEFAULT_PROXY_PORT, PROXY_PORT_ANNOTATION, problems);
  const adminPort = parsePort(annotations[ADMIN_PORT_ANNOTATION], DEFAULT_ADMIN_PORT, ADMIN_PORT_ANNOTATION, problems);
  if (proxyPort === adminPort) problems.push(`the proxy port and the admin port are both ${proxyPort}`);
  if (spec.hostNetwork === true)
    problems.push('the pod uses hostNetwork: the sidecar ports would clash with every other such pod on the node');

  const taken = new Map<number, string>();
  for (const c of all) {
    for (const p of containersOf(c.ports)) if (typeof p.containerPort === 'number') taken.set(p.containerPort, String(c.name));
    for (const p of UNDECLARED_PORTS[String(c.name)] ?? []) taken.set(p, String(c.name));
  }
  for (const [what, port, annotation] of [
    ['proxy', proxyPort, PROXY_PORT_ANNOTATION],
    ['admin', adminPort, ADMIN_PORT_ANNOTATION],
  ] as const) {
    const holder = taken.get(port);
    if (holder)
      problems.push(`container ${holder} uses port ${port}, the sidecar's ${what} port: choose another with the ${annotation} annotation`);
  }
  const volumes = containersOf(spec.volumes);
  for (const name of [CONFIG_VOLUME, SECRETS_VOLUME])
    if (volumes.some((v) => v.name === name)) problems.push(`the pod already has a volume named ${name}`);
  if (problems.length > 0)
    return no(
      'cannot inject',
      problems.map((p) => `llm-failover: not injected: ${p}`),
    );

  const warnings: string[] = [];
  if (secrets.length === 0) {
    warnings.push(
      `llm-failover: no ${SECRETS_ANNOTATION} annotation: a secretRef in ConfigMap ${configMap} would not resolve, and the sidecar would not start`,
    );
  }
  const grace = spec.terminationGracePeriodSeconds;
  if (typeof grace === 'number' && grace <= DRAIN_GRACE_SECONDS) {
    warnings.push(
      `llm-failover: terminationGracePeriodSeconds ${grace} leaves the sidecar less than its ${DRAIN_GRACE_SECONDS} s drain after the app stops`,
    );
  }

  const sidecar: SidecarSpec = {
    image: options.image,
    configMap,
    secrets,
    proxyPort,
    adminPort,
    imagePullPolicy: options.imagePullPolicy,
    otlpEndpoint: options.otlpEndpoint,
  };
  return { inject: true, reason: 'injected', patch: buildPatch(pod, sidecar), warnings };
}

/** `add` of the whole array when the pod has none, `/-` appends otherwise; maps likewise. */
export function buildPatch(pod: PodLike, sidecar: SidecarSpec): JsonPatchOp[] {
  const ops: JsonPatchOp[] = [];
  const spec = pod.spec ?? {};
  // Appended: other init containers (a mesh's, say) run first, and the app containers start after.
  if (Array.isArray(spec.initContainers)) ops.push({ op: 'add', path: '/spec/initContainers/-', value: sidecarContainer(sidecar) });
  else ops.push({ op: 'add', path: '/spec/initContainers', value: [sidecarContainer(sidecar)] });
  const volumes = sidecarVolumes(sidecar);
  if (Array.isArray(spec.volumes)) for (const v of volumes) ops.push({ op: 'add', path: '/spec/volumes/-', value: v });
  else ops.push({ op: 'add', path: '/spec/volumes', value: volumes });

  if (!isObject(pod.metadata)) ops.push({ op: 'add', path: '/metadata', value: {} });
  const addEntries = (field: 'labels' | 'annotations', entries: Record<string, string>) => {
    if (!isObject(pod.metadata?.[field])) ops.push({ op: 'add', path: `/metadata/${field}`, value: entries });
    else for (const [k, v] of Object.entries(entries)) ops.push({ op: 'add', path: `/metadata/${field}/${pointerEscape(k)}`, value: v });
  };
  addEntries('labels', { [SIDECAR_LABEL]: 'true' });
  const annotations: Record<string, string> = { [STATUS_ANNOTATION]: 'injected' };
  // Annotation-based Prometheus scraping, unless the pod already scrapes its own metrics that way.
  if (pod.metadata?.annotations?.['prometheus.io/scrape'] === undefined) {
    Object.assign(annotations, {
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': String(sidecar.adminPort ?? DEFAULT_ADMIN_PORT),
      'prometheus.io/path': '/metrics',
    });
  }
  addEntries('annotations', annotations);
  return ops;
}
