/**
 * Trace export set-up, by the standard OTEL_* environment variables (OTLP http/protobuf unless
 * told otherwise). Tracing is on when an exporter is configured (OTEL_EXPORTER_OTLP_ENDPOINT,
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER), off when OTEL_SDK_DISABLED=true
 * or OTEL_TRACES_EXPORTER=none, and off otherwise: with nowhere to send spans, making them is
 * pure cost. The SDK is only loaded when tracing is on.
 *
 * Kubernetes: POD_NAME, POD_NAMESPACE and NODE_NAME (from the downward API) become the
 * k8s.pod.name, k8s.namespace.name and k8s.node.name resource attributes.
 */
import type { TextMapPropagator, Tracer, TracerProvider } from '@opentelemetry/api';
export const TRACER_NAME = 'llm-failover-sidecar';

export interface TracingSetup {
  tracer: Tracer;
  /** The SDK's propagator (OTEL_PROPAGATORS); undefined = W3C trace context. */
  propagator?: TextMapPropagator;
  shutdown(): Promise<void>;
}

export function tracingWanted(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED === 'true') return false;
  const exporter = env.OTEL_TRACES_EXPORTER;
  if (exporter === 'none') return false;
  return Boolean(exporter || env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/** Resource attributes from the pod's downward-API environment. */
export function kubernetesAttributes(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  if (env.POD_NAME) out['k8s.pod.name'] = env.POD_NAME;
  if (env.POD_NAMESPACE) out['k8s.namespace.name'] = env.POD_NAMESPACE;
  if (env.NODE_NAME) out['k8s.node.name'] = env.NODE_NAME;
  return out;
}

/** `env` decides whether to trace; the SDK itself reads its settings from process.env. */
export async function startTracing(env: NodeJS.ProcessEnv, provider?: TracerProvider): Promise<TracingSetup | undefined> {
  if (provider) return { tracer: provider.getTracer(TRACER_NAME), shutdown: async () => {} };
  if (!tracingWanted(env)) return undefined;
  const [{ NodeSDK }, { resourceFromAttributes }, api] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/api'),
  ]);
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME ?? TRACER_NAME,
    resource: resourceFromAttributes(kubernetesAttributes(env)),
    instrumentations: [],
  });
  sdk.start();
  return { tracer: api.trace.getTracer(TRACER_NAME), propagator: api.propagation, shutdown: () => sdk.shutdown() };
}
