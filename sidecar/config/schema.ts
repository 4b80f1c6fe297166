/**
 * The shapes of every document the sidecar reads, as zod schemas: kgateway's `Backend`,
 * Gateway API's `HTTPRoute`, and our own `SidecarConfig` and `FailoverPolicy` kinds.
 * The loader validates with these and nothing else, so error paths match the YAML.
 */
import { z } from 'zod';
import { formatDuration } from './duration.ts';
import { DEFAULT_FAILOVER, DEFAULT_HEALTH, DEFAULT_SERVER } from './plan.ts';

/** Gateway API's duration form, above zero (a zero timeout or interval is always a mistake). */
const DURATION = /^(?=.*[1-9])(\d{1,5}(h|ms|m|s)){1,4}$/;
export const duration = z.string().regex(DURATION, 'a duration above zero, such as "500ms", "30s", "5m" or "1h"');

const name = z.string().min(1, 'a non-empty name');

/** RFC 9110 field names: tokens (no spaces, no colon, no separators). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Header fields the sidecar (or undici) writes itself, or that frame the message: never an auth header. */
export const RESERVED_HEADERS = ['host', 'content-length', 'content-type', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'expect', 'te', 'trailer', 'proxy-connection'];

/**
 * What an HTTP header value may hold (RFC 9110 field-content, as undici checks it): tabs,
 * visible ASCII, spaces and Latin-1. Why not, in words that never quote the value (it may be a key).
 */
export function headerValueProblem(value: string): string | undefined {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 9 || (c >= 0x20 && c <= 0x7e) || (c >= 0x80 && c <= 0xff)) continue;
    if (c === 10 || c === 13) return 'it holds a line break (a value of more than one line?); a header value is one line';
    if (c < 0x20 || c === 0x7f) return `it holds a control character (0x${c.toString(16).padStart(2, '0')})`;
    return `it holds a character that cannot be sent in an HTTP header (U+${c.toString(16).toUpperCase().padStart(4, '0')})`;
  }
  return undefined;
}

/** A string sent as (part of) an HTTP header value. */
const headerValue = (what: string, min?: number) =>
  (min === undefined ? z.string() : z.string().min(min)).superRefine((value, ctx) => {
    const problem = headerValueProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: `${what} is not a valid header value: ${problem}` });
  });

/** DNS names (labels of letters, digits, hyphens), IPv4, or IPv6 without brackets. */
const HOST = /^(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?))*\.?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$/;

export const metadata = z.looseObject({
  name,
  namespace: z.string().min(1).optional(),
});

// ---- kgateway Backend (gateway.kgateway.dev/v1alpha1) ----

export const authToken = z
  .strictObject({
    kind: z.enum(['SecretRef', 'Inline', 'Passthrough']).meta({ description: 'SecretRef: a Kubernetes Secret mounted at <secretsDir>/<name>/Authorization (or env NAME_IN_CAPS for local runs); Inline: the token in the YAML (tests only); Passthrough: the client\'s own Authorization header.' }),
    secretRef: z.strictObject({ name, namespace: z.string().optional() }).optional().meta({ description: 'The Secret holding `Authorization: Bearer <key>`.' }),
    inline: z.string().min(1).optional().meta({ description: 'The token itself (least secure; for trying things out).' }),
  })
  .superRefine((token, ctx) => {
    if (token.kind === 'SecretRef' && !token.secretRef)
      ctx.addIssue({ code: 'custom', path: ['secretRef'], message: 'kind SecretRef needs secretRef.name' });
    if (token.kind === 'Inline' && token.inline === undefined)
      ctx.addIssue({ code: 'custom', path: ['inline'], message: 'kind Inline needs the token in inline' });
  });

const modelField = z.string().min(1).optional().meta({ description: 'The model to ask for. Unset: the client\'s `model` is sent as is.', examples: ['gpt-4o'] });

export const openaiProvider = z
  .strictObject({ authToken, model: modelField })
  .meta({ description: 'OpenAI, or any OpenAI-compatible server (vLLM, Ollama, LocalAI, a company proxy) with hostOverride.' });

export const anthropicProvider = z
  .strictObject({
    authToken,
    model: modelField,
    apiVersion: headerValue('the anthropic-version', 1).optional().meta({ description: 'The anthropic-version header.', default: '2023-06-01' }),
  })
  .meta({ description: 'Anthropic\'s Messages API; requests and answers are translated (docs/translation.md).' });

/** Providers kgateway knows and this sidecar does not serve yet: named in the error. */
export const UNSERVED_PROVIDERS = ['azureopenai', 'gemini', 'vertexai', 'bedrock'] as const;

const providerFields = {
  openai: openaiProvider.optional(),
  anthropic: anthropicProvider.optional(),
  hostOverride: z
    .strictObject({
      host: z.string().regex(HOST, 'a host name (vllm.llm.svc), an IPv4 address or an IPv6 address without brackets'),
      port: z.number().int().min(1).max(65535),
    })
    .optional()
    .meta({ description: 'Send to this host and port instead of the provider\'s API. Port 443 speaks TLS, any other plain HTTP (FailoverPolicy providers.<name>.tls overrides).' }),
  pathOverride: z
    .strictObject({ fullPath: z.string().startsWith('/', 'a path starting with "/"') })
    .optional()
    .meta({ description: 'The chat path at the provider (default /v1/chat/completions, or /v1/messages for Anthropic).' }),
  authHeaderOverride: z
    .strictObject({
      headerName: z
        .string()
        .regex(TOKEN, 'not a valid HTTP header name: letters, digits and !#$%&\'*+-.^_`|~ only (no spaces, no colon)')
        .superRefine((h, ctx) => {
          if (RESERVED_HEADERS.includes(h.toLowerCase())) ctx.addIssue({ code: 'custom', message: `not an auth header: the sidecar sets ${h.toLowerCase()} itself` });
        })
        .optional(),
      prefix: headerValue('the prefix').optional(),
    })
    .optional()
    .meta({ description: 'The header (default Authorization, or x-api-key for Anthropic) and prefix (default "Bearer") the token is sent with.' }),
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

export const backend = z
  .looseObject({
  apiVersion: z.literal('gateway.kgateway.dev/v1alpha1'),
  kind: z.literal('Backend'),
  metadata,
  spec: z.looseObject({
    type: z.literal('AI', { message: 'only spec.type "AI" backends are served' }),
    ai: z
      .strictObject({
        llm: llmProvider.optional().meta({ description: 'A single model (kgateway\'s one-model form).' }),
        priorityGroups: z
          .array(
            z.strictObject({
              providers: z.array(namedProvider).min(1, 'at least one provider').meta({ description: 'Models of equal priority, load balanced round robin. Names are unique across the Backend.' }),
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
  .meta({ title: 'Backend', description: 'kgateway\'s AI Backend, exactly as kgateway and agentgateway users write it.' });

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
                    type: z
                      .enum(['PathPrefix', 'Exact', 'RegularExpression'])
                      .default('PathPrefix')
                      .meta({ description: 'RegularExpression: RE2 syntax (as Envoy uses; no backreferences or lookarounds), matched against the whole path in linear time; a path over 8 KiB never matches one.' }),
                    value: z.string().startsWith('/', 'a path starting with "/"').max(1024, 'at most 1024 characters (as Gateway API)').default('/'),
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
  .meta({ title: 'HTTPRoute', description: 'Gateway API HTTPRoute: which paths go to which Backend (the sidecar serves chat completions on them).' });

// ---- Our own kinds (llm-failover.dev/v1alpha1) ----

export const OUR_API_VERSION = 'llm-failover.dev/v1alpha1';

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'host:port, e.g. 127.0.0.1:8080');

/** A field's documentation and default, carried into the JSON Schema and docs/configuration.md. */
const doc = (description: string, fallback?: string | number | boolean) => (fallback === undefined ? { description } : { description, default: fallback });
const d = formatDuration;
const S = DEFAULT_SERVER;
const F = DEFAULT_FAILOVER;
const H = DEFAULT_HEALTH;

export const sidecarConfig = z
  .looseObject({
    apiVersion: z.literal(OUR_API_VERSION),
    kind: z.literal('SidecarConfig'),
    metadata: metadata.optional(),
    spec: z.strictObject({
      listen: hostPort.optional().meta(doc('Proxy address. Loopback by default: whoever reaches this port spends the API keys. Flag --listen.', S.listen)),
      admin: hostPort.optional().meta(doc('Admin address for /healthz, /readyz, /status and /metrics. Nothing there can spend a key. Flag --admin.', S.admin)),
      maxBodyBytes: z.number().int().min(1024).max(1 << 30).optional().meta(doc('Largest request body; larger gets 413 before it is all read. Flag --max-body.', S.maxBodyBytes)),
      maxConcurrentRequests: z.number().int().min(1).max(100_000).optional().meta(doc('Requests served upstream at once; more wait in the queue.', S.maxConcurrentRequests)),
      maxQueuedRequests: z.number().int().min(0).max(100_000).optional().meta(doc('Requests waiting for a slot; more get a fast 503 with Retry-After.', S.maxQueuedRequests)),
      queueTimeout: duration.optional().meta(doc('Longest wait in the queue before a 503.', d(S.queueTimeoutMs))),
      maxConnections: z.number().int().min(1).max(1_000_000).optional().meta(doc('Open client connections; more are refused.', S.maxConnections)),
      headersTimeout: duration.optional().meta(doc('Time a client may take to send its request headers (slowloris bound); then 408.', d(S.headersTimeoutMs))),
      requestBodyTimeout: duration.optional().meta(doc('Time a client may take to send its whole request; then 408.', d(S.requestBodyTimeoutMs))),
      drainGrace: duration.optional().meta(doc('On SIGTERM: how long in-flight requests and streams may take to finish.', d(S.drainGraceMs))),
      logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).optional().meta(doc('Log level. Flag --log-level.', S.logLevel)),
    }),
  })
  .meta({ title: 'SidecarConfig', description: 'Process settings of the sidecar (optional: every field has a default).' });

export const timeouts = z.strictObject({
  connect: duration.optional().meta(doc('TCP and TLS connect to the provider.', d(F.timeouts.connectMs))),
  response: duration.optional().meta(doc('Non-streamed: until the whole answer arrived. LLM answers can take minutes.', d(F.timeouts.responseMs))),
  firstToken: duration.optional().meta(doc('Streamed: until the first chunk that carries content.', d(F.timeouts.firstTokenMs))),
  streamIdle: duration.optional().meta(doc('Streamed: the longest silence between two chunks.', d(F.timeouts.streamIdleMs))),
  request: duration.optional().meta(doc('The whole request, every attempt included; then 504.', d(F.requestDeadlineMs))),
});

const percent = z.number().min(1).max(100);

export const healthSettings = z.strictObject({
  probe: z
    .strictObject({
      kind: z
        .enum(['auto', 'chat', 'models', 'none'])
        .optional()
        .meta(doc('auto: free model-list probes for idle models, chat probes where generation must be proven (down models, stuck requests); chat: always chat; models: only model lists; none: no probes (the breaker trial is one user request).', H.probe.kind)),
      interval: duration.optional().meta(doc('Probe interval for down models and for idle models that would be needed next.', d(H.probe.intervalMs))),
      idleInterval: duration.optional().meta(doc('Probe interval for idle models two or more groups below the one carrying traffic.', d(H.probe.idleIntervalMs))),
      timeout: duration.optional().meta(doc('A probe with no first token (chat) or no answer (models) by then fails.', d(H.probe.timeoutMs))),
      jitterPercent: z.number().min(0).max(50).optional().meta(doc('Random spread of each interval, so pods do not probe in lockstep.', H.probe.jitterPercent)),
      healthyThreshold: z.number().int().min(1).max(20).optional().meta(doc('Consecutive good results that bring a model back (unhealthy or degraded).', H.probe.healthyThreshold)),
      unhealthyThreshold: z.number().int().min(1).max(20).optional().meta(doc('Consecutive bad results that take a model out (unhealthy) or mark it slow (degraded).', H.probe.unhealthyThreshold)),
      prompt: z.string().min(1).max(2000).optional().meta(doc('The chat probe\'s prompt.', H.probe.prompt)),
      maxTokens: z.number().int().min(1).max(4096).optional().meta(doc('The chat probe\'s max_completion_tokens (not 1: reasoning models need room).', H.probe.maxTokens)),
    })
    .optional(),
  slowThreshold: duration.optional().meta(doc('Time to first token over this, unhealthyThreshold times in a row, marks a model degraded.', d(H.slowThresholdMs))),
  suspectAfter: duration.optional().meta(doc('An attempt with no first token after this (or 4x the model\'s usual, if longer) triggers a chat probe; if that fails too, the model is marked down and attempts waiting on it move on.', d(H.suspectAfterMs))),
  breaker: z
    .strictObject({
      enabled: z.boolean().optional().meta(doc('A circuit breaker per model, fed by every real attempt.', H.breaker.enabled)),
      consecutiveFailures: z
        .number()
        .int()
        .min(0)
        .max(1000)
        .optional()
        .meta(doc('Failed attempts in a row that open the breaker at once, however many successes the window holds (0: only the window decides).', H.breaker.consecutiveFailures)),
      window: duration.optional().meta(doc('Rolling window the error percentage is computed over.', d(H.breaker.windowMs))),
      errorThresholdPercentage: percent.optional().meta(doc('Error percentage in the window that opens the breaker.', H.breaker.errorThresholdPercentage)),
      volumeThreshold: z.number().int().min(1).max(1000).optional().meta(doc('Attempts in the window before the breaker may open.', H.breaker.volumeThreshold)),
      resetTimeout: duration.optional().meta(doc('Open time before the half-open trial (a probe, or one request with probes off).', d(H.breaker.resetTimeoutMs))),
    })
    .optional(),
});

export const failoverSettings = z.strictObject({
  timeouts: timeouts.optional(),
  maxAttempts: z.number().int().min(0).max(100).optional().meta(doc('Attempts per request; 0 = every candidate once.', F.maxAttempts)),
  cooldown: z
    .strictObject({
      afterFailure: duration.optional().meta(doc('How long a 429/529 without Retry-After cools a model; with probes off, also how long an unreachable model stays out.', d(F.cooldownAfterFailureMs))),
      afterAuthFailure: duration.optional().meta(doc('With probes off: how long a 401/403/404 takes a model out (with probes on: until a probe succeeds).', d(F.cooldownAfterAuthFailureMs))),
      maxRetryAfter: duration.optional().meta(doc('Cap on any Retry-After a provider sends.', d(F.maxRetryAfterMs))),
    })
    .optional(),
  maxResponseBytes: z.number().int().min(1024).max(1 << 30).optional().meta(doc('A non-streamed answer larger than this is not a sane completion: fail over.', F.maxResponseBytes)),
  maxStreamBytes: z.number().int().min(1024).max(2 ** 40).optional().meta(doc('A stream that grows past this is cut with an error event.', F.maxStreamBytes)),
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
            tls: z.boolean().optional().meta(doc('Speak TLS to this provider\'s hostOverride (default: only on port 443).')),
            timeouts: timeouts.optional(),
            health: healthSettings.optional(),
          }),
        )
        .optional()
        .meta(doc('Overrides per provider entry name of the Backend.')),
    }),
  })
  .meta({ title: 'FailoverPolicy', description: 'Timeouts, attempts, cooldowns, probes and breakers for a Backend, with overrides per provider.' });

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
