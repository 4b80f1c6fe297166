/**
 * Every manifest under deploy/: parsed, validated against the Kubernetes schemas
 * (kubernetes-models; Prometheus Operator and cert-manager models for their kinds), and held to
 * what it is for: the example Deployment runs the sidecar the injector would add, the sidecar
 * starts from exactly those args on a kubelet-style ConfigMap and Secret layout, the webhooks
 * select each pod at most once, the certificate names the Service, the kustomize component
 * patches what it should and nothing else.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import t from 'tap';
import { unlessTool } from './support/tools.ts';
import { stringify } from 'yaml';
import {
  CONFIG_DIR,
  DEFAULT_ADMIN_PORT,
  DEFAULT_PROXY_PORT,
  DRAIN_GRACE_SECONDS,
  SECRET_KEY,
  SECRETS_DIR,
  sidecarContainer,
  sidecarVolumes,
} from '../deploy/injector/inject.ts';
import { ROUTES } from '../deploy/injector/server.ts';
import { loadPlan } from '../sidecar/config/load.ts';
import { DEFAULT_SERVER } from '../sidecar/config/plan.ts';
import { DEFAULT_SECRETS_DIR, SECRET_KEY as SIDECAR_SECRET_KEY } from '../sidecar/config/secrets.ts';
import {
  type Any,
  bytes,
  DEPLOY,
  entrypointOf,
  find,
  flags,
  hasKubectl,
  kubeletVolume,
  kustomize,
  type Obj,
  parseYamlText,
  ROOT,
  readYaml,
  runSidecar,
  schemaErrors,
  selects,
  sidecarPodProblems,
  yamlFiles,
} from './fixtures/deploy/k8s.ts';

const FILES = yamlFiles(DEPLOY);
const rel = (p: string) => relative(ROOT, p);
const EXAMPLE = readYaml(join(DEPLOY, 'kubernetes/deployment.yaml'));
const APP: Any = find(EXAMPLE, 'Deployment', 'llm-demo');
const POD_SPEC = APP.spec.template.spec;
const SIDECAR: Any = POD_SPEC.initContainers.find((c: Any) => c.name === 'llm-failover-sidecar');
const CONFIGMAP: Any = find(readYaml(join(DEPLOY, 'kubernetes/configmap.yaml')), 'ConfigMap', 'llm-failover-config');
const INJECTOR_DOCS = readYaml(join(DEPLOY, 'injector/manifests/injector.yaml'));
const WEBHOOK: Any = find(readYaml(join(DEPLOY, 'injector/manifests/webhook.yaml')), 'MutatingWebhookConfiguration');
const POLICY_DOCS = readYaml(join(DEPLOY, 'injector/policy/mutating-admission-policy.yaml'));
const SECRETS_ENV = { OPENAI_SECRET: 'x', ANTHROPIC_SECRET: 'y' };

t.test('every YAML document under deploy/ parses and is valid for its kind', async (t) => {
  t.ok(FILES.length >= 10, `${FILES.length} YAML files`);
  // Patch files of kustomizations are partial objects by design: validated after the build (below).
  const patchFiles = new Set(
    FILES.flatMap((f) =>
      readYaml(f)
        .filter((d) => String(d.apiVersion).startsWith('kustomize.config.k8s.io/'))
        .flatMap((d) => ((d.patches as Any[]) ?? []).map((p) => join(f, '..', p.path))),
    ),
  );
  let validated = 0;
  for (const file of FILES) {
    const docs = readYaml(file);
    t.ok(docs.length > 0, `${rel(file)}: parses (multi-document)`);
    for (const doc of docs) {
      if (typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string') continue; // not a Kubernetes object (e.g. a collector's own config)
      const label = `${rel(file)}: ${doc.kind}/${(doc.metadata as Obj | undefined)?.name ?? '(kustomization)'}`;
      const errors = schemaErrors(doc);
      if (patchFiles.has(file)) {
        t.not(errors, 'unknown', `${label}: a patch of a known kind (built and validated in the kustomize tests)`);
        continue;
      }
      if (errors === 'unknown') {
        // Kinds no model package knows: the basic shape, checked here.
        if (doc.apiVersion.startsWith('kustomize.config.k8s.io/')) {
          t.ok(['Kustomization', 'Component'].includes(doc.kind), `${label}: a Kustomization or Component`);
          const dir = join(file, '..');
          const paths = [...((doc.resources as string[]) ?? []), ...((doc.patches as Any[]) ?? []).map((p) => p.path).filter(Boolean)];
          for (const p of paths) t.ok(FILES.includes(join(dir, p)) || readYaml(join(dir, p)), `${label}: ${p} exists`);
        } else {
          t.match(doc.apiVersion, /^[a-z0-9.-]+\/v\d+(alpha\d+|beta\d+)?$/, `${label}: apiVersion group/version (a CRD kind)`);
          t.ok((doc.metadata as Obj | undefined)?.name, `${label}: metadata.name`);
        }
        continue;
      }
      t.equal(errors, undefined, `${label}: valid against the schema`);
      validated++;
    }
  }
  t.ok(validated >= 15, `${validated} objects validated against the Kubernetes schemas`);
  t.match(
    schemaErrors({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { template: {} } }),
    /selector/,
    'the validator rejects a Deployment without a selector',
  );
  t.match(
    schemaErrors({ ...SIDECAR_POD(), spec: { containers: [{ name: 'a', ports: [{ containerPort: '15000' }] }] } }),
    /containerPort/,
    'and a string containerPort',
  );
});

function SIDECAR_POD(): Obj {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' } };
}

t.test("the ConfigMap's Backend and HTTPRoute are the seed's, and load with the sidecar's own loader", async (t) => {
  const keys = Object.keys(CONFIGMAP.data);
  t.ok(
    keys.every((k) => /\.ya?ml$/.test(k)),
    'every key is a .yaml file in the mounted folder',
  );
  const sources = keys.map((k) => ({ name: `${CONFIGMAP.metadata.name}/${k}`, text: CONFIGMAP.data[k] }));
  const plan = loadPlan(sources, { env: SECRETS_ENV, secretsDir: '/nonexistent' });
  t.equal(plan.backends.length, 1);
  t.same(
    plan.backends[0].groups.map((g) => g.map((m) => `${m.provider}:${m.model}`)),
    [
      ['openai:gpt-3.5-turbo', 'anthropic:claude-3-5-haiku-latest'],
      ['openai:gpt-4.0-turbo', 'anthropic:claude-opus-4-1'],
    ],
  );
  t.ok(
    plan.routes.some((r) => r.match.value === '/model'),
    'the HTTPRoute routes /model',
  );
  const seed = parseYamlText(readFileSync(join(ROOT, 'test/fixtures/seed-cost.yaml'), 'utf8'), 'seed-cost.yaml');
  t.same(
    keys.flatMap((k) => parseYamlText(CONFIGMAP.data[k], k)),
    seed,
    'the same documents as the seed page (test/fixtures/seed-cost.yaml)',
  );
  const secretNames = plan.backends.flatMap((b) => b.groups.flat()).map((m) => (m.auth.kind === 'static' ? m.auth.secretName : undefined));
  const mounted = POD_SPEC.volumes.find((v: Any) => v.name === 'llm-failover-secrets').projected.sources.map((s: Any) => s.secret.name);
  t.same([...new Set(secretNames)].sort(), [...mounted].sort(), 'every secretRef of the config is mounted, and nothing else');
  const secrets = readYaml(join(DEPLOY, 'kubernetes/secret.example.yaml'));
  t.same(secrets.map((s: Any) => s.metadata.name).sort(), [...mounted].sort(), 'secret.example.yaml shows those Secrets');
  for (const s of secrets as Any[])
    t.same(Object.keys(s.stringData), ['Authorization'], `${s.metadata.name}: the one key the sidecar reads`);
});

t.test('the example Deployment: a native sidecar, exactly as the injector adds it', async (t) => {
  t.same(sidecarPodProblems(POD_SPEC), [], 'native sidecar, probes, mounts, security, resources, telemetry env');
  const secrets = POD_SPEC.volumes.find((v: Any) => v.name === 'llm-failover-secrets').projected.sources.map((s: Any) => s.secret.name);
  const spec = { image: SIDECAR.image, configMap: CONFIGMAP.metadata.name, secrets };
  t.same(SIDECAR, sidecarContainer(spec), 'the same container as the injector');
  t.same(
    POD_SPEC.volumes.filter((v: Any) => v.name.startsWith('llm-failover-')),
    sidecarVolumes(spec),
    'the same volumes',
  );
  t.equal(POD_SPEC.initContainers.at(-1), SIDECAR);

  const f = flags(SIDECAR.args);
  t.equal(f.listen, DEFAULT_SERVER.listen, "--listen is the sidecar's own default (loopback)");
  t.equal(Number(f.admin.split(':')[1]), Number(DEFAULT_SERVER.admin.split(':')[1]), 'the admin port is the default 15000');
  const app = POD_SPEC.containers.find((c: Any) => c.name === 'app');
  t.equal(app.env.find((e: Any) => e.name === 'OPENAI_BASE_URL').value, `http://${f.listen}/v1`, 'the app points at the sidecar');
  t.match(app.args.join(' '), `http://${f.listen}/model`);

  const plan = loadPlan(
    Object.entries(CONFIGMAP.data as Record<string, string>).map(([name, text]) => ({ name, text })),
    { env: SECRETS_ENV, secretsDir: '/nonexistent' },
  );
  t.ok(
    POD_SPEC.terminationGracePeriodSeconds > plan.server.drainGraceMs / 1000,
    `terminationGracePeriodSeconds ${POD_SPEC.terminationGracePeriodSeconds} > the sidecar's drain grace (${plan.server.drainGraceMs / 1000} s)`,
  );
  const start = SIDECAR.startupProbe;
  t.ok(start.periodSeconds * start.failureThreshold >= 10, 'the startup probe waits long enough for Node to start');
  t.equal(SIDECAR.readinessProbe.httpGet.path, '/readyz', 'ready = listening with a valid config (never "every provider healthy")');

  const annotations = APP.spec.template.metadata.annotations;
  t.same(
    annotations,
    { 'prometheus.io/scrape': 'true', 'prometheus.io/port': f.admin.split(':')[1], 'prometheus.io/path': '/metrics' },
    'Prometheus annotations on the admin port',
  );
  const podMonitor: Any = find(readYaml(join(DEPLOY, 'kubernetes/podmonitor.yaml')), 'PodMonitor');
  t.ok(selects(podMonitor.spec.selector, APP.spec.template.metadata.labels), 'the PodMonitor selects the pod');
  t.same(
    podMonitor.spec.podMetricsEndpoints.map((e: Any) => [e.port, e.path]),
    [['llm-admin', '/metrics']],
    'on the named admin port',
  );
  t.ok(podMonitor.spec.namespaceSelector.any, 'in every namespace (injected pods live anywhere)');

  const ns: Any = find(readYaml(join(DEPLOY, 'kubernetes/namespace.yaml')), 'Namespace');
  t.equal(
    ns.metadata.labels['pod-security.kubernetes.io/enforce'],
    'restricted',
    'the example namespace enforces the restricted Pod Security Standard',
  );
  for (const c of [...POD_SPEC.initContainers, ...POD_SPEC.containers]) {
    const sc = { ...POD_SPEC.securityContext, ...c.securityContext };
    t.ok(
      sc.runAsNonRoot &&
        sc.allowPrivilegeEscalation === false &&
        sc.capabilities?.drop?.includes('ALL') &&
        sc.seccompProfile?.type === 'RuntimeDefault',
      `${c.name} meets "restricted"`,
    );
  }
});

t.test("the injector's constants are the sidecar's", async (t) => {
  t.equal(SECRETS_DIR, DEFAULT_SECRETS_DIR, 'secrets dir');
  t.equal(SECRET_KEY, SIDECAR_SECRET_KEY, 'secret key');
  t.equal(DRAIN_GRACE_SECONDS * 1000, DEFAULT_SERVER.drainGraceMs, 'drain grace');
  t.equal(`127.0.0.1:${DEFAULT_PROXY_PORT}`, DEFAULT_SERVER.listen, 'proxy port');
  t.equal(Number(DEFAULT_SERVER.admin.split(':')[1]), DEFAULT_ADMIN_PORT, 'admin port');
  t.equal(flags(SIDECAR.args).config, CONFIG_DIR);
});

t.test("the sidecar starts from the example container's args on a kubelet-style ConfigMap and Secret layout", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'llm-pod-'));
  const configDir = join(dir, 'config');
  const secretsDir = join(dir, 'secrets');
  // The ConfigMap as the kubelet mounts it, plus one test-only file: no active probes, so the
  // test sends nothing to the real providers.
  const noProbes = stringify({
    apiVersion: 'llm-failover.dev/v1alpha1',
    kind: 'FailoverPolicy',
    metadata: { name: 'test-no-probes' },
    spec: { targetRefs: [{ kind: 'Backend', name: 'model-failover' }], health: { probe: { kind: 'none' } } },
  });
  kubeletVolume(configDir, { ...CONFIGMAP.data, 'zz-test-no-probes.yaml': noProbes });
  const projected = POD_SPEC.volumes.find((v: Any) => v.name === 'llm-failover-secrets').projected.sources;
  kubeletVolume(secretsDir, Object.fromEntries(projected.map((s: Any) => [s.secret.items[0].path, `Bearer sk-test-${s.secret.name}\n`])));

  const f = flags(SIDECAR.args);
  const args = SIDECAR.args.map((a: string) => (a === f.config ? configDir : a === f['secrets-dir'] ? secretsDir : a));
  const entrypoint = entrypointOf(readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8'), 'sidecar');
  const env = Object.fromEntries(SIDECAR.env.filter((e: Any) => e.value !== undefined).map((e: Any) => [e.name, e.value]));
  const sidecar = await runSidecar(entrypoint, args, env);
  t.teardown(() => sidecar.stop());
  t.ok(sidecar.proxyUrl.startsWith('http://127.0.0.1:'), 'the proxy listens on loopback');

  for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
    const res = await fetch(`${sidecar.adminUrl}${SIDECAR[probe].httpGet.path}`);
    t.equal(res.status, 200, `${probe} (${SIDECAR[probe].httpGet.path}) passes`);
  }
  const status = (await (await fetch(`${sidecar.adminUrl}/status`)).json()) as Any;
  t.same(
    status.backends[0].groups.map((g: Any) => g.models.map((m: Any) => m.name)),
    [
      ['openai-gpt-3.5-turbo', 'claude-haiku'],
      ['openai-gpt-4.0-turbo', 'claude-opus'],
    ],
    'the Backend of the ConfigMap is served',
  );
  const metrics = await fetch(`${sidecar.adminUrl}${APP.spec.template.metadata.annotations['prometheus.io/path']}`);
  t.equal(metrics.status, 200, 'the scrape path of the annotations and the PodMonitor serves metrics');
  t.match(await metrics.text(), /^# HELP llm_failover_/m);
  t.notOk(sidecar.output().includes('sk-test-'), 'no key in the logs');

  const limit = bytes(SIDECAR.resources.limits.memory);
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${sidecar.proc.pid}/status`, 'utf8'))?.[1]) * 1024;
  t.ok(rss > 0 && rss < limit, `idle RSS ${Math.round(rss / 2 ** 20)} MiB is below the ${SIDECAR.resources.limits.memory} limit`);

  t.equal(await sidecar.stop(), 0, 'SIGTERM (what the kubelet sends once the app has exited): drained, exit 0');
});

t.test('the injector manifests: fail-open webhooks that select each pod at most once', async (t) => {
  const deployment: Any = find(INJECTOR_DOCS, 'Deployment', 'llm-failover-injector');
  const service: Any = find(INJECTOR_DOCS, 'Service', 'llm-failover-injector');
  const ownNamespace = deployment.metadata.namespace;
  t.equal(WEBHOOK.webhooks.length, 2);
  for (const w of WEBHOOK.webhooks) {
    t.same(w.admissionReviewVersions, ['v1'], `${w.name}: AdmissionReview v1`);
    t.equal(w.sideEffects, 'None', `${w.name}: sideEffects None`);
    t.equal(w.failurePolicy, 'Ignore', `${w.name}: fail-open`);
    t.ok(w.timeoutSeconds >= 1 && w.timeoutSeconds <= 5, `${w.name}: timeoutSeconds ${w.timeoutSeconds}`);
    t.same(
      w.rules,
      [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }],
      `${w.name}: pod CREATE only`,
    );
    t.equal(w.clientConfig.service.name, service.metadata.name, `${w.name}: the Service`);
    t.equal(w.clientConfig.service.namespace, service.metadata.namespace);
    t.ok(
      service.spec.ports.some((p: Any) => p.port === w.clientConfig.service.port),
      `${w.name}: the Service port`,
    );
    t.ok(w.clientConfig.service.path in ROUTES, `${w.name}: ${w.clientConfig.service.path} is served by server.ts`);
    t.notOk(
      selects(w.namespaceSelector, { 'kubernetes.io/metadata.name': ownNamespace, 'llm-failover.dev/inject': 'enabled' }),
      `${w.name}: never its own namespace`,
    );
  }
  const port = service.spec.ports[0];
  const container = deployment.spec.template.spec.containers[0];
  t.ok(
    container.ports.some((p: Any) => p.name === port.targetPort),
    'the Service targets the container port',
  );
  t.equal(
    flags(container.args).listen.split(':')[1],
    String(container.ports.find((p: Any) => p.name === port.targetPort).containerPort),
    '--listen on that port',
  );
  t.equal(flags(container.args).image, SIDECAR.image, 'injects the same image as the example');
  const tls = deployment.spec.template.spec.volumes.find((v: Any) => v.secret);
  const mount = container.volumeMounts.find((m: Any) => m.name === tls.name);
  t.ok(
    flags(container.args).cert.startsWith(`${mount.mountPath}/`) && flags(container.args).key.startsWith(`${mount.mountPath}/`),
    '--cert and --key are in the TLS Secret mount',
  );
  t.ok(
    container.env.some((e: Any) => e.name === 'POD_NAMESPACE' && e.valueFrom.fieldRef.fieldPath === 'metadata.namespace'),
    'POD_NAMESPACE: its own namespace is excluded',
  );
  t.equal(container.readinessProbe.httpGet.scheme, 'HTTPS');
  t.equal(container.readinessProbe.httpGet.path, '/healthz');
  t.same(
    sidecarPodProblems({ ...deployment.spec.template.spec, initContainers: [] }).slice(0, 1),
    ['expected exactly one llm-failover-sidecar container, found 0'],
    'the injector itself has no sidecar',
  );
  t.equal(deployment.spec.template.spec.automountServiceAccountToken, false, 'no API token: it needs no RBAC');

  const certificate: Any = find(readYaml(join(DEPLOY, 'injector/manifests/cert-manager.yaml')), 'Certificate');
  t.equal(certificate.spec.secretName, tls.secret.secretName, 'cert-manager writes the Secret the injector mounts');
  t.ok(
    certificate.spec.dnsNames.includes(`${service.metadata.name}.${service.metadata.namespace}.svc`),
    'for the DNS name the API server calls',
  );
  t.equal(
    WEBHOOK.metadata.annotations['cert-manager.io/inject-ca-from'],
    `${certificate.metadata.namespace}/${certificate.metadata.name}`,
    'cainjector fills the caBundle',
  );
  t.equal(certificate.spec.issuerRef.name, find(readYaml(join(DEPLOY, 'injector/manifests/cert-manager.yaml')), 'Issuer').metadata.name);

  // Which webhook the API server calls, for each opt-in combination.
  const nsLabels = (name: string, inject?: string) => ({
    'kubernetes.io/metadata.name': name,
    ...(inject ? { 'llm-failover.dev/inject': inject } : {}),
  });
  const podLabels = (inject?: string) => ({ app: 'shop', ...(inject ? { 'llm-failover.dev/inject': inject } : {}) });
  const called = (ns: Record<string, string>, pod: Record<string, string>) =>
    WEBHOOK.webhooks
      .filter((w: Any) => selects(w.namespaceSelector, ns) && selects(w.objectSelector, pod))
      .map((w: Any) => w.clientConfig.service.path);
  t.same(called(nsLabels('shop'), podLabels()), [], 'neither opted in: not called');
  t.same(called(nsLabels('shop', 'enabled'), podLabels()), ['/mutate/namespace'], 'namespace opted in');
  t.same(called(nsLabels('shop', 'enabled'), podLabels('true')), ['/mutate/namespace'], 'both: called once');
  t.same(called(nsLabels('shop', 'enabled'), podLabels('false')), [], 'pod opted out');
  t.same(called(nsLabels('shop'), podLabels('true')), ['/mutate/pod'], 'pod opted in');
  t.same(called(nsLabels('kube-system', 'enabled'), podLabels('true')), [], 'kube-system never');
  t.same(called(nsLabels(ownNamespace), podLabels('true')), [], 'its own namespace never');

  const policy: Any = find(POLICY_DOCS, 'MutatingAdmissionPolicy');
  const bindings = POLICY_DOCS.filter((d) => d.kind === 'MutatingAdmissionPolicyBinding') as Any[];
  const bound = (ns: Record<string, string>, pod: Record<string, string>) =>
    bindings.filter(
      (b) =>
        b.spec.policyName === policy.metadata.name &&
        selects(b.spec.matchResources.namespaceSelector, ns) &&
        selects(b.spec.matchResources.objectSelector, pod),
    ).length;
  for (const [ns, pod] of [
    [nsLabels('shop'), podLabels()],
    [nsLabels('shop', 'enabled'), podLabels()],
    [nsLabels('shop', 'enabled'), podLabels('true')],
    [nsLabels('shop', 'enabled'), podLabels('false')],
    [nsLabels('shop'), podLabels('true')],
    [nsLabels(ownNamespace), podLabels('true')],
  ]) {
    t.equal(bound(ns, pod), called(ns, pod).length, `the policy bindings select like the webhooks: ${JSON.stringify([ns, pod])}`);
  }
});

t.test('the MutatingAdmissionPolicy adds the same sidecar (as far as reading its CEL can tell)', async (t) => {
  const policy: Any = find(POLICY_DOCS, 'MutatingAdmissionPolicy');
  t.equal(policy.apiVersion, 'admissionregistration.k8s.io/v1', 'GA API (Kubernetes 1.36)');
  t.equal(policy.spec.failurePolicy, 'Ignore', 'fail-open');
  t.same(policy.spec.matchConstraints.resourceRules, [
    { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] },
  ]);
  const norm = (s: string) =>
    s
      .replace(/\s+/g, ' ')
      .replace(/([[{(]) /g, '$1')
      .replace(/ ([\]})])/g, '$1');
  const cel = norm(
    [...policy.spec.matchConditions, ...policy.spec.variables, policy.spec.mutations[0].applyConfiguration]
      .map((c: Any) => c.expression)
      .join('\n'),
  );
  for (const expr of [...policy.spec.matchConditions, ...policy.spec.variables, policy.spec.mutations[0].applyConfiguration].map(
    (c: Any) => c.expression as string,
  )) {
    const stack: string[] = [];
    const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
    for (const ch of expr.replace(/'[^']*'/g, "''")) {
      if ('([{'.includes(ch)) stack.push(ch);
      else if (ch in pairs && stack.pop() !== pairs[ch]) stack.push('!');
    }
    t.same(stack, [], `balanced brackets: ${norm(expr).slice(0, 50)}...`);
  }
  const c = sidecarContainer({ image: SIDECAR.image, configMap: 'x', secrets: ['y'] });
  const has = (what: string, label: string) => t.ok(cel.includes(norm(what)), label);
  has(`variables.image`, 'the image variable');
  t.ok(
    policy.spec.variables.some((v: Any) => v.name === 'image' && v.expression === `'${c.image}'`),
    'the image',
  );
  has(`args: [${c.args!.map((a) => `'${a}'`).join(', ')}]`, 'the same args, in order');
  for (const e of c.env!) {
    if (e.value !== undefined) has(`{name: '${e.name}', value: '${e.value}'}`, `env ${e.name}`);
    else
      has(
        `{name: '${e.name}', valueFrom: Object.spec.initContainers.env.valueFrom{ fieldRef: Object.spec.initContainers.env.valueFrom.fieldRef{fieldPath: '${e.valueFrom!.fieldRef!.fieldPath}'}}}`,
        `env ${e.name}`,
      );
  }
  for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe'] as const) {
    const p = c[probe]!;
    has(
      `${probe}: Object.spec.initContainers.${probe}{ httpGet: Object.spec.initContainers.${probe}.httpGet{path: '${p.httpGet!.path}', port: ${p.httpGet!.port}}, periodSeconds: ${p.periodSeconds}, timeoutSeconds: ${p.timeoutSeconds}, failureThreshold: ${p.failureThreshold}}`,
      probe,
    );
  }
  has(
    `requests: {'cpu': '${c.resources!.requests!.cpu}', 'memory': '${c.resources!.requests!.memory}'}, limits: {'memory': '${c.resources!.limits!.memory}'}`,
    'resources',
  );
  has(
    `ports: [Object.spec.initContainers.ports{name: '${c.ports![0].name}', containerPort: ${c.ports![0].containerPort}, protocol: 'TCP'}]`,
    'the admin port',
  );
  for (const setting of [
    'runAsNonRoot: true',
    'readOnlyRootFilesystem: true',
    'allowPrivilegeEscalation: false',
    "drop: ['ALL']",
    "type: 'RuntimeDefault'",
    "restartPolicy: 'Always'",
  ]) {
    has(setting, setting);
  }
  t.ok(
    cel.includes(`path: s + '/${SECRET_KEY}'`) && cel.includes(`mountPath: '${SECRETS_DIR}'`) && cel.includes(`mountPath: '${CONFIG_DIR}'`),
    'the same mounts',
  );
});

t.test('the kustomize component: the same sidecar, on labelled Deployments only', async (t) => {
  const dir = join(DEPLOY, 'kustomize/sidecar');
  const component: Any = readYaml(join(dir, 'kustomization.yaml'))[0];
  t.equal(component.kind, 'Component');
  const patch: Any = readYaml(join(dir, component.patches[0].path))[0];
  const podSpec = patch.spec.template.spec;
  const secrets = podSpec.volumes.find((v: Any) => v.name === 'llm-failover-secrets').projected.sources.map((s: Any) => s.secret.name);
  const spec = { image: podSpec.initContainers[0].image, configMap: 'llm-failover-config', secrets };
  t.same(podSpec.initContainers, [sidecarContainer(spec)], 'the same container as the injector');
  t.same(podSpec.volumes, sidecarVolumes(spec), 'the same volumes');
  t.equal(patch.spec.template.metadata.labels['llm-failover.dev/sidecar'], 'true', 'the PodMonitor label');

  await t.test(
    'built into a Deployment by kubectl kustomize',
    { skip: unlessTool(hasKubectl, 'kubectl (with its built-in kustomize) is not installed') },
    async (t) => {
      const work = mkdtempSync(join(tmpdir(), 'llm-kustomize-'));
      const app = (name: string, labelled: boolean) => ({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name, labels: labelled ? { 'llm-failover.dev/sidecar': 'true' } : {} },
        spec: {
          selector: { matchLabels: { app: name } },
          template: {
            metadata: { labels: { app: name } },
            spec: {
              initContainers: [{ name: 'migrate', image: 'registry.example.com/migrate:1' }],
              containers: [{ name: 'app', image: 'registry.example.com/app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
              volumes: [{ name: 'data', emptyDir: {} }],
            },
          },
        },
      });
      writeFileSync(join(work, 'apps.yaml'), [app('with', true), app('without', false)].map((d) => stringify(d)).join('---\n'));
      writeFileSync(
        join(work, 'kustomization.yaml'),
        stringify({
          apiVersion: 'kustomize.config.k8s.io/v1beta1',
          kind: 'Kustomization',
          resources: ['apps.yaml'],
          components: [relative(work, dir)],
          images: [{ name: 'registry.example.com/llm-failover-sidecar', newName: 'ghcr.io/acme/llm-failover-sidecar', newTag: '1.2.3' }],
        }),
      );
      const out = kustomize(work);
      const withSidecar: Any = find(out, 'Deployment', 'with');
      const without: Any = find(out, 'Deployment', 'without');
      t.equal(schemaErrors(withSidecar), undefined, 'the patched Deployment is valid');
      const spec2 = withSidecar.spec.template.spec;
      t.same(sidecarPodProblems(spec2), [], 'native sidecar, probes, mounts, security, resources, telemetry env');
      t.same(
        spec2.initContainers.map((c: Any) => c.name).sort(),
        ['llm-failover-sidecar', 'migrate'],
        "the Deployment's own init container is kept",
      );
      t.same(spec2.volumes.map((v: Any) => v.name).sort(), ['data', 'llm-failover-config', 'llm-failover-secrets'], 'and its volumes');
      t.same(spec2.containers, app('with', true).spec.template.spec.containers, 'the app container is untouched');
      t.equal(
        spec2.initContainers.find((c: Any) => c.name === 'llm-failover-sidecar').image,
        'ghcr.io/acme/llm-failover-sidecar:1.2.3',
        'kustomize images: sets the sidecar image',
      );
      t.same(without, app('without', false), 'an unlabelled Deployment is untouched');
    },
  );
});

t.test(
  'the kustomizations build with kubectl kustomize',
  { skip: unlessTool(hasKubectl, 'kubectl (with its built-in kustomize) is not installed') },
  async (t) => {
    for (const dir of ['kubernetes', 'injector/manifests']) {
      const out = kustomize(join(DEPLOY, dir));
      t.ok(out.length >= 3, `deploy/${dir}: ${out.length} objects`);
      for (const doc of out) t.equal(schemaErrors(doc), undefined, `deploy/${dir}: ${doc.kind}/${(doc.metadata as Obj).name}`);
    }
    const demo = kustomize(join(DEPLOY, 'kubernetes'));
    t.ok(
      demo.filter((d) => d.kind !== 'Namespace').every((d) => (d.metadata as Obj).namespace === 'llm-demo'),
      'the example lands in llm-demo',
    );
  },
);
