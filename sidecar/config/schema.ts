/**
 * The shapes of every document the sidecar reads, as zod schemas: kgateway's `Backend`,
 * Gateway API's `HTTPRoute`, and our own `SidecarConfig` and `FailoverPolicy` kinds.
 * The loader validates with these and nothing else, so error paths match the YAML.
 */
import { z } from 'zod';

const DURATION = /^(\d{1,5}(h|ms|m|s)){1,4}$/;
export const duration = z.string().regex(DURATION, 'a duration such as "500ms", "30s", "5m" or "1h"');

const name = z.string().min(1, 'a non-empty name');

export const metadata = z.looseObject({
  name,
  namespace: z.string().min(1).optional(),
});

// ---- kgateway Backend (gateway.kgateway.dev/v1alpha1) ----

export const authToken = z
  .strictObject({
    kind: z.enum(['SecretRef', 'Inline', 'Passthrough']),
    secretRef: z.strictObject({ name, namespace: z.string().optional() }).optional(),
    inline: z.string().min(1).optional(),
  })
  .superRefine((token, ctx) => {
    if (token.kind === 'SecretRef' && !token.secretRef)
      ctx.addIssue({ code: 'custom', path: ['secretRef'], message: 'kind SecretRef needs secretRef.name' });
    if (token.kind === 'Inline' && token.inline === undefined)
      ctx.addIssue({ code: 'custom', path: ['inline'], message: 'kind Inline needs the token in inline' });
  });

export const openaiProvider = z.strictObject({
  authToken,
  model: z.string().min(1).optional(),
});

export const anthropicProvider = z.strictObject({
  authToken,
  model: z.string().min(1).optional(),
  apiVersion: z.string().min(1).optional(),
});

/** Providers kgateway knows and this sidecar does not serve yet: named in the error. */
export const UNSERVED_PROVIDERS = ['azureopenai', 'gemini', 'vertexai', 'bedrock'] as const;

const providerFields = {
  openai: openaiProvider.optional(),
  anthropic: anthropicProvider.optional(),
  hostOverride: z
    .strictObject({ host: z.string().min(1), port: z.number().int().min(1).max(65535) })
    .optional(),
  pathOverride: z.strictObject({ fullPath: z.string().startsWith('/', 'a path starting with "/"') }).optional(),
  authHeaderOverride: z
    .strictObject({ headerName: z.string().min(1).optional(), prefix: z.string().optional() })
    .optional(),
};

function exactlyOneProvider(p: Record<string, unknown>, ctx: z.RefinementCtx): void {
  for (const unserved of UNSERVED_PROVIDERS) {
    if (p[unserved] !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: [unserved],
        message: `provider "${unserved}" is not served by this sidecar yet (served: openai, anthropic)`,
      });
  }
  const present = ['openai', 'anthropic', ...UNSERVED_PROVIDERS].filter((k) => p[k] !== undefined);
  if (present.length === 0)
    ctx.addIssue({ code: 'custom', path: [], message: 'exactly one provider block is required (openai or anthropic)' });
  if (present.length > 1)
    ctx.addIssue({ code: 'custom', path: [], message: `exactly one provider block is allowed, found ${present.join(', ')}` });
}

const unservedFields = Object.fromEntries(UNSERVED_PROVIDERS.map((k) => [k, z.unknown().optional()]));

export const llmProvider = z.strictObject({ ...providerFields, ...unservedFields }).superRefine(exactlyOneProvider);
export const namedProvider = z
  .strictObject({ name, ...providerFields, ...unservedFields })
  .superRefine(exactlyOneProvider);

export const backend = z.looseObject({
  apiVersion: z.literal('gateway.kgateway.dev/v1alpha1'),
  kind: z.literal('Backend'),
  metadata,
  spec: z.looseObject({
    type: z.literal('AI', { message: 'only spec.type "AI" backends are served' }),
    ai: z
      .strictObject({
        llm: llmProvider.optional(),
        priorityGroups: z
          .array(z.strictObject({ providers: z.array(namedProvider).min(1, 'at least one provider') }))
          .min(1, 'at least one priority group')
          .optional(),
      })
      .superRefine((ai, ctx) => {
        if (!ai.llm === !ai.priorityGroups)
          ctx.addIssue({ code: 'custom', path: [], message: 'exactly one of llm or priorityGroups is required' });
      }),
  }),
});

// ---- Gateway API HTTPRoute (gateway.networking.k8s.io) ----

export const httpRoute = z.looseObject({
  apiVersion: z.enum(['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1']),
  kind: z.literal('HTTPRoute'),
  metadata,
  spec: z.looseObject({
    parentRefs: z.array(z.looseObject({ name })).optional(),
    rules: z
      .array(
        z.looseObject({
          matches: z
            .array(
              z.looseObject({
                path: z
                  .strictObject({
                    type: z.enum(['PathPrefix', 'Exact', 'RegularExpression']).default('PathPrefix'),
                    value: z.string().startsWith('/', 'a path starting with "/"').default('/'),
                  })
                  .optional(),
              }),
            )
            .optional(),
          filters: z
            .array(
              z.discriminatedUnion('type', [
                z.strictObject({
                  type: z.literal('URLRewrite'),
                  urlRewrite: z.strictObject({
                    hostname: z.string().optional(),
                    path: z
                      .strictObject({
                        type: z.literal('ReplaceFullPath', {
                          message: 'only ReplaceFullPath rewrites are supported (the sidecar serves chat completions)',
                        }),
                        replaceFullPath: z.literal('/v1/chat/completions', {
                          message: 'the sidecar serves chat completions: replaceFullPath must be /v1/chat/completions',
                        }),
                      })
                      .optional(),
                  }),
                }),
              ]),
            )
            .optional(),
          backendRefs: z
            .array(
              z.looseObject({
                name,
                namespace: z.string().optional(),
                group: z.literal('gateway.kgateway.dev', { message: 'backendRefs must name a kgateway Backend' }),
                kind: z.literal('Backend', { message: 'backendRefs must name a kgateway Backend' }),
              }),
            )
            .length(1, 'exactly one backendRef per rule (the Backend does the balancing)'),
        }),
      )
      .min(1, 'at least one rule'),
  }),
});

// ---- Our own kinds (llm-failover.dev/v1alpha1) ----

export const OUR_API_VERSION = 'llm-failover.dev/v1alpha1';

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'host:port, e.g. 127.0.0.1:8080');

export const sidecarConfig = z.looseObject({
  apiVersion: z.literal(OUR_API_VERSION),
  kind: z.literal('SidecarConfig'),
  metadata: metadata.optional(),
  spec: z.strictObject({
    listen: hostPort.optional(),
    admin: hostPort.optional(),
    maxBodyBytes: z.number().int().min(1024).max(1 << 30).optional(),
    maxConcurrentRequests: z.number().int().min(1).max(100_000).optional(),
    maxQueuedRequests: z.number().int().min(0).max(100_000).optional(),
    queueTimeout: duration.optional(),
    maxConnections: z.number().int().min(1).max(1_000_000).optional(),
    headersTimeout: duration.optional(),
    requestBodyTimeout: duration.optional(),
    drainGrace: duration.optional(),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).optional(),
  }),
});

export const timeouts = z.strictObject({
  connect: duration.optional(),
  response: duration.optional(),
  firstToken: duration.optional(),
  streamIdle: duration.optional(),
  request: duration.optional(),
});

const percent = z.number().min(1).max(100);

export const healthSettings = z.strictObject({
  probe: z
    .strictObject({
      kind: z.enum(['auto', 'chat', 'models', 'none']).optional(),
      interval: duration.optional(),
      idleInterval: duration.optional(),
      timeout: duration.optional(),
      jitterPercent: z.number().min(0).max(50).optional(),
      healthyThreshold: z.number().int().min(1).max(20).optional(),
      unhealthyThreshold: z.number().int().min(1).max(20).optional(),
      prompt: z.string().min(1).max(2000).optional(),
      maxTokens: z.number().int().min(1).max(4096).optional(),
    })
    .optional(),
  slowThreshold: duration.optional(),
  suspectAfter: duration.optional(),
  breaker: z
    .strictObject({
      enabled: z.boolean().optional(),
      window: duration.optional(),
      errorThresholdPercentage: percent.optional(),
      volumeThreshold: z.number().int().min(1).max(1000).optional(),
      resetTimeout: duration.optional(),
    })
    .optional(),
});

export const failoverSettings = z.strictObject({
  timeouts: timeouts.optional(),
  maxAttempts: z.number().int().min(0).max(100).optional(),
  cooldown: z
    .strictObject({
      afterFailure: duration.optional(),
      afterAuthFailure: duration.optional(),
      maxRetryAfter: duration.optional(),
    })
    .optional(),
  maxResponseBytes: z.number().int().min(1024).max(1 << 30).optional(),
  maxStreamBytes: z.number().int().min(1024).max(2 ** 40).optional(),
  health: healthSettings.optional(),
});

export const failoverPolicy = z.looseObject({
  apiVersion: z.literal(OUR_API_VERSION),
  kind: z.literal('FailoverPolicy'),
  metadata,
  spec: failoverSettings.extend({
    targetRefs: z
      .array(
        z.strictObject({
          group: z.literal('gateway.kgateway.dev').optional(),
          kind: z.literal('Backend'),
          name,
        }),
      )
      .min(1, 'at least one targetRef'),
    providers: z
      .record(
        z.string(),
        z.strictObject({
          tls: z.boolean().optional(),
          timeouts: timeouts.optional(),
          health: healthSettings.optional(),
        }),
      )
      .optional(),
  }),
});

export type AuthTokenDoc = z.infer<typeof authToken>;
export type BackendDoc = z.infer<typeof backend>;
export type HTTPRouteDoc = z.infer<typeof httpRoute>;
export type SidecarConfigDoc = z.infer<typeof sidecarConfig>;
export type FailoverPolicyDoc = z.infer<typeof failoverPolicy>;
export type NamedProviderDoc = z.infer<typeof namedProvider>;
export type LLMProviderDoc = z.infer<typeof llmProvider>;

/** Which schema validates a document, by apiVersion group and kind. */
export const DOCUMENT_KINDS = {
  'gateway.kgateway.dev/Backend': backend,
  'gateway.networking.k8s.io/HTTPRoute': httpRoute,
  'llm-failover.dev/SidecarConfig': sidecarConfig,
  'llm-failover.dev/FailoverPolicy': failoverPolicy,
} as const;
