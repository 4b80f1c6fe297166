/**
 * The failover bench: `npm run bench -- failover` (or `node bench/failover.ts`).
 *
 * Steady open-loop load (200 req/s by default) through a sidecar with the default health
 * settings (probes on, breakers on) in front of two simulated models in two priority groups,
 * while the primary is switched into one fault after another and back:
 *   refuse  the port closes (connection refused)
 *   503     every request answered 503
 *   429     every request answered 429 with Retry-After: 2
 *   hang    requests are read and never answered
 *   slow    streamed requests: the first token comes after 10 s, past the 8 s slowThreshold
 * For each: client-visible errors, when the sidecar marked the primary down (detection),
 * requests sent to the primary while it was marked down, p99 in the fault window, and how long
 * after the fault cleared the primary was healthy again and served traffic again.
 *
 * Everything runs in this process (simulators, sidecar via startSidecar, load): it measures
 * behaviour, not CPU. Health transitions come from sidecar.events ('health'), attempts from
 * 'attempt-start' (which carries the model's state when it was selected).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { loadPlan } from '../sidecar/config/load.ts';
import type { HealthState } from '../sidecar/core/health-state.ts';
import { startSidecar } from '../sidecar/runtime/main.ts';
import { createLogger } from '../sidecar/observe/log.ts';
import { type Fault, type SimulatedProvider, startOpenAISimulator } from '../simulator/index.ts';
import { sidecarYaml } from './configs.ts';
import { summarize } from './loadgen.ts';
import { ROOT } from './proc.ts';
import { fmt, table } from './stats.ts';

interface Scenario {
  id: string;
  label: string;
  fault: Fault;
  stream: boolean;
  /** How long the fault lasts. */
  faultMs: number;
}

const SCENARIOS: Scenario[] = [
  { id: 'refuse', label: 'connection refused', fault: { kind: 'refuse' }, stream: false, faultMs: 8000 },
  { id: '503', label: '503 on every request', fault: { kind: 'status', status: 503 }, stream: false, faultMs: 8000 },
  {
    id: '429',
    label: '429, Retry-After: 2',
    fault: { kind: 'status', status: 429, headers: { 'retry-after': '2' } },
    stream: false,
    faultMs: 8000,
  },
  { id: 'hang', label: 'hangs (never answers)', fault: { kind: 'hang' }, stream: false, faultMs: 15_000 },
  {
    id: 'slow',
    label: 'first token after 10 s (streamed)',
    fault: { kind: 'slowFirstToken', delayMs: 10_000 },
    stream: true,
    faultMs: 15_000,
  },
];

const USER_PROMPT = 'bench: failover under load';

interface Sample {
  t0: number;
  t1: number;
  status: number;
  ok: boolean;
  provider?: string;
  attempts?: number;
  error?: string;
}

interface ScenarioResult {
  id: string;
  label: string;
  requests: number;
  clientErrors: number;
  firstError?: string;
  /** Fault start -> the primary left healthy/degraded (ms). */
  detectMs?: number;
  detectedAs?: string;
  detectCause?: string;
  /** User attempts sent to the primary while the sidecar had it marked down (not usable when selected). */
  attemptsWhileDown: number;
  /** User requests the primary's simulator received while the sidecar had it marked down (not for refuse: nothing arrives). */
  simRequestsWhileDown?: number;
  /** Every user attempt the primary got during the fault (the ones that found it out, the ones after a cooldown ended). */
  attemptsDuringFault: number;
  failovers: number;
  baselineP99: number;
  faultP50: number;
  faultP99: number;
  faultMax: number;
  /** Fault cleared -> primary healthy again / first user request served by it (ms). */
  healthyAfterMs?: number;
  servingAfterMs?: number;
  states: { at: number; from: HealthState; to: HealthState; cause: string }[];
}

async function runScenario(sc: Scenario, rate: number, baselineMs: number, recoveryMs: number): Promise<ScenarioResult> {
  const primary = await startOpenAISimulator({ model: 'gpt-4o' });
  const secondary = await startOpenAISimulator({ model: 'gpt-4o-mini' });
  const sims: SimulatedProvider[] = [primary, secondary];
  const yaml = sidecarYaml(
    [
      {
        name: 'model-failover',
        route: '/model',
        groups: [
          [{ name: 'primary', kind: 'openai', model: 'gpt-4o', port: primary.port, path: '/v1/chat/completions' }],
          [{ name: 'secondary', kind: 'openai', model: 'gpt-4o-mini', port: secondary.port, path: '/v1/chat/completions' }],
        ],
      },
    ],
    '127.0.0.1:0',
    '127.0.0.1:0',
  );
  const plan = loadPlan([{ name: 'failover-bench.yaml', text: yaml }]);
  const sidecar = await startSidecar({ plan, logger: createLogger('silent'), env: {} });
  const states: ScenarioResult['states'] = [];
  let faultAt = Number.POSITIVE_INFINITY;
  let clearAt = Number.POSITIVE_INFINITY;
  sidecar.events.on('health', (e) => {
    if (e.model.name === 'primary') states.push({ at: e.at, from: e.from, to: e.to, cause: e.cause });
  });
  let attemptsWhileDown = 0;
  let attemptsDuringFault = 0;
  let failovers = 0;
  sidecar.events.on('attempt-start', (e) => {
    if (e.model.name !== 'primary') return;
    if (e.state !== 'healthy' && e.state !== 'degraded') attemptsWhileDown++;
    if (e.at >= faultAt && e.at < clearAt) attemptsDuringFault++;
  });
  sidecar.events.on('switch', () => {
    failovers++;
  });

  const pool = new Pool(sidecar.url, { connections: 5000, pipelining: 1 });
  const body = JSON.stringify({ messages: [{ role: 'user', content: USER_PROMPT }], max_tokens: 64, stream: sc.stream });
  const samples: Sample[] = [];
  const pending = new Set<Promise<void>>();
  const one = async () => {
    const s: Sample = { t0: Date.now(), t1: 0, status: 0, ok: false };
    samples.push(s);
    try {
      const res = await pool.request({
        path: '/model',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(60_000),
      });
      const text = await res.body.text();
      s.status = res.statusCode;
      s.provider = res.headers['x-llm-failover-provider'] as string | undefined;
      s.attempts = Number(res.headers['x-llm-failover-attempts'] ?? 0);
      s.ok = res.statusCode === 200 && (!sc.stream || (text.trimEnd().endsWith('data: [DONE]') && !text.includes('"error"')));
      if (!s.ok) s.error = `${res.statusCode} ${text.slice(0, 200)}`;
    } catch (err) {
      s.error = (err as Error).message;
    }
    s.t1 = Date.now();
  };

  // open loop: requests start on schedule whatever the answers do
  let stop = false;
  const started = Date.now();
  let sent = 0;
  const loop = (async () => {
    while (!stop) {
      const due = Math.floor(((Date.now() - started) / 1000) * rate);
      while (sent < due) {
        const p = one();
        pending.add(p);
        void p.finally(() => pending.delete(p));
        sent++;
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  })();

  await new Promise((r) => setTimeout(r, baselineMs));
  faultAt = Date.now();
  primary.setFault(sc.fault);
  await new Promise((r) => setTimeout(r, sc.faultMs));
  clearAt = Date.now();
  primary.clearFault();
  await primary.ready();
  // wait until the primary is healthy and served a user request again (or give up)
  const deadline = Date.now() + recoveryMs;
  const servedAgain = () => samples.find((x) => x.t0 >= clearAt && x.provider === 'primary' && x.ok);
  while (Date.now() < deadline && !(sidecar.health.state(plan.backends[0].groups[0][0]) === 'healthy' && servedAgain())) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 500));
  stop = true;
  await loop;
  await Promise.all(pending);
  await pool.close();

  const detection = states.find((s) => s.at >= faultAt && s.to !== 'healthy' && s.to !== 'degraded');
  const healthy = states.find((s) => s.at >= clearAt && s.to === 'healthy');
  const served = servedAgain();
  const errors = samples.filter((s) => !s.ok);
  const lat = (from: number, to: number) => summarize(samples.filter((s) => s.ok && s.t0 >= from && s.t0 < to).map((s) => s.t1 - s.t0));
  const base = lat(started + 500, faultAt);
  const fault = lat(faultAt, clearAt);
  const isUser = (r: { body?: { messages?: { content?: unknown }[] } }) => r.body?.messages?.[0]?.content === USER_PROMPT;
  // marked down at time t: the last transition at or before t went to a state selection skips
  const downAt = (t: number) => {
    let down = false;
    for (const s of states) if (s.at <= t) down = s.to !== 'healthy' && s.to !== 'degraded';
    return down;
  };
  // 20 ms of grace: a request selected just before the model was marked down arrives just after
  const result: ScenarioResult = {
    id: sc.id,
    label: sc.label,
    requests: samples.length,
    clientErrors: errors.length,
    firstError: errors[0]?.error,
    detectMs: detection ? detection.at - faultAt : undefined,
    detectedAs: detection?.to,
    detectCause: detection?.cause,
    attemptsWhileDown,
    attemptsDuringFault,
    simRequestsWhileDown:
      sc.fault.kind === 'refuse' ? undefined : primary.requests.filter((r) => isUser(r) && downAt(r.at) && downAt(r.at - 20)).length,
    failovers,
    baselineP99: base.p99,
    faultP50: fault.p50,
    faultP99: fault.p99,
    faultMax: fault.max,
    healthyAfterMs: healthy ? healthy.at - clearAt : undefined,
    servingAfterMs: served ? served.t0 - clearAt : undefined,
    states: states.map((s) => ({ ...s, at: s.at - faultAt })),
  };
  await sidecar.close();
  await Promise.all(sims.map((s) => s.close()));
  return result;
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { rate: { type: 'string', default: '200' }, only: { type: 'string' }, quick: { type: 'boolean', default: false } },
  });
  const rate = Number(values.rate);
  const only = values.only?.split(',');
  const chosen = SCENARIOS.filter((s) => !only || only.includes(s.id));
  const plan = loadPlan([
    {
      name: 'defaults.yaml',
      text: sidecarYaml(
        [{ name: 'b', route: '/m', groups: [[{ name: 'x', kind: 'openai', model: 'm', port: 1, path: '/v1/chat/completions' }]] }],
        '127.0.0.1:0',
        '127.0.0.1:0',
      ),
    },
  ]);
  const h = plan.backends[0].groups[0][0].health;
  const bound = h.probe.intervalMs + h.probe.unhealthyThreshold * h.probe.timeoutMs;
  process.stdout.write(
    `failover bench: ${rate} req/s open loop, primary (group 1) and secondary (group 2) simulated OpenAI models, default health settings:\n` +
      `  probes ${h.probe.kind} every ${h.probe.intervalMs} ms (timeout ${h.probe.timeoutMs} ms, thresholds ${h.probe.unhealthyThreshold} down / ${h.probe.healthyThreshold} up), suspectAfter ${h.suspectAfterMs} ms, slowThreshold ${h.slowThresholdMs} ms,\n` +
      `  breaker ${h.breaker.enabled ? `on (${h.breaker.volumeThreshold} requests, ${h.breaker.errorThresholdPercentage}%, reset ${h.breaker.resetTimeoutMs} ms)` : 'off'}\n` +
      `  detection bound (one probe interval + unhealthyThreshold x probe timeout): ${bound} ms\n\n`,
  );
  const results: ScenarioResult[] = [];
  for (const sc of chosen) {
    const t0 = Date.now();
    const r = await runScenario(sc, rate, values.quick ? 3000 : 10_000, values.quick ? 25_000 : 40_000);
    results.push(r);
    process.stdout.write(
      `${sc.id.padEnd(7)} ${r.requests} requests, ${r.clientErrors} client errors, detected ${r.detectMs === undefined ? 'never' : `after ${fmt(r.detectMs)} ms as ${r.detectedAs}`}, back ${r.servingAfterMs === undefined ? 'never' : `after ${fmt(r.servingAfterMs)} ms`} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`,
    );
    for (const s of r.states) process.stdout.write(`          ${fmt(s.at).padStart(7)} ms  ${s.from} -> ${s.to}: ${s.cause}\n`);
    if (r.firstError) process.stdout.write(`          first client error: ${r.firstError}\n`);
  }
  process.stdout.write('\n');
  process.stdout.write(
    table(
      [
        'fault',
        'requests',
        'client errors',
        'detected after ms',
        'as',
        'attempts to primary while down',
        'user reqs at primary while down',
        'failovers',
        'p99 baseline ms',
        'p50 / p99 / max in fault ms',
        'healthy after clear ms',
        'serving after clear ms',
      ],
      results.map((r) => [
        r.id,
        fmt(r.requests),
        fmt(r.clientErrors),
        r.detectMs === undefined ? 'never' : fmt(r.detectMs),
        r.detectedAs ?? '',
        fmt(r.attemptsWhileDown),
        r.simRequestsWhileDown === undefined ? 'n/a' : fmt(r.simRequestsWhileDown),
        fmt(r.failovers),
        fmt(r.baselineP99, 1),
        `${fmt(r.faultP50, 1)} / ${fmt(r.faultP99)} / ${fmt(r.faultMax)}`,
        r.healthyAfterMs === undefined ? 'never' : fmt(r.healthyAfterMs),
        r.servingAfterMs === undefined ? 'never' : fmt(r.servingAfterMs),
      ]),
    ),
  );
  process.stdout.write(
    '\n\nTargets: zero client-visible errors; zero requests to a model after it was marked down; detection within the bound\n',
  );
  process.stdout.write(
    table(
      ['fault', 'no client errors', 'none sent while down', `detected within ${bound} ms`],
      results.map((r) => [
        r.id,
        r.clientErrors === 0 ? 'met' : `MISSED (${r.clientErrors})`,
        r.attemptsWhileDown === 0 && !r.simRequestsWhileDown
          ? 'met'
          : `MISSED (${r.attemptsWhileDown} attempts, ${r.simRequestsWhileDown ?? 0} at the simulator)`,
        r.detectMs !== undefined && r.detectMs <= bound ? 'met' : 'MISSED',
      ]),
    ),
  );
  process.stdout.write('\n');
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  const file = join(ROOT, 'bench/results/failover.json');
  writeFileSync(file, `${JSON.stringify({ rate, date: new Date().toISOString(), health: h, bound, results }, null, 2)}\n`);
  process.stdout.write(`results: ${file}\n`);
}

if (import.meta.main) await main(process.argv.slice(2));
