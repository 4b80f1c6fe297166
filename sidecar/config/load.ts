/**
 * Configuration loading: YAML files (one file of several documents, or a folder of them) ->
 * validated documents -> a resolved Plan. Every problem is collected and reported at once.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { z } from 'zod';
import { parseDuration } from './duration.ts';
import {
  type AuthPlan,
  type BackendPlan,
  DEFAULT_FAILOVER,
  DEFAULT_HEALTH,
  DEFAULT_SERVER,
  type FailoverSettings,
  type HealthSettings,
  type ModelTarget,
  type Plan,
  type ProviderKind,
  type RoutePlan,
  type ServerSettings,
  type Timeouts,
} from './plan.ts';
import { ConfigError, formatPath, type Problem } from './problems.ts';
import {
  type AuthTokenDoc,
  type BackendDoc,
  DOCUMENT_KINDS,
  type FailoverPolicyDoc,
  headerValueProblem,
  type HTTPRouteDoc,
  type LLMProviderDoc,
  type SidecarConfigDoc,
} from './schema.ts';
import { compileRouteRegex } from './routes.ts';
import { FileSecret, Secret } from '../core/secret.ts';
import { DEFAULT_SECRETS_DIR, resolveSecret } from './secrets.ts';

export interface LoadOptions {
  secretsDir?: string;
  env?: NodeJS.ProcessEnv;
  /** How often mounted secret files are checked for rotation (default 2 s). */
  secretPollMs?: number;
}

export interface SourceFile {
  name: string;
  text: string;
}

interface Located<T> {
  doc: T;
  file: string;
  label: string;
}

/** Reads a YAML file, or every .yaml/.yml/.json file of a folder (sorted, hidden entries skipped: the kubelet's ..data links). */
/**
 * The yaml library's message without the text it quotes (after ": "), which may be a key:
 * "Block scalar header includes extra characters: >sk-..." -> "Block scalar header includes extra characters".
 */
function yamlMessage(message: string): string {
  const first = message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
  const quote = first.indexOf(': ');
  return quote === -1 ? first : first.slice(0, quote);
}

export function readConfigSources(path: string): SourceFile[] {
  let stat: ReturnType<typeof statSync>;
  try {
    stat = statSync(path);
  } catch {
    throw new ConfigError([{ file: path, message: 'cannot read: no such file or folder' }]);
  }
  if (!stat.isDirectory()) return [{ name: path, text: readFileSync(path, 'utf8') }];
  const files = readdirSync(path)
    .filter((f) => !f.startsWith('.') && /\.(ya?ml|json)$/.test(f))
    .sort();
  if (files.length === 0) throw new ConfigError([{ file: path, message: 'the folder holds no .yaml, .yml or .json file' }]);
  return files.map((f) => ({ name: join(path, f), text: readFileSync(join(path, f), 'utf8') }));
}

export function loadPlanFromPath(path: string, options: LoadOptions = {}): Plan {
  return loadPlan(readConfigSources(path), options);
}

export function loadPlan(sources: SourceFile[], options: LoadOptions = {}): Plan {
  const problems: Problem[] = [];
  const backends: Located<BackendDoc>[] = [];
  const routes: Located<HTTPRouteDoc>[] = [];
  const policies: Located<FailoverPolicyDoc>[] = [];
  const sidecars: Located<SidecarConfigDoc>[] = [];
  /** "namespace/name" of every Backend document present but invalid (its problems are already reported). */
  const invalidBackends = new Set<string>();

  for (const source of sources) {
    // logLevel error: the yaml library would otherwise print warnings quoting the text (which may hold a key)
    const docs = parseAllDocuments(source.text, { logLevel: 'error' });
    const list = Array.isArray(docs) ? docs : [docs];
    list.forEach((yamlDoc, index) => {
      const fallbackLabel = `document ${index + 1}`;
      if (yamlDoc.errors.length > 0) {
        for (const err of yamlDoc.errors) {
          problems.push({
            file: source.name,
            document: fallbackLabel,
            line: err.linePos?.[0].line,
            column: err.linePos?.[0].col,
            message: `YAML syntax: ${yamlMessage(err.message)}`,
          });
        }
        return;
      }
      let value: unknown;
      try {
        value = yamlDoc.toJS({ maxAliasCount: 100 });
      } catch (err) {
        // an alias to a missing anchor, an alias bomb
        problems.push({ file: source.name, document: fallbackLabel, message: `YAML: ${yamlMessage(err instanceof Error ? err.message : String(err))}` });
        return;
      }
      if (value === null || value === undefined) return; // an empty document (e.g. a trailing ---)
      if (typeof value !== 'object' || Array.isArray(value)) {
        problems.push({ file: source.name, document: fallbackLabel, message: 'expected a mapping with apiVersion and kind' });
        return;
      }
      const raw = value as Record<string, unknown>;
      const kind = typeof raw.kind === 'string' ? raw.kind.slice(0, 64) : undefined;
      const apiGroup = typeof raw.apiVersion === 'string' ? raw.apiVersion.split('/')[0] : undefined;
      const name = (raw.metadata as { name?: unknown } | undefined)?.name;
      const label = kind ? `${kind}/${typeof name === 'string' ? name : `(${fallbackLabel})`}` : fallbackLabel;
      const schema = DOCUMENT_KINDS[`${apiGroup}/${kind}` as keyof typeof DOCUMENT_KINDS] as z.ZodType | undefined;
      if (!schema) {
        problems.push({
          file: source.name,
          document: label,
          path: 'kind',
          message: `unknown document kind ${typeof raw.apiVersion === 'string' ? raw.apiVersion.slice(0, 64) : '(no apiVersion)'} ${kind ?? '(no kind)'}; expected gateway.kgateway.dev/v1alpha1 Backend, gateway.networking.k8s.io/v1 HTTPRoute, llm-failover.dev/v1alpha1 SidecarConfig or FailoverPolicy`,
        });
        return;
      }
      const parsed = schema.safeParse(raw);
      if (!parsed.success) {
        for (const issue of parsed.error.issues) {
          problems.push({ file: source.name, document: label, path: formatPath(issue.path), message: issue.message });
        }
        if (kind === 'Backend' && typeof name === 'string') {
          // reported once, here: references to it (HTTPRoute, FailoverPolicy) must not add "no Backend" problems
          const ns = (raw.metadata as { namespace?: unknown }).namespace;
          invalidBackends.add(`${typeof ns === 'string' && ns ? ns : 'default'}/${name}`);
        }
        return;
      }
      const located = { doc: parsed.data, file: source.name, label };
      if (kind === 'Backend') backends.push(located as Located<BackendDoc>);
      else if (kind === 'HTTPRoute') routes.push(located as Located<HTTPRouteDoc>);
      else if (kind === 'FailoverPolicy') policies.push(located as Located<FailoverPolicyDoc>);
      else sidecars.push(located as Located<SidecarConfigDoc>);
    });
  }

  const plan = resolve(backends, routes, policies, sidecars, options, problems, invalidBackends);
  if (problems.length > 0) {
    // a rejected configuration (at start, or a reload) leaves no secret file watched
    for (const m of plan.backends.flatMap((b) => b.groups.flat())) if (m.auth.kind === 'static' && m.auth.token instanceof FileSecret) m.auth.token.close();
    throw new ConfigError(problems);
  }
  return plan;
}

function resolve(
  backendDocs: Located<BackendDoc>[],
  routeDocs: Located<HTTPRouteDoc>[],
  policyDocs: Located<FailoverPolicyDoc>[],
  sidecarDocs: Located<SidecarConfigDoc>[],
  options: LoadOptions,
  problems: Problem[],
  invalidBackends: ReadonlySet<string>,
): Plan {
  if (backendDocs.length === 0 && problems.length === 0) {
    problems.push({ file: '(configuration)', message: 'no Backend document: at least one gateway.kgateway.dev/v1alpha1 Backend with spec.ai is required' });
  }
  if (sidecarDocs.length > 1) {
    for (const extra of sidecarDocs.slice(1))
      problems.push({ file: extra.file, document: extra.label, message: 'only one SidecarConfig document is allowed' });
  }
  const server = serverSettings(sidecarDocs[0]);

  const backends: BackendPlan[] = [];
  const seen = new Set<string>();
  for (const located of backendDocs) {
    const ns = located.doc.metadata.namespace ?? 'default';
    const id = `${ns}/${located.doc.metadata.name}`;
    if (seen.has(id)) {
      problems.push({ file: located.file, document: located.label, path: 'metadata.name', message: `Backend ${id} is declared twice` });
      continue;
    }
    seen.add(id);
    const policy = policyFor(located.doc.metadata.name, policyDocs, problems);
    backends.push(resolveBackend(located, policy, options, problems));
  }
  for (const p of policyDocs) {
    for (const [i, ref] of p.doc.spec.targetRefs.entries()) {
      // (a FailoverPolicy names its Backend without a namespace)
      const invalid = [...invalidBackends].some((id) => id.slice(id.indexOf('/') + 1) === ref.name);
      if (!invalid && !backendDocs.some((b) => b.doc.metadata.name === ref.name))
        problems.push({ file: p.file, document: p.label, path: `spec.targetRefs[${i}].name`, message: `no Backend named "${ref.name}" in the configuration` });
    }
  }

  const routes: RoutePlan[] = [];
  for (const located of routeDocs) {
    const routeNs = located.doc.metadata.namespace ?? 'default';
    located.doc.spec.rules.forEach((rule, r) => {
      const ref = rule.backendRefs[0];
      const refNs = ref.namespace ?? routeNs;
      const target = backends.find((b) => b.name === ref.name && b.namespace === refNs);
      if (!target) {
        // a Backend that is there but invalid was reported already: one problem, not two
        if (invalidBackends.has(`${refNs}/${ref.name}`)) return;
        problems.push({
          file: located.file,
          document: located.label,
          path: `spec.rules[${r}].backendRefs[0]`,
          message: `no Backend ${refNs}/${ref.name} in the configuration`,
        });
        return;
      }
      const matches = rule.matches?.length ? rule.matches : [{ path: { type: 'PathPrefix' as const, value: '/' } }];
      matches.forEach((m, i) => {
        const match = m.path ?? { type: 'PathPrefix' as const, value: '/' };
        if (match.type === 'RegularExpression') {
          try {
            compileRouteRegex(match.value);
          } catch (err) {
            problems.push({
              file: located.file,
              document: located.label,
              path: `spec.rules[${r}].matches[${i}].path.value`,
              message: `invalid regular expression (RE2 syntax, as Envoy uses): ${(err as Error).message.replace(/^error parsing regexp: /, '')}`,
            });
            return;
          }
        }
        routes.push({ match, backend: target, source: `${located.label} rule ${r}` });
      });
    });
  }
  if (backends.length > 0 && !routes.some((r) => r.match.type === 'Exact' && r.match.value === '/v1/chat/completions')) {
    routes.push({ match: { type: 'Exact', value: '/v1/chat/completions' }, backend: backends[0], source: 'default route' });
  }
  return { backends, routes, server };
}

function serverSettings(located: Located<SidecarConfigDoc> | undefined): ServerSettings {
  const spec = located?.doc.spec ?? {};
  return {
    listen: spec.listen ?? DEFAULT_SERVER.listen,
    admin: spec.admin ?? DEFAULT_SERVER.admin,
    maxBodyBytes: spec.maxBodyBytes ?? DEFAULT_SERVER.maxBodyBytes,
    maxConcurrentRequests: spec.maxConcurrentRequests ?? DEFAULT_SERVER.maxConcurrentRequests,
    maxQueuedRequests: spec.maxQueuedRequests ?? DEFAULT_SERVER.maxQueuedRequests,
    queueTimeoutMs: ms(spec.queueTimeout, DEFAULT_SERVER.queueTimeoutMs),
    maxConnections: spec.maxConnections ?? DEFAULT_SERVER.maxConnections,
    headersTimeoutMs: ms(spec.headersTimeout, DEFAULT_SERVER.headersTimeoutMs),
    requestBodyTimeoutMs: ms(spec.requestBodyTimeout, DEFAULT_SERVER.requestBodyTimeoutMs),
    drainGraceMs: ms(spec.drainGrace, DEFAULT_SERVER.drainGraceMs),
    logLevel: spec.logLevel ?? DEFAULT_SERVER.logLevel,
  };
}

function policyFor(backendName: string, policies: Located<FailoverPolicyDoc>[], problems: Problem[]): Located<FailoverPolicyDoc> | undefined {
  const matching = policies.filter((p) => p.doc.spec.targetRefs.some((ref) => ref.name === backendName));
  for (const extra of matching.slice(1)) {
    problems.push({ file: extra.file, document: extra.label, path: 'spec.targetRefs', message: `Backend "${backendName}" is already targeted by ${matching[0].label}` });
  }
  return matching[0];
}

function ms(value: string | undefined, fallback: number): number {
  return value === undefined ? fallback : parseDuration(value)!;
}

function timeoutsFrom(spec: FailoverPolicyDoc['spec']['timeouts'], base: Timeouts): Timeouts {
  return {
    connectMs: ms(spec?.connect, base.connectMs),
    responseMs: ms(spec?.response, base.responseMs),
    firstTokenMs: ms(spec?.firstToken, base.firstTokenMs),
    streamIdleMs: ms(spec?.streamIdle, base.streamIdleMs),
  };
}

type HealthDoc = NonNullable<FailoverPolicyDoc['spec']['health']>;

function healthFrom(doc: HealthDoc | undefined, base: HealthSettings): HealthSettings {
  if (!doc) return base;
  const p = doc.probe ?? {};
  const b = doc.breaker ?? {};
  return {
    probe: {
      kind: p.kind ?? base.probe.kind,
      intervalMs: ms(p.interval, base.probe.intervalMs),
      idleIntervalMs: ms(p.idleInterval, base.probe.idleIntervalMs),
      timeoutMs: ms(p.timeout, base.probe.timeoutMs),
      jitterPercent: p.jitterPercent ?? base.probe.jitterPercent,
      healthyThreshold: p.healthyThreshold ?? base.probe.healthyThreshold,
      unhealthyThreshold: p.unhealthyThreshold ?? base.probe.unhealthyThreshold,
      prompt: p.prompt ?? base.probe.prompt,
      maxTokens: p.maxTokens ?? base.probe.maxTokens,
    },
    slowThresholdMs: ms(doc.slowThreshold, base.slowThresholdMs),
    suspectAfterMs: ms(doc.suspectAfter, base.suspectAfterMs),
    breaker: {
      enabled: b.enabled ?? base.breaker.enabled,
      consecutiveFailures: b.consecutiveFailures ?? base.breaker.consecutiveFailures,
      windowMs: ms(b.window, base.breaker.windowMs),
      errorThresholdPercentage: b.errorThresholdPercentage ?? base.breaker.errorThresholdPercentage,
      volumeThreshold: b.volumeThreshold ?? base.breaker.volumeThreshold,
      resetTimeoutMs: ms(b.resetTimeout, base.breaker.resetTimeoutMs),
    },
  };
}

function failoverSettings(policy: Located<FailoverPolicyDoc> | undefined): FailoverSettings {
  const spec = policy?.doc.spec;
  const d = DEFAULT_FAILOVER;
  return {
    timeouts: timeoutsFrom(spec?.timeouts, d.timeouts),
    requestDeadlineMs: ms(spec?.timeouts?.request, d.requestDeadlineMs),
    maxAttempts: spec?.maxAttempts ?? d.maxAttempts,
    cooldownAfterFailureMs: ms(spec?.cooldown?.afterFailure, d.cooldownAfterFailureMs),
    cooldownAfterAuthFailureMs: ms(spec?.cooldown?.afterAuthFailure, d.cooldownAfterAuthFailureMs),
    maxRetryAfterMs: ms(spec?.cooldown?.maxRetryAfter, d.maxRetryAfterMs),
    maxResponseBytes: spec?.maxResponseBytes ?? d.maxResponseBytes,
    maxStreamBytes: spec?.maxStreamBytes ?? d.maxStreamBytes,
  };
}

const PROVIDER_DEFAULTS: Record<ProviderKind, { origin: string; path: string; header: string; prefix: string }> = {
  openai: { origin: 'https://api.openai.com', path: '/v1/chat/completions', header: 'authorization', prefix: 'Bearer ' },
  anthropic: { origin: 'https://api.anthropic.com', path: '/v1/messages', header: 'x-api-key', prefix: '' },
};

export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';

function resolveBackend(
  located: Located<BackendDoc>,
  policy: Located<FailoverPolicyDoc> | undefined,
  options: LoadOptions,
  problems: Problem[],
): BackendPlan {
  const { doc } = located;
  const namespace = doc.metadata.namespace ?? 'default';
  const settings = failoverSettings(policy);
  const ai = doc.spec.ai;
  const entries: { provider: LLMProviderDoc & { name?: string }; group: number; path: string }[] = ai.llm
    ? [{ provider: ai.llm, group: 0, path: 'spec.ai.llm' }]
    : (ai.priorityGroups ?? []).flatMap((g, gi) =>
        g.providers.map((p, pi) => ({ provider: p, group: gi, path: `spec.ai.priorityGroups[${gi}].providers[${pi}]` })),
      );

  const groups: ModelTarget[][] = [];
  const names = new Set<string>();
  for (const { provider, group, path } of entries) {
    const name = provider.name ?? doc.metadata.name;
    if (names.has(name)) {
      problems.push({ file: located.file, document: located.label, path: `${path}.name`, message: `provider name "${name}" is used twice in this Backend; names must be unique across all priority groups` });
      continue;
    }
    names.add(name);
    const kind: ProviderKind = provider.openai ? 'openai' : 'anthropic';
    const block = provider.openai ?? provider.anthropic!;
    const defaults = PROVIDER_DEFAULTS[kind];
    const overrides = policy?.doc.spec.providers?.[name];
    const host = provider.hostOverride;
    const tls = overrides?.tls ?? (host ? host.port === 443 : true);
    const origin = host ? `${tls ? 'https' : 'http'}://${host.host.includes(':') ? `[${host.host}]` : host.host}:${host.port}` : defaults.origin;
    const header = (provider.authHeaderOverride?.headerName ?? defaults.header).toLowerCase();
    const prefix = provider.authHeaderOverride?.prefix !== undefined ? withSpace(provider.authHeaderOverride.prefix) : defaults.prefix;
    const auth = resolveAuth(block.authToken, header, prefix, `${path}.${kind}.authToken`, located, options, problems);
    const target: ModelTarget = {
      name,
      key: `${namespace}/${doc.metadata.name}/${name}`,
      backend: doc.metadata.name,
      group,
      provider: kind,
      model: block.model,
      origin,
      path: provider.pathOverride?.fullPath ?? defaults.path,
      auth,
      timeouts: timeoutsFrom(overrides?.timeouts, settings.timeouts),
      health: healthFrom(overrides?.health, healthFrom(policy?.doc.spec.health, DEFAULT_HEALTH)),
    };
    if (kind === 'anthropic') target.apiVersion = provider.anthropic?.apiVersion ?? DEFAULT_ANTHROPIC_VERSION;
    groups[group] ??= [];
    groups[group].push(target);
  }
  if (policy?.doc.spec.providers) {
    for (const providerName of Object.keys(policy.doc.spec.providers)) {
      if (!names.has(providerName))
        problems.push({ file: policy.file, document: policy.label, path: `spec.providers.${providerName}`, message: `Backend "${doc.metadata.name}" has no provider named "${providerName}"` });
    }
  }
  return { name: doc.metadata.name, namespace, groups: groups.filter(Boolean), settings };
}

function withSpace(prefix: string): string {
  return prefix === '' || prefix.endsWith(' ') ? prefix : `${prefix} `;
}

function resolveAuth(
  token: AuthTokenDoc,
  header: string,
  prefix: string,
  path: string,
  located: Located<BackendDoc>,
  options: LoadOptions,
  problems: Problem[],
): AuthPlan {
  if (token.kind === 'Passthrough') return { kind: 'passthrough', header, prefix };
  if (token.kind === 'Inline') {
    const problem = headerValueProblem(token.inline!);
    if (problem) problems.push({ file: located.file, document: located.label, path: `${path}.inline`, message: `the Inline token is not a valid header value: ${problem}` });
    return { kind: 'static', header, prefix, token: new Secret(problem ? '' : token.inline!), source: 'Inline' };
  }
  const secretName = token.secretRef!.name;
  const found = resolveSecret(secretName, options.secretsDir ?? DEFAULT_SECRETS_DIR, options.env, options.secretPollMs);
  if (!found.ok && 'problem' in found) {
    problems.push({ file: located.file, document: located.label, path: `${path}.secretRef.name`, message: found.problem });
    return { kind: 'static', header, prefix, token: new Secret(''), source: 'SecretRef', secretName };
  }
  if (!found.ok) {
    problems.push({
      file: located.file,
      document: located.label,
      path: `${path}.secretRef.name`,
      message: `secret "${secretName}" not found (looked in ${found.tried.join(' and ')})`,
    });
    return { kind: 'static', header, prefix, token: new Secret(''), source: 'SecretRef', secretName };
  }
  return { kind: 'static', header, prefix, token: found.secret, source: 'SecretRef', secretName, foundIn: found.source };
}
