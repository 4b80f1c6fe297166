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

const DAY_MS = 86_400_000;

/** A chat probe's tokens: the prompt estimated as characters/4 in, at most maxTokens out. */
export function chatProbeTokens(m: ModelTarget): { in: number; out: number } {
  const p = m.health.probe;
  return { in: Math.ceil(p.prompt.length / 4), out: p.maxTokens };
}

/**
 * What a model is probed with in the steady state (traffic on the first group, no real traffic
 * proving any model, every model healthy), and what that costs per day.
 */
export function probePlan(m: ModelTarget): { kind: 'chat' | 'models' | 'none'; everyMs: number; perDay: number; tokensPerDay: number } {
  const p = m.health.probe;
  let kind: 'chat' | 'models' | 'none';
  let everyMs = p.intervalMs;
  if (p.kind === 'none') kind = 'none';
  else if (p.kind === 'chat' || p.kind === 'models') kind = p.kind;
  else if (m.group <= 1) kind = 'chat';
  else {
    kind = 'models';
    everyMs = Math.max(p.intervalMs, p.idleIntervalMs);
  }
  if (kind === 'none') return { kind, everyMs: 0, perDay: 0, tokensPerDay: 0 };
  const perDay = Math.round(DAY_MS / everyMs);
  const t = chatProbeTokens(m);
  return { kind, everyMs, perDay, tokensPerDay: kind === 'chat' ? perDay * (t.in + t.out) : 0 };
}

function probeCost(m: ModelTarget): string {
  const plan = probePlan(m);
  if (plan.kind === 'none') return 'none';
  const edge = d(Math.min(m.health.probe.edgeIntervalMs, m.health.probe.intervalMs));
  const n = plan.perDay.toLocaleString('en-US');
  if (plan.kind === 'models')
    return `model list every ${d(plan.everyMs)} (${n} calls a day, no tokens); transitions confirmed after ${edge}`;
  const t = chatProbeTokens(m);
  return `chat every ${d(plan.everyMs)} (${n} a day, each ~${t.in} tokens in + up to ${t.out} out: up to ${plan.tokensPerDay.toLocaleString('en-US')} tokens a day); transitions confirmed after ${edge}`;
}

const COST_NOTE =
  'Probe cost: per model per day in the steady state, traffic on the first group and no real traffic proving any model (a model that served real traffic well within the interval is not probed: less in practice); prompt tokens estimated as characters/4 (chat framing not counted), output at most maxTokens; outages add chat probes on a backoff from the edge interval, up to one per interval.';

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
    const probed = b.groups.flat().filter((m) => m.health.probe.kind !== 'none');
    if (probed.length > 0) {
      lines.push('  probe plan (steady state: traffic on the first group, no real traffic proving the models):');
      for (const m of probed) lines.push(`    ${m.name}: ${probeCost(m)}`);
    }
  }
  if (plan.backends.some((b) => b.groups.flat().some((m) => m.health.probe.kind !== 'none'))) lines.push(COST_NOTE);
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
