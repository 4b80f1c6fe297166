/**
 * The shapes of every document the sidecar reads, as zod schemas: kgateway's `Backend`,
 * Gateway API's `HTTPRoute`, and our own `SidecarConfig` and `FailoverPolicy` kinds.
 * The loader validates with these and nothing else, so error paths match the YAML. Each
 * setting is described here and only here (the JSON Schemas, the CRD and
 * docs/configuration.md are generated from these descriptions); its default is in settings.ts.
 * A provider's block comes from its own module (providers/), the shared pieces from fields.ts.
 */
import { z } from 'zod';
import { formatDuration } from './duration.ts';
import { duration, HOST, headerValue, metadata, name, RESERVED_HEADERS, TOKEN } from './fields.ts';
import { PROVIDER_KINDS, PROVIDERS, type ProviderKind } from './providers/index.ts';
import { FAILOVER_DEFAULTS, HEALTH_DEFAULTS, SERVER_DEFAULTS } from './settings.ts';

// ---- kgateway Backend (gateway.kgateway.dev/v1alpha1) ----

/** Each served provider's block, under its key (providers/*.ts). */
const servedBlocks = Object.fromEntries(PROVIDER_KINDS.map((kind) => [kind, PROVIDERS[kind].block.optional()])) as {
  [K in ProviderKind]: z.ZodOptional<(typeof PROVIDERS)[K]['block']>;
};

/** "x for OpenAI, y for Anthropic": a default that differs by provider, in the provider's own words. */
const byProvider = (fact: (kind: ProviderKind) => string) =>
  PROVIDER_KINDS.map((kind) => `${fact(kind)} for ${PROVIDERS[kind].title}`).join(', ');

/** Providers kgateway knows and this sidecar does not serve yet: named in the error. */
export const UNSERVED_PROVIDERS = ['azureopenai', 'gemini', 'vertexai', 'bedrock'] as const;

const providerFields = {
  ...servedBlocks,
  hostOverride: z
    .strictObject({
      host: z.string().regex(HOST, 'a host name (vllm.llm.svc), an IPv4 address or an IPv6 address without brackets'),
      port: z.number().int().min(1).max(65535),
    })
    .optional()
    .meta({
      description:
        "Send to this host and port instead of the provider's API. Port 443 speaks TLS, any other plain HTTP (FailoverPolicy providers.<name>.tls overrides).",
    }),
  pathOverride: z
    .strictObject({ fullPath: z.string().startsWith('/', 'a path starting with "/"') })
    .optional()
    .meta({ description: `The chat path at the provider (default ${byProvider((kind) => PROVIDERS[kind].chatPath)}).` }),
  authHeaderOverride: z
    .strictObject({
      headerName: z
        .string()
        .regex(TOKEN, "not a valid HTTP header name: letters, digits and !#$%&'*+-.^_`|~ only (no spaces, no colon)")
        .superRefine((h, ctx) => {
          if (RESERVED_HEADERS.includes(h.toLowerCase()))
            ctx.addIssue({ code: 'custom', message: `not an auth header: the sidecar sets ${h.toLowerCase()} itself` });
        })
        .optional(),
      prefix: headerValue('the prefix').optional(),
    })
    .optional()
    .meta({
      description: `The header and prefix the token is sent with; a prefix gets a space before the token (default ${byProvider((kind) => {
        const { header, prefix } = PROVIDERS[kind].auth;
        return `\`${header}: ${prefix}<token>\``;
      })}).`,
    }),
};

function exactlyOneProvider(p: Record<string, unknown>, ctx: z.RefinementCtx): void {
  for (const unserved of UNSERVED_PROVIDERS) {
    if (p[unserved] !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: [unserved],
        message: `provider "${unserved}" is not served by this sidecar yet (served: ${PROVIDER_KINDS.join(', ')})`,
      });
  }
  const present = [...PROVIDER_KINDS, ...UNSERVED_PROVIDERS].filter((k) => p[k] !== undefined);
  if (present.length === 0)
    ctx.addIssue({ code: 'custom', path: [], message: `exactly one provider block is required (${PROVIDER_KINDS.join(' or ')})` });
  if (present.length > 1)
    ctx.addIssue({ code: 'custom', path: [], message: `exactly one provider block is allowed, found ${present.join(', ')}` });
}

const unservedFields = Object.fromEntries(UNSERVED_PROVIDERS.map((k) => [k, z.unknown().optional()]));

export const llmProvider = z.strictObject({ ...providerFields, ...unservedFields }).superRefine(exactlyOneProvider);
export const namedProvider = z.strictObject({ name, ...providerFields, ...unservedFields }).superRefine(exactlyOneProvider);

export const backend = z
  .looseObject({
    apiVersion: z.literal('gateway.kgateway.dev/v1alpha1'),
    kind: z.literal('Backend'),
    metadata,
    spec: z.looseObject({
      type: z.literal('AI', { message: 'only spec.type "AI" backends are served' }),
      ai: z
        .strictObject({
          llm: llmProvider.optional().meta({ description: "A single model (kgateway's one-model form)." }),
          priorityGroups: z
            .array(
              z.strictObject({
                providers: z
                  .array(namedProvider)
                  .min(1, 'at least one provider')
                  .meta({ description: 'Models of equal priority, load balanced round robin. Names are unique across the Backend.' }),
              }),
            )
            .min(1, 'at least one priority group')
            .optional()
            .meta({ description: 'Groups in priority order: the first is used while it has a usable model, then the next.' }),
        })
        .superRefine((ai, ctx) => {
          if (!ai.llm === !ai.priorityGroups)
            ctx.addIssue({ code: 'custom', path: [], message: 'exactly one of llm or priorityGroups is required' });
        }),
    }),
  })
  .meta({ title: 'Backend', description: "kgateway's AI Backend, exactly as kgateway and agentgateway users write it." });

// ---- Gateway API HTTPRoute (gateway.networking.k8s.io) ----

export const httpRoute = z
  .looseObject({
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
                      type: z.enum(['PathPrefix', 'Exact', 'RegularExpression']).default('PathPrefix').meta({
                        description:
                          'RegularExpression: RE2 syntax (as Envoy uses; no backreferences or lookarounds), matched against the whole path in linear time; a path over 8 KiB never matches one.',
                      }),
                      value: z
                        .string()
                        .startsWith('/', 'a path starting with "/"')
                        .max(1024, 'at most 1024 characters (as Gateway API)')
                        .default('/'),
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
  })
  .meta({
    title: 'HTTPRoute',
    description: 'Gateway API HTTPRoute: which paths go to which Backend (the sidecar serves chat completions on them).',
  });

// ---- Our own kinds (llm-failover.dev/v1alpha1) ----

export const OUR_API_VERSION = 'llm-failover.dev/v1alpha1';

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'host:port, e.g. 127.0.0.1:8080');

/** A field's documentation and default, carried into the JSON Schema and docs/configuration.md. */
const doc = (description: string, fallback?: string | number | boolean) =>
  fallback === undefined ? { description } : { description, default: fallback };
const d = formatDuration;
const S = SERVER_DEFAULTS;
const F = FAILOVER_DEFAULTS;
const H = HEALTH_DEFAULTS;

export const sidecarConfig = z
  .looseObject({
    apiVersion: z.literal(OUR_API_VERSION),
    kind: z.literal('SidecarConfig'),
    metadata: metadata.optional(),
    spec: z.strictObject({
      listen: hostPort
        .optional()
        .meta(doc('Proxy address. Loopback by default: whoever reaches this port spends the API keys. Flag --listen.', S.listen)),
      admin: hostPort
        .optional()
        .meta(doc('Admin address for /healthz, /readyz, /status and /metrics. Nothing there can spend a key. Flag --admin.', S.admin)),
      maxBodyBytes: z
        .number()
        .int()
        .min(1024)
        .max(1 << 30)
        .optional()
        .meta(doc('Largest request body; larger gets 413 before it is all read. Flag --max-body.', S.maxBodyBytes)),
      maxConcurrentRequests: z
        .number()
        .int()
        .min(1)
        .max(100_000)
        .optional()
        .meta(doc('Requests served upstream at once; more wait in the queue.', S.maxConcurrentRequests)),
      maxQueuedRequests: z
        .number()
        .int()
        .min(0)
        .max(100_000)
        .optional()
        .meta(doc('Requests waiting for a slot; more get a fast 503 with Retry-After.', S.maxQueuedRequests)),
      queueTimeout: duration.optional().meta(doc('Longest wait in the queue before a 503.', d(S.queueTimeout))),
      maxConnections: z
        .number()
        .int()
        .min(1)
        .max(1_000_000)
        .optional()
        .meta(doc('Open client connections; more are refused.', S.maxConnections)),
      headersTimeout: duration
        .optional()
        .meta(doc('Time a client may take to send its request headers (slowloris bound); then 408.', d(S.headersTimeout))),
      requestBodyTimeout: duration
        .optional()
        .meta(doc('Time a client may take to send its whole request; then 408.', d(S.requestBodyTimeout))),
      drainGrace: duration.optional().meta(doc('On SIGTERM: how long in-flight requests and streams may take to finish.', d(S.drainGrace))),
      logLevel: z
        .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
        .optional()
        .meta(doc('Log level. Flag --log-level.', S.logLevel)),
    }),
  })
  .meta({ title: 'SidecarConfig', description: 'Process settings of the sidecar (optional: every field has a default).' });

export const timeouts = z.strictObject({
  connect: duration.optional().meta(doc('TCP and TLS connect to the provider.', d(F.timeouts.connect))),
  response: duration
    .optional()
    .meta(doc('Non-streamed: until the whole answer arrived. LLM answers can take minutes.', d(F.timeouts.response))),
  firstToken: duration.optional().meta(doc('Streamed: until the first chunk that carries content.', d(F.timeouts.firstToken))),
  streamIdle: duration.optional().meta(doc('Streamed: the longest silence between two chunks.', d(F.timeouts.streamIdle))),
  request: duration.optional().meta(doc('The whole request, every attempt included; then 504.', d(F.timeouts.request))),
});

const percent = z.number().min(1).max(100);

export const healthSettings = z.strictObject({
  probe: z
    .strictObject({
      kind: z
        .enum(['auto', 'chat', 'models', 'none'])
        .optional()
        .meta(
          doc(
            'auto: chat probes for the models that carry traffic or would carry it next (the first group with a usable model and the one after it) and for down models and stuck requests, free model-list probes for groups further down; chat: always chat; models: only model lists; none: no probes (the breaker trial is one user request).',
            H.probe.kind,
          ),
        ),
      interval: duration
        .optional()
        .meta(doc('Probe interval for down models and for idle models that would be needed next.', d(H.probe.interval))),
      idleInterval: duration
        .optional()
        .meta(doc('Probe interval for idle models two or more groups below the one carrying traffic.', d(H.probe.idleInterval))),
      edgeInterval: duration
        .optional()
        .meta(
          doc(
            'Wait before the probe that confirms a transition (after a first failed probe of a usable model, a first success of a down one, a model taken down by real traffic); down models are probed on a backoff from this, doubling up to interval. Never longer than interval.',
            d(H.probe.edgeInterval),
          ),
        ),
      timeout: duration.optional().meta(doc('A probe with no first token (chat) or no answer (models) by then fails.', d(H.probe.timeout))),
      jitterPercent: z
        .number()
        .min(0)
        .max(50)
        .optional()
        .meta(doc('Random spread of each interval, so pods do not probe in lockstep.', H.probe.jitterPercent)),
      healthyThreshold: z
        .number()
        .int()
        .min(1)
        .max(20)
        .optional()
        .meta(doc('Consecutive good results that bring a model back (unhealthy or degraded).', H.probe.healthyThreshold)),
      unhealthyThreshold: z
        .number()
        .int()
        .min(1)
        .max(20)
        .optional()
        .meta(doc('Consecutive bad results that take a model out (unhealthy) or mark it slow (degraded).', H.probe.unhealthyThreshold)),
      prompt: z.string().min(1).max(2000).optional().meta(doc("The chat probe's prompt.", H.probe.prompt)),
      maxTokens: z
        .number()
        .int()
        .min(1)
        .max(4096)
        .optional()
        .meta(doc("The chat probe's max_completion_tokens (not 1: reasoning models need room).", H.probe.maxTokens)),
    })
    .optional(),
  slowThreshold: duration
    .optional()
    .meta(doc('Time to first token over this, unhealthyThreshold times in a row, marks a model degraded.', d(H.slowThreshold))),
  suspectAfter: duration
    .optional()
    .meta(
      doc(
        "An attempt with no first token after this (or 4x the model's usual, if longer) triggers a chat probe; if that fails too, the model is marked down and attempts waiting on it move on.",
        d(H.suspectAfter),
      ),
    ),
  breaker: z
    .strictObject({
      enabled: z.boolean().optional().meta(doc('A circuit breaker per model, fed by every real attempt.', H.breaker.enabled)),
      consecutiveFailures: z
        .number()
        .int()
        .min(0)
        .max(1000)
        .optional()
        .meta(
          doc(
            'Failed attempts in a row that open the breaker at once, however many successes the window holds (0: only the window decides).',
            H.breaker.consecutiveFailures,
          ),
        ),
      window: duration.optional().meta(doc('Rolling window the error percentage is computed over.', d(H.breaker.window))),
      errorThresholdPercentage: percent
        .optional()
        .meta(doc('Error percentage in the window that opens the breaker.', H.breaker.errorThresholdPercentage)),
      volumeThreshold: z
        .number()
        .int()
        .min(1)
        .max(1000)
        .optional()
        .meta(doc('Attempts in the window before the breaker may open.', H.breaker.volumeThreshold)),
      resetTimeout: duration
        .optional()
        .meta(doc('Open time before the half-open trial (a probe, or one request with probes off).', d(H.breaker.resetTimeout))),
    })
    .optional(),
});

export const failoverSettings = z.strictObject({
  timeouts: timeouts.optional(),
  maxAttempts: z.number().int().min(0).max(100).optional().meta(doc('Attempts per request; 0 = every candidate once.', F.maxAttempts)),
  cooldown: z
    .strictObject({
      afterFailure: duration
        .optional()
        .meta(
          doc(
            'How long a 429/529 without Retry-After cools a model; with probes off, also how long an unreachable model stays out.',
            d(F.cooldown.afterFailure),
          ),
        ),
      afterAuthFailure: duration
        .optional()
        .meta(
          doc(
            'With probes off: how long a 401/403/404 takes a model out (with probes on: until a probe succeeds).',
            d(F.cooldown.afterAuthFailure),
          ),
        ),
      maxRetryAfter: duration.optional().meta(doc('Cap on any Retry-After a provider sends.', d(F.cooldown.maxRetryAfter))),
    })
    .optional(),
  maxResponseBytes: z
    .number()
    .int()
    .min(1024)
    .max(1 << 30)
    .optional()
    .meta(doc('A non-streamed answer larger than this is not a sane completion: fail over.', F.maxResponseBytes)),
  maxStreamBytes: z
    .number()
    .int()
    .min(1024)
    .max(2 ** 40)
    .optional()
    .meta(doc('A stream that grows past this is cut with an error event.', F.maxStreamBytes)),
  health: healthSettings.optional(),
});

export const failoverPolicy = z
  .looseObject({
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
        .min(1, 'at least one targetRef')
        .meta(doc('The Backend(s) this policy applies to, by name (Gateway API policy attachment).')),
      providers: z
        .record(
          z.string(),
          z.strictObject({
            tls: z.boolean().optional().meta(doc("Speak TLS to this provider's hostOverride (default: only on port 443).")),
            timeouts: timeouts.optional(),
            health: healthSettings.optional(),
          }),
        )
        .optional()
        .meta(doc('Overrides per provider entry name of the Backend.')),
    }),
  })
  .meta({
    title: 'FailoverPolicy',
    description: 'Timeouts, attempts, cooldowns, probes and breakers for a Backend, with overrides per provider.',
  });

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
