/**
 * Resolution: the valid documents (documents.ts) into a Plan. The references between documents
 * are followed here: each Backend once (backend.ts resolves its models), the FailoverPolicy that
 * targets it, the HTTPRoute rules that send paths to it, and the SidecarConfig. A reference to
 * something missing is a problem; a reference to a Backend that is present but invalid is not
 * (that Backend's own problems were reported).
 */
import { resolveBackend } from './backend.ts';
import type { Documents, Located } from './documents.ts';
import type { BackendPlan, Plan, RoutePlan } from './plan.ts';
import type { Problem } from './problems.ts';
import { compileRouteRegex } from './routes.ts';
import type { FailoverPolicyDoc, HTTPRouteDoc } from './schema.ts';
import type { SecretOptions } from './secrets.ts';
import { resolveServer } from './settings.ts';

export function resolvePlan(docs: Documents, options: SecretOptions, problems: Problem[]): Plan {
  const { backends: backendDocs, policies, sidecars, invalidBackends } = docs;
  if (backendDocs.length === 0 && problems.length === 0) {
    problems.push({
      file: '(configuration)',
      message: 'no Backend document: at least one gateway.kgateway.dev/v1alpha1 Backend with spec.ai is required',
    });
  }
  if (sidecars.length > 1) {
    for (const extra of sidecars.slice(1))
      problems.push({ file: extra.file, document: extra.label, message: 'only one SidecarConfig document is allowed' });
  }
  const server = resolveServer(sidecars[0]?.doc.spec);

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
    const policy = policyFor(located.doc.metadata.name, policies, problems);
    backends.push(resolveBackend(located, policy, options, problems));
  }
  for (const p of policies) {
    for (const [i, ref] of p.doc.spec.targetRefs.entries()) {
      // (a FailoverPolicy names its Backend without a namespace)
      const invalid = [...invalidBackends].some((id) => id.slice(id.indexOf('/') + 1) === ref.name);
      if (!invalid && !backendDocs.some((b) => b.doc.metadata.name === ref.name))
        problems.push({
          file: p.file,
          document: p.label,
          path: `spec.targetRefs[${i}].name`,
          message: `no Backend named "${ref.name}" in the configuration`,
        });
    }
  }

  const routes = docs.routes.flatMap((located) => routesOf(located, backends, invalidBackends, problems));
  if (backends.length > 0 && !routes.some((r) => r.match.type === 'Exact' && r.match.value === '/v1/chat/completions')) {
    routes.push({ match: { type: 'Exact', value: '/v1/chat/completions' }, backend: backends[0], source: 'default route' });
  }
  return { backends, routes, server };
}

/** The one FailoverPolicy that targets a Backend; a second one is a problem. */
function policyFor(
  backendName: string,
  policies: Located<FailoverPolicyDoc>[],
  problems: Problem[],
): Located<FailoverPolicyDoc> | undefined {
  const matching = policies.filter((p) => p.doc.spec.targetRefs.some((ref) => ref.name === backendName));
  for (const extra of matching.slice(1)) {
    problems.push({
      file: extra.file,
      document: extra.label,
      path: 'spec.targetRefs',
      message: `Backend "${backendName}" is already targeted by ${matching[0].label}`,
    });
  }
  return matching[0];
}

/** An HTTPRoute's rules as routes to resolved Backends, one per match (none: every path). */
function routesOf(
  located: Located<HTTPRouteDoc>,
  backends: BackendPlan[],
  invalidBackends: ReadonlySet<string>,
  problems: Problem[],
): RoutePlan[] {
  const routes: RoutePlan[] = [];
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
  return routes;
}
