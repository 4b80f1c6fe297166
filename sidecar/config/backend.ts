/**
 * One Backend resolved: its provider entries (kgateway's one-model `llm` form, or priority
 * groups) into ModelTargets, each with where it is sent (the provider's facts, or the entry's
 * host, path and auth header overrides), its key (SecretRef, Inline or Passthrough) and its
 * settings (settings.ts: the defaults, the FailoverPolicy, the policy's override for the entry).
 * Nothing here knows a provider by name: the facts come from the registry (providers/).
 */
import { Secret } from '../core/secret.ts';
import type { Located } from './documents.ts';
import { type AuthTokenDoc, headerValueProblem } from './fields.ts';
import type { AuthPlan, BackendPlan, ModelTarget } from './plan.ts';
import type { Problem } from './problems.ts';
import { PROVIDER_KINDS, type ProviderBlock, type ProviderKind, providerFacts } from './providers/index.ts';
import type { BackendDoc, FailoverPolicyDoc, LLMProviderDoc } from './schema.ts';
import { DEFAULT_SECRETS_DIR, resolveSecret, type SecretOptions } from './secrets.ts';
import { resolveFailover, resolveModel } from './settings.ts';

export function resolveBackend(
  located: Located<BackendDoc>,
  policy: Located<FailoverPolicyDoc> | undefined,
  options: SecretOptions,
  problems: Problem[],
): BackendPlan {
  const { doc } = located;
  const namespace = doc.metadata.namespace ?? 'default';
  const spec = policy?.doc.spec;
  const settings = resolveFailover(spec);
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
      problems.push({
        file: located.file,
        document: located.label,
        path: `${path}.name`,
        message: `provider name "${name}" is used twice in this Backend; names must be unique across all priority groups`,
      });
      continue;
    }
    names.add(name);
    // the schema let exactly one served block through
    const kind = PROVIDER_KINDS.find((k) => provider[k] !== undefined) as ProviderKind;
    const block = provider[kind] as ProviderBlock;
    const facts = providerFacts(kind);
    const override = spec?.providers?.[name];
    const host = provider.hostOverride;
    const tls = override?.tls ?? (host ? host.port === 443 : true);
    const origin = host
      ? `${tls ? 'https' : 'http'}://${host.host.includes(':') ? `[${host.host}]` : host.host}:${host.port}`
      : facts.origin;
    const header = (provider.authHeaderOverride?.headerName ?? facts.auth.header).toLowerCase();
    const prefix = provider.authHeaderOverride?.prefix !== undefined ? withSpace(provider.authHeaderOverride.prefix) : facts.auth.prefix;
    const auth = resolveAuth(block.authToken, header, prefix, `${path}.${kind}.authToken`, located, options, problems);
    const target: ModelTarget = {
      name,
      key: `${namespace}/${doc.metadata.name}/${name}`,
      backend: doc.metadata.name,
      group,
      provider: kind,
      model: block.model,
      origin,
      path: provider.pathOverride?.fullPath ?? facts.chatPath,
      auth,
      ...resolveModel(spec, override),
    };
    Object.assign(target, facts.targetFields?.(block));
    groups[group] ??= [];
    groups[group].push(target);
  }
  if (policy?.doc.spec.providers) {
    for (const providerName of Object.keys(policy.doc.spec.providers)) {
      if (!names.has(providerName))
        problems.push({
          file: policy.file,
          document: policy.label,
          path: `spec.providers.${providerName}`,
          message: `Backend "${doc.metadata.name}" has no provider named "${providerName}"`,
        });
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
  options: SecretOptions,
  problems: Problem[],
): AuthPlan {
  if (token.kind === 'Passthrough') return { kind: 'passthrough', header, prefix };
  if (token.kind === 'Inline') {
    const problem = headerValueProblem(token.inline!);
    if (problem)
      problems.push({
        file: located.file,
        document: located.label,
        path: `${path}.inline`,
        message: `the Inline token is not a valid header value: ${problem}`,
      });
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
