/**
 * The injector as the API server sees it: HTTPS on loopback with a certificate from
 * deploy/injector/gen-certs.sh, verified for the webhook Service's DNS name; AdmissionReviews
 * shaped as the API server sends them; the returned JSONPatch applied with a JSON-patch library
 * and the resulting pod validated against the Kubernetes schema.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jsonpatch from 'fast-json-patch';
import t from 'tap';
import { ADMIN_PORT_ANNOTATION, CONFIG_ANNOTATION, PROXY_PORT_ANNOTATION, SECRETS_ANNOTATION } from '../deploy/injector/inject.ts';
import { type Injector, startInjector } from '../deploy/injector/server.ts';
import { type Any, DEPLOY, flags, NODE, ROOT, schemaErrors, sidecarPodProblems } from './fixtures/deploy/k8s.ts';

const SERVICE_DNS = 'llm-failover-injector.llm-failover-system.svc';
const IMAGE = 'registry.example.com/llm-failover-sidecar:0.1.0';

function genCerts(dir: string): { ca: string; cert: string; key: string } {
  const r = spawnSync('bash', [join(DEPLOY, 'injector/gen-certs.sh'), '--out', dir], { encoding: 'utf8', timeout: 20_000 });
  if (r.status !== 0) throw new Error(`gen-certs.sh failed: ${r.stderr}`);
  return { ca: join(dir, 'ca.crt'), cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') };
}

const tmp = mkdtempSync(join(tmpdir(), 'llm-injector-'));
const certs = genCerts(join(tmp, 'a'));
const CA = readFileSync(certs.ca, 'utf8');

interface Reply {
  status: number;
  type: string;
  text: string;
  json: Any;
  peerFingerprint: string;
}

function call(base: string, path: string, body: unknown, options: { method?: string; ca?: string } = {}): Promise<Reply> {
  const url = new URL(path, base);
  const payload = typeof body === 'string' ? body : body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: options.method ?? 'POST',
        // What the API server does: trust the caBundle, check the Service's DNS name.
        ca: options.ca ?? CA,
        servername: SERVICE_DNS,
        agent: false,
        headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        timeout: 5_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Any;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          const fingerprint = (res.socket as TLSSocket).getPeerCertificate?.().fingerprint256 ?? '';
          resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), text, json, peerFingerprint: fingerprint });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(payload);
  });
}

/** A pod as the ReplicaSet controller creates it, after defaulting and the ServiceAccount admission plugin. */
function replicaSetPod(
  options: {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    withVolumes?: boolean;
    initContainers?: Any[];
    ports?: number[];
  } = {},
): Any {
  const withVolumes = options.withVolumes ?? true;
  const app: Any = {
    name: 'shop',
    image: 'registry.example.com/shop:2.3.1',
    imagePullPolicy: 'IfNotPresent',
    ports: (options.ports ?? [3000]).map((p) => ({ containerPort: p, protocol: 'TCP' })),
    env: [{ name: 'OPENAI_BASE_URL', value: 'http://127.0.0.1:8080/v1' }],
    resources: { requests: { cpu: '100m', memory: '128Mi' } },
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
  };
  if (withVolumes)
    app.volumeMounts = [{ name: 'kube-api-access-x7k2p', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }];
  const pod: Any = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'shop-6d8f9c7b5-',
      namespace: 'shop',
      labels: { 'app.kubernetes.io/name': 'shop', 'pod-template-hash': '6d8f9c7b5', ...options.labels },
      annotations: options.annotations,
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: 'shop-6d8f9c7b5',
          uid: randomUUID(),
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      containers: [app],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default',
      securityContext: {},
      schedulerName: 'default-scheduler',
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
      priority: 0,
      tolerations: [{ key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 }],
    },
  };
  if (!pod.metadata.annotations) delete pod.metadata.annotations;
  if (options.initContainers) pod.spec.initContainers = options.initContainers;
  if (withVolumes) {
    pod.spec.volumes = [
      {
        name: 'kube-api-access-x7k2p',
        projected: {
          defaultMode: 420,
          sources: [
            { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
            { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
            { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
          ],
        },
      },
    ];
  } else pod.spec.automountServiceAccountToken = false;
  return pod;
}

const OPTED_IN = { [CONFIG_ANNOTATION]: 'llm-failover-config', [SECRETS_ANNOTATION]: 'openai-secret, anthropic-secret' };

function admissionReview(pod: Any, options: { namespace?: string; operation?: string; uid?: string } = {}): Any {
  const gvk = { group: '', version: 'v1', kind: 'Pod' };
  const gvr = { group: '', version: 'v1', resource: 'pods' };
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: options.uid ?? randomUUID(),
      kind: gvk,
      resource: gvr,
      requestKind: gvk,
      requestResource: gvr,
      namespace: options.namespace ?? 'shop',
      operation: options.operation ?? 'CREATE',
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        uid: randomUUID(),
        groups: ['system:serviceaccounts', 'system:authenticated'],
      },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}

const logs: Record<string, unknown>[] = [];
let injector: Injector;

t.before(async () => {
  injector = await startInjector({
    certFile: certs.cert,
    keyFile: certs.key,
    listen: '127.0.0.1:0',
    certReloadMs: 0,
    injector: { image: IMAGE, excludeNamespaces: ['kube-system', 'kube-public', 'kube-node-lease', 'llm-failover-system'] },
    log: (e) => logs.push(e),
  });
});
t.teardown(() => injector.close());

/** Posts the review, checks the response envelope, returns the decoded patch (or undefined) and warnings. */
async function mutate(t: Any, path: string, reviewBody: Any): Promise<{ patch?: Any[]; warnings: string[]; response: Any }> {
  const r = await call(injector.url, path, reviewBody);
  t.equal(r.status, 200, 'HTTP 200');
  t.equal(r.json?.apiVersion, 'admission.k8s.io/v1');
  t.equal(r.json?.kind, 'AdmissionReview');
  const response = r.json.response;
  t.equal(response.uid, reviewBody.request.uid, 'the response carries the request uid');
  t.equal(response.allowed, true, 'always allowed: the injector never blocks a pod');
  if (response.patch === undefined) {
    t.equal(response.patchType, undefined, 'no patchType without a patch');
    return { warnings: response.warnings ?? [], response };
  }
  t.equal(response.patchType, 'JSONPatch');
  return { patch: JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')), warnings: response.warnings ?? [], response };
}

function applied(pod: Any, patch: Any[]): Any {
  // validateOperation=true: an `add` to /spec/volumes/- on a pod without volumes would throw here.
  try {
    return jsonpatch.applyPatch(structuredClone(pod), patch, true, false).newDocument;
  } catch (err) {
    throw new Error(`the patch does not apply: ${(err as Error).message.split(' tree:')[0]}`);
  }
}

t.test('a plain pod that did not opt in is admitted untouched', async (t) => {
  const { patch, warnings } = await mutate(t, '/mutate/pod', admissionReview(replicaSetPod({ annotations: OPTED_IN })));
  t.equal(patch, undefined, 'no patch');
  t.same(warnings, []);
});

t.test('an opted-in pod gets the native sidecar, valid against the Kubernetes schema', async (t) => {
  const migrate = { name: 'migrate', image: 'registry.example.com/shop-migrate:2.3.1', resources: {} };
  for (const [label, pod] of [
    [
      'a pod with volumes and init containers (appended with /-)',
      replicaSetPod({ labels: { 'llm-failover.dev/inject': 'true' }, annotations: OPTED_IN, initContainers: [migrate] }),
    ],
    [
      'a pod with no volumes and no init containers (whole arrays added)',
      replicaSetPod({ labels: { 'llm-failover.dev/inject': 'true' }, annotations: OPTED_IN, withVolumes: false }),
    ],
  ] as const) {
    await t.test(label, async (t) => {
      const { patch, warnings } = await mutate(t, '/mutate/pod', admissionReview(pod));
      t.ok(patch, 'a patch');
      t.same(warnings, [], 'no warnings');
      const out = applied(pod, patch!);
      t.equal(schemaErrors(out), undefined, 'the patched pod is a valid v1 Pod');
      t.same(sidecarPodProblems(out.spec), [], 'native sidecar, probes, mounts, security, resources, telemetry env');
      t.same(out.spec.containers, pod.spec.containers, 'the app containers are untouched');
      t.same(
        out.spec.initContainers.slice(0, -1),
        pod.spec.initContainers ?? [],
        "the pod's own init containers stay, in order, before the sidecar",
      );
      t.equal(out.spec.initContainers.at(-1).name, 'llm-failover-sidecar');
      t.same(out.spec.volumes.slice(0, (pod.spec.volumes ?? []).length), pod.spec.volumes ?? [], 'existing volumes are kept');
      const sidecar = out.spec.initContainers.at(-1);
      t.equal(sidecar.image, IMAGE, 'the image given with --image');
      const config = out.spec.volumes.find((v: Any) => v.name === 'llm-failover-config');
      t.equal(config.configMap.name, 'llm-failover-config', 'the ConfigMap named by the annotation');
      const secrets = out.spec.volumes.find((v: Any) => v.name === 'llm-failover-secrets');
      t.same(
        secrets.projected.sources.map((s: Any) => s.secret.name),
        ['openai-secret', 'anthropic-secret'],
        'every Secret of the annotation (spaces trimmed), in order',
      );
      t.equal(out.metadata.labels['llm-failover.dev/sidecar'], 'true', 'labelled for the PodMonitor');
      t.equal(out.metadata.annotations['llm-failover.dev/status'], 'injected');
      t.equal(out.metadata.annotations['prometheus.io/port'], '15000');
      t.equal(out.metadata.annotations[CONFIG_ANNOTATION], 'llm-failover-config', 'existing annotations are kept');
      t.equal(out.spec.terminationGracePeriodSeconds, 30, 'pod settings are untouched');
      // The same patch applied again by a second webhook call would not happen: see "already injected".
      t.ok(
        patch!.every((op: Any) => op.op === 'add'),
        'only add operations',
      );
    });
  }
});

t.test('a pod that already has the sidecar is left alone (idempotent)', async (t) => {
  const pod = replicaSetPod({ labels: { 'llm-failover.dev/inject': 'true' }, annotations: OPTED_IN });
  const first = await mutate(t, '/mutate/pod', admissionReview(pod));
  const injected = applied(pod, first.patch!);
  const again = await mutate(t, '/mutate/pod', admissionReview(injected));
  t.equal(again.patch, undefined, 'no second patch for an injected pod');
  const namespaceRoute = await mutate(t, '/mutate/namespace', admissionReview(injected));
  t.equal(namespaceRoute.patch, undefined, 'nor from the other webhook');
  // Written by hand as in deploy/kubernetes/deployment.yaml, or as a regular container.
  const manual = replicaSetPod({ labels: { 'llm-failover.dev/inject': 'true' }, annotations: OPTED_IN });
  manual.spec.containers.push({ name: 'llm-failover-sidecar', image: IMAGE });
  const m = await mutate(t, '/mutate/pod', admissionReview(manual));
  t.equal(m.patch, undefined, 'a container named llm-failover-sidecar anywhere counts');
});

t.test('namespace opt-in: every pod of the namespace, unless it opts out', async (t) => {
  const plain = await mutate(t, '/mutate/namespace', admissionReview(replicaSetPod({ annotations: OPTED_IN })));
  t.ok(plain.patch, 'an unlabelled pod of an opted-in namespace is injected');
  const optOut = await mutate(
    t,
    '/mutate/namespace',
    admissionReview(replicaSetPod({ labels: { 'llm-failover.dev/inject': 'false' }, annotations: OPTED_IN })),
  );
  t.equal(optOut.patch, undefined, 'llm-failover.dev/inject: "false" opts out');
  const podRouteFalse = await mutate(
    t,
    '/mutate/pod',
    admissionReview(replicaSetPod({ labels: { 'llm-failover.dev/inject': 'false' }, annotations: OPTED_IN })),
  );
  t.equal(podRouteFalse.patch, undefined);
});

t.test('excluded namespaces are never injected, whatever the labels', async (t) => {
  for (const ns of ['llm-failover-system', 'kube-system']) {
    const pod = replicaSetPod({ labels: { 'llm-failover.dev/inject': 'true' }, annotations: OPTED_IN });
    for (const path of ['/mutate/pod', '/mutate/namespace']) {
      const r = await mutate(t, path, admissionReview(pod, { namespace: ns }));
      t.equal(r.patch, undefined, `${ns} via ${path}: no patch`);
    }
  }
});

t.test('opted in without the config annotation: admitted, not injected, with a warning', async (t) => {
  const r = await mutate(t, '/mutate/pod', admissionReview(replicaSetPod({ labels: { 'llm-failover.dev/inject': 'true' } })));
  t.equal(r.patch, undefined, 'no patch: a sidecar without configuration would never pass its startup probe');
  t.equal(r.warnings.length, 1);
  t.match(r.warnings[0], /llm-failover\.dev\/config/, 'the warning names the missing annotation');
});

t.test('no Secrets annotation, a short grace period: injected, with warnings', async (t) => {
  const pod = replicaSetPod({ labels: { 'llm-failover.dev/inject': 'true' }, annotations: { [CONFIG_ANNOTATION]: 'llm-failover-config' } });
  pod.spec.terminationGracePeriodSeconds = 10;
  const r = await mutate(t, '/mutate/pod', admissionReview(pod));
  const out = applied(pod, r.patch!);
  t.equal(schemaErrors(out), undefined);
  t.same(sidecarPodProblems(out.spec), []);
  t.notOk(
    out.spec.volumes.some((v: Any) => v.name === 'llm-failover-secrets'),
    'no Secrets volume (a config with Inline or Passthrough auth needs none)',
  );
  t.equal(r.warnings.length, 2);
  t.match(r.warnings[0], SECRETS_ANNOTATION);
  t.match(r.warnings[1], /terminationGracePeriodSeconds 10/);
});

t.test('injections that could not start are skipped with a warning; the port annotations resolve them', async (t) => {
  const clash = replicaSetPod({ labels: { 'llm-failover.dev/inject': 'true' }, annotations: OPTED_IN, ports: [8080] });
  const r1 = await mutate(t, '/mutate/pod', admissionReview(clash));
  t.equal(r1.patch, undefined, 'the app declares the proxy port 8080: no patch');
  t.match(r1.warnings.join('\n'), new RegExp(`port 8080.*${PROXY_PORT_ANNOTATION}`));

  const moved = replicaSetPod({
    labels: { 'llm-failover.dev/inject': 'true' },
    annotations: { ...OPTED_IN, [PROXY_PORT_ANNOTATION]: '9090' },
    ports: [8080],
  });
  const r2 = await mutate(t, '/mutate/pod', admissionReview(moved));
  const out = applied(moved, r2.patch!);
  t.equal(schemaErrors(out), undefined);
  t.same(sidecarPodProblems(out.spec), []);
  t.equal(flags(out.spec.initContainers.at(-1).args).listen, '127.0.0.1:9090', 'the proxy moves to the annotated port');

  // Istio's proxy holds 127.0.0.1:15000 (Envoy admin) without declaring it.
  const istio = replicaSetPod({ labels: { 'llm-failover.dev/inject': 'true' }, annotations: OPTED_IN });
  istio.spec.containers.push({
    name: 'istio-proxy',
    image: 'docker.io/istio/proxyv2:1.28.0',
    ports: [{ containerPort: 15090, name: 'http-envoy-prom', protocol: 'TCP' }],
  });
  const r3 = await mutate(t, '/mutate/pod', admissionReview(istio));
  t.equal(r3.patch, undefined, "clashes with Istio's admin port: no patch");
  t.match(r3.warnings.join('\n'), new RegExp(`istio-proxy uses port 15000.*${ADMIN_PORT_ANNOTATION}`));
  istio.metadata.annotations[ADMIN_PORT_ANNOTATION] = '15100';
  const r4 = await mutate(t, '/mutate/pod', admissionReview(istio));
  const out4 = applied(istio, r4.patch!);
  t.same(sidecarPodProblems(out4.spec), [], 'probes follow the admin port');
  t.equal(flags(out4.spec.initContainers.at(-1).args).admin, '0.0.0.0:15100');
  t.equal(out4.metadata.annotations['prometheus.io/port'], '15100');

  const host = replicaSetPod({ labels: { 'llm-failover.dev/inject': 'true' }, annotations: OPTED_IN });
  host.spec.hostNetwork = true;
  const r5 = await mutate(t, '/mutate/pod', admissionReview(host));
  t.equal(r5.patch, undefined, 'hostNetwork: no patch');
  t.match(r5.warnings.join('\n'), /hostNetwork/);

  const badName = replicaSetPod({
    labels: { 'llm-failover.dev/inject': 'true' },
    annotations: { ...OPTED_IN, [SECRETS_ANNOTATION]: 'openai_secret' },
  });
  const r6 = await mutate(t, '/mutate/pod', admissionReview(badName));
  t.equal(r6.patch, undefined, 'an invalid Secret name: no patch (the pod would never start)');
  t.match(r6.warnings.join('\n'), /openai_secret/);
});

t.test('only Pod CREATE is patched', async (t) => {
  const pod = replicaSetPod({ labels: { 'llm-failover.dev/inject': 'true' }, annotations: OPTED_IN });
  const update = admissionReview(pod, { operation: 'UPDATE' });
  update.request.oldObject = pod;
  t.equal((await mutate(t, '/mutate/pod', update)).patch, undefined, 'UPDATE: no patch');
  const binding = admissionReview({ apiVersion: 'v1', kind: 'Binding', metadata: { name: 'x' }, target: { kind: 'Node', name: 'n' } });
  binding.request.subResource = 'binding';
  t.equal((await mutate(t, '/mutate/pod', binding)).patch, undefined, 'a pods/binding subresource: no patch');
});

t.test('a malformed review gets HTTP 400 with the reason; the API server then admits the pod (failurePolicy Ignore)', async (t) => {
  const notJson = await call(injector.url, '/mutate/pod', '{"apiVersion": "admission.k8s.io/v1", ');
  t.equal(notJson.status, 400);
  t.match(notJson.text, /malformed AdmissionReview: not JSON/);

  const v1beta1 = admissionReview(replicaSetPod());
  v1beta1.apiVersion = 'admission.k8s.io/v1beta1';
  const r1 = await call(injector.url, '/mutate/pod', v1beta1);
  t.equal(r1.status, 400);
  t.match(r1.text, /apiVersion must be admission\.k8s\.io\/v1/);

  const noUid = admissionReview(replicaSetPod());
  delete noUid.request.uid;
  const r2 = await call(injector.url, '/mutate/pod', noUid);
  t.equal(r2.status, 400);
  t.match(r2.text, /request\.uid is missing/);

  const noObject = admissionReview(replicaSetPod());
  delete noObject.request.object;
  t.match((await call(injector.url, '/mutate/pod', noObject)).text, /request\.object is missing/);

  t.equal((await call(injector.url, '/mutate/pod', [])).status, 400, 'a JSON array');
  t.equal((await call(injector.url, '/mutate/pod', undefined, { method: 'GET' })).status, 405, 'GET on a webhook path');
  t.equal((await call(injector.url, '/mutate', admissionReview(replicaSetPod()))).status, 404, 'an unknown path');
  const big = await call(injector.url, '/mutate/pod', `"${'x'.repeat(4 * 1024 * 1024 + 10)}"`);
  t.equal(big.status, 413, 'a body over 4 MiB is refused with a 413 (the API server sees why)');
  t.match(big.text, /AdmissionReview larger than 4194304 bytes/);
});

t.test('health and metrics', async (t) => {
  const h = await call(injector.url, '/healthz', undefined, { method: 'GET' });
  t.equal(h.status, 200);
  const m = await call(injector.url, '/metrics', undefined, { method: 'GET' });
  t.equal(m.status, 200);
  t.match(m.text, /llm_failover_injector_reviews_total\{route="pod",result="injected"\} [1-9]/);
  t.match(m.text, /llm_failover_injector_reviews_total\{route="pod",result="malformed"\} [1-9]/);
  const entry = logs.find((e) => e.msg === 'injected');
  t.ok(entry?.uid && entry.namespace === 'shop' && entry.pod === 'shop-6d8f9c7b5-*', 'one log line per review: uid, namespace, pod');
  t.notOk(JSON.stringify(logs).includes('registry.example.com/shop'), 'the pod itself is never logged');
});

t.test('a renewed certificate is picked up for new connections; a mismatched pair is refused', async (t) => {
  const dir = join(tmp, 'live');
  const first = genCerts(join(tmp, 'first'));
  const second = genCerts(join(tmp, 'second'));
  mkdirSync(dir);
  copyFileSync(first.cert, join(dir, 'tls.crt'));
  copyFileSync(first.key, join(dir, 'tls.key'));
  const logs: Record<string, unknown>[] = [];
  const live = await startInjector({
    certFile: join(dir, 'tls.crt'),
    keyFile: join(dir, 'tls.key'),
    listen: '127.0.0.1:0',
    certReloadMs: 50,
    injector: { image: IMAGE, excludeNamespaces: [] },
    log: (e) => logs.push(e),
  });
  t.teardown(() => live.close());
  const caOf = (p: { ca: string }) => readFileSync(p.ca, 'utf8');
  const before = await call(live.url, '/healthz', undefined, { method: 'GET', ca: caOf(first) });
  t.equal(before.status, 200, 'serves the first certificate');

  // Halfway through a rotation: a new certificate with the old key.
  copyFileSync(second.cert, join(dir, 'tls.crt'));
  await new Promise((r) => setTimeout(r, 200));
  t.equal(live.reloadCertificates(), false, 'a mismatched pair is not installed');
  t.equal((await call(live.url, '/healthz', undefined, { method: 'GET', ca: caOf(first) })).status, 200, 'the old pair still serves');
  t.ok(logs.some((e) => e.msg === 'new certificate pair rejected; keeping the current one'));

  copyFileSync(second.key, join(dir, 'tls.key'));
  const deadline = Date.now() + 5_000;
  let after: Reply | Error = new Error('not tried');
  while (Date.now() < deadline) {
    after = await call(live.url, '/healthz', undefined, { method: 'GET', ca: caOf(second) }).catch((e: Error) => e);
    if (!(after instanceof Error)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.notOk(after instanceof Error, 'the renewed certificate (new CA) is served without a restart');
  const old = await call(live.url, '/healthz', undefined, { method: 'GET', ca: caOf(first) }).catch((e: Error) => e);
  t.ok(old instanceof Error, 'and the old one no longer is');
});

t.test('server.ts: the flags the Deployment passes; usage errors exit 2; SIGTERM exits 0', async (t) => {
  const script = join(ROOT, 'deploy/injector/server.ts');
  const missing = spawnSync(NODE, [script, '--cert', certs.cert, '--key', certs.key], { encoding: 'utf8', timeout: 15_000 });
  t.equal(missing.status, 2, 'missing --image: exit 2');
  t.match(missing.stderr, /missing --image/);
  const unknown = spawnSync(NODE, [script, '--certs', 'x'], { encoding: 'utf8', timeout: 15_000 });
  t.equal(unknown.status, 2, 'an unknown flag: exit 2');

  const proc = spawn(
    NODE,
    [script, '--cert', certs.cert, '--key', certs.key, '--listen', '127.0.0.1:0', '--image', IMAGE, '--exclude-namespaces', 'kube-system'],
    {
      env: { PATH: process.env.PATH, POD_NAMESPACE: 'llm-failover-system' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  let out = '';
  const listening = await new Promise<Any>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening" line: ${out}`)), 15_000);
    proc.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n').find((l) => l.includes('"listening"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line));
      }
    });
    proc.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
  });
  t.same(listening.excludeNamespaces, ['kube-system', 'llm-failover-system'], "POD_NAMESPACE (the injector's own) is always excluded");
  const own = await call(
    listening.url,
    '/mutate/pod',
    admissionReview(replicaSetPod({ labels: { 'llm-failover.dev/inject': 'true' }, annotations: OPTED_IN }), {
      namespace: 'llm-failover-system',
    }),
  );
  t.equal(own.json.response.patch, undefined, 'its own namespace: no patch');
  const other = await call(
    listening.url,
    '/mutate/pod',
    admissionReview(replicaSetPod({ labels: { 'llm-failover.dev/inject': 'true' }, annotations: OPTED_IN })),
  );
  t.ok(other.json.response.patch, 'another namespace: patched');
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  const [code] = await exited;
  t.equal(code, 0, 'SIGTERM: exit 0');
});
