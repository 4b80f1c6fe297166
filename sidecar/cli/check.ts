/**
 * `llm-failover-sidecar check --config PATH`: everything the sidecar would load, checked
 * without starting it (YAML, schema, references between documents, secrets present and
 * readable, values in range, providers served), then the resolved plan in words.
 */
import { formatDuration as d } from '../config/duration.ts';
import { loadPlanFromPath } from '../config/load.ts';
import type { ModelTarget, Plan } from '../config/plan.ts';
import { ConfigError } from '../config/problems.ts';

export interface CheckResult {
  ok: boolean;
  text: string;
}

function auth(m: ModelTarget): string {
  const a = m.auth;
  if (a.kind === 'passthrough') return `auth Passthrough (the client's Authorization, sent as ${a.header})`;
  if (a.source === 'Inline') return `auth Inline (sent as ${a.header})`;
  return `auth SecretRef ${a.secretName} (found in ${a.foundIn}; sent as ${a.header})`;
}

function health(m: ModelTarget): string {
  const p = m.health.probe;
  const b = m.health.breaker;
  const probes =
    p.kind === 'none'
      ? 'no probes'
      : `probes ${p.kind} every ${d(p.intervalMs)} (idle ${d(p.idleIntervalMs)}), timeout ${d(p.timeoutMs)}, thresholds ${p.healthyThreshold} up / ${p.unhealthyThreshold} down`;
  const breaker = b.enabled
    ? `breaker opens at ${b.errorThresholdPercentage}% of >= ${b.volumeThreshold} attempts in ${d(b.windowMs)}, trial after ${d(b.resetTimeoutMs)}`
    : 'no breaker';
  return `${probes}; slow over ${d(m.health.slowThresholdMs)} to first token; ${breaker}`;
}

export function describePlan(plan: Plan): string {
  const lines: string[] = [];
  for (const b of plan.backends) {
    lines.push(`Backend ${b.namespace}/${b.name}`);
    const routes = plan.routes.filter((r) => r.backend === b).map((r) => `${r.match.type} ${r.match.value} (${r.source})`);
    lines.push(`  routes: ${routes.join(', ') || 'none'}`);
    const s = b.settings;
    lines.push(
      `  timeouts: connect ${d(s.timeouts.connectMs)}, answer ${d(s.timeouts.responseMs)}, first token ${d(s.timeouts.firstTokenMs)}, stream idle ${d(s.timeouts.streamIdleMs)}, request ${d(s.requestDeadlineMs)}; attempts ${s.maxAttempts || 'every candidate once'}`,
    );
    b.groups.forEach((group, i) => {
      lines.push(`  priority group ${i + 1}${group.length > 1 ? ' (round robin)' : ''}:`);
      for (const m of group) {
        lines.push(`    ${m.name}: ${m.provider} ${m.model ?? "(the client's model)"} at ${m.origin}${m.path}`);
        lines.push(`      ${auth(m)}`);
        lines.push(`      ${health(m)}`);
      }
    });
  }
  const v = plan.server;
  lines.push(
    `Server: listen ${v.listen}, admin ${v.admin}, body up to ${v.maxBodyBytes} bytes, ${v.maxConcurrentRequests} concurrent + ${v.maxQueuedRequests} queued requests, drain ${d(v.drainGraceMs)}`,
  );
  return lines.join('\n');
}

export function check(path: string, secretsDir: string): CheckResult {
  let plan: Plan;
  try {
    plan = loadPlanFromPath(path, { secretsDir });
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, text: `${err.message}\nThe sidecar would not start.` };
    return { ok: false, text: `cannot check ${path}: ${(err as Error).message}` };
  }
  return { ok: true, text: `${describePlan(plan)}\nOK: the sidecar would start with this configuration.` };
}
