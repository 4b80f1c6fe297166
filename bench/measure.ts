/**
 * How `npm run bench` measures a system (bench/systems.ts says which): saturation with wrk
 * (bench/wrk.ts) while sampling the proxy's CPU time and the load core from /proc, latency and
 * time to first token with the open-loop generator (bench/loadgen.ts, its own process on the
 * load core), RSS at idle and at peak (bench/proc.ts), the sidecar's attempts per request from
 * its /metrics, retrying a measurement that other processes disturbed; then the statistics
 * across rounds (medians, bench/stats.ts). Presenting them is bench/report.ts.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { LoadOptions, LoadResult } from './loadgen.ts';
import { coreBusy, coreTimes, cpuMs, ForeignCpu, LOAD_CORE, memory, NODE, ROOT, sleep, waitQuiet } from './proc.ts';
import { median } from './stats.ts';
import { directTarget, type LaunchSettings, type Rig, type System, startSystem, type Target, type Workload } from './systems.ts';
import { runWrk, type WrkResult } from './wrk.ts';

export interface Settings extends LaunchSettings {
  rounds: number;
  /** First saturation of a fresh process warms up this long (JIT), later ones warmUpMs. */
  firstWarmUpMs: number;
  warmUpMs: number;
  satSeconds: number;
  latSeconds: number;
  latRate: number;
  ttftSeconds: number;
  ttftRate: number;
  /** Foreign CPU (cores) above which a measurement counts as disturbed and is retried. */
  disturbed: number;
  retries: number;
}

/** nodeFlags, env and cli are filled in at start (the image's, bench/proc.ts). */
export const FULL: Settings = {
  rounds: 3,
  firstWarmUpMs: 1000,
  warmUpMs: 400,
  satSeconds: 2,
  latSeconds: 4,
  latRate: 1000,
  ttftSeconds: 2,
  ttftRate: 200,
  disturbed: 0.05,
  retries: 2,
  nodeFlags: [],
  env: {},
  cli: 'sidecar/cli.ts',
};
export const QUICK: Settings = {
  rounds: 1,
  firstWarmUpMs: 1000,
  warmUpMs: 300,
  satSeconds: 2,
  latSeconds: 2,
  latRate: 1000,
  ttftSeconds: 1.5,
  ttftRate: 200,
  disturbed: 0.08,
  retries: 1,
  nodeFlags: [],
  env: {},
  cli: 'sidecar/cli.ts',
};

export interface SatResult {
  rps: number;
  requests: number;
  cpuUsPerReq: number;
  /** Share of a core the proxy used, and how busy the load core was. */
  proxyCores: number;
  loadCoreBusy: number;
  errors: number;
  wrkP50: number;
  wrkP99: number;
  /** Sidecar only: upstream attempts per request, from its /metrics. */
  attemptsPerRequest?: number;
  chunksPerSec?: number;
  foreign: number;
  tries: number;
}

export interface LatResult {
  p50: number;
  p99: number;
  p999: number;
  mean: number;
  max: number;
  n: number;
  errors: number;
  achievedRate: number;
  /** ttft only */
  firstChunkP50?: number;
  firstChunkP99?: number;
  firstByteP50?: number;
  foreign: number;
  tries: number;
}

export interface RunResult {
  system: string;
  round: number;
  readyMs: number;
  idleRssMB: number;
  idleAnonMB: number;
  peakRssMB: number;
  exit: number | string;
  workloads: Record<string, SatResult | LatResult>;
}

async function metricTotals(adminUrl: string): Promise<{ requests: number; attempts: number }> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  let requests = 0;
  let attempts = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('llm_failover_requests_total{')) requests += Number(line.slice(line.lastIndexOf(' ') + 1));
    else if (line.startsWith('llm_failover_upstream_attempts_total{')) attempts += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return { requests, attempts };
}

/** bench/loadgen.ts as its own process on the load core; its last stdout line is the result. */
async function runLoadgen(o: LoadOptions): Promise<LoadResult> {
  const child = spawn('taskset', ['-c', String(LOAD_CORE), NODE, join(ROOT, 'bench/loadgen.ts'), JSON.stringify(o)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    err += c.toString();
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), o.durationMs + 30_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(killer);
  if (code !== 0) throw new Error(`load generator exited with ${code}: ${err}`);
  return JSON.parse(out.trim().split('\n').pop()!) as LoadResult;
}

/** Retries a measurement that other processes disturbed (after waiting for quiet). */
async function undisturbed<T extends { foreign: number; tries: number }>(s: Settings, measure: () => Promise<T>): Promise<T> {
  let best: T | undefined;
  for (let attempt = 0; attempt <= s.retries; attempt++) {
    if (attempt > 0) await waitQuiet(s.disturbed / 2, 60_000);
    const r = await measure();
    r.tries = attempt + 1;
    if (!best || r.foreign < best.foreign) best = r;
    if (r.foreign <= s.disturbed) return r;
  }
  return best!;
}

async function saturate(t: Target, w: Workload, s: Settings, warmMs: number): Promise<SatResult> {
  const url = `${t.url}${w.path}`;
  // warm-up (JIT): wrk for a fresh process, a short open-loop burst for the next workloads
  if (warmMs >= 1000) await runWrk(url, w.body, warmMs / 1000);
  else await runLoadgen({ mode: 'latency', url, body: w.body, rate: 2000, durationMs: warmMs, warmupMs: 0 });
  return undisturbed(s, async () => {
    const before = t.adminUrl ? await metricTotals(t.adminUrl) : undefined;
    const cpu0 = cpuMs(t.proc.pid);
    const c1 = coreTimes(LOAD_CORE);
    const foreign = new ForeignCpu();
    const started = performance.now();
    const r: WrkResult = await runWrk(url, w.body, s.satSeconds);
    const wall = performance.now() - started;
    const f = foreign.read();
    const cpu = cpuMs(t.proc.pid) - cpu0;
    const loadCoreBusy = coreBusy(c1, coreTimes(LOAD_CORE));
    const after = t.adminUrl ? await metricTotals(t.adminUrl) : undefined;
    const res: SatResult = {
      rps: r.rps,
      requests: r.requests,
      cpuUsPerReq: (cpu * 1000) / Math.max(1, r.requests),
      proxyCores: cpu / wall,
      loadCoreBusy,
      errors: r.non2xx + r.socketErrors,
      wrkP50: r.p50,
      wrkP99: r.p99,
      foreign: f,
      tries: 1,
    };
    if (before && after && after.requests > before.requests)
      res.attemptsPerRequest = (after.attempts - before.attempts) / (after.requests - before.requests);
    if (w.events) res.chunksPerSec = r.rps * w.events;
    return res;
  });
}

async function openLoop(t: Target, w: Workload, s: Settings): Promise<LatResult> {
  const url = `${t.url}${w.path}`;
  const ttft = w.kind === 'ttft';
  return undisturbed(s, async () => {
    const foreign = new ForeignCpu();
    const r = await runLoadgen(
      ttft
        ? { mode: 'ttft', url, body: w.body, rate: s.ttftRate, durationMs: s.ttftSeconds * 1000 }
        : { mode: 'latency', url, body: w.body, rate: s.latRate, durationMs: s.latSeconds * 1000 },
    );
    const res: LatResult = {
      p50: r.latency.p50,
      p99: r.latency.p99,
      p999: r.latency.p999,
      mean: r.latency.mean,
      max: r.latency.max,
      n: r.latency.n,
      errors: r.errors,
      achievedRate: r.achievedRate,
      foreign: foreign.read(),
      tries: 1,
    };
    if (r.firstError) process.stderr.write(`  ${w.id}: ${r.errors} errors, first: ${r.firstError}\n`);
    if (r.firstChunk) {
      res.firstChunkP50 = r.firstChunk.p50;
      res.firstChunkP99 = r.firstChunk.p99;
      res.firstByteP50 = r.firstByte?.p50;
    }
    return res;
  });
}

/**
 * One system, one round: start it (bench/systems.ts), RSS 300 ms after ready, its workloads in
 * order (the first saturation with the long warm-up), peak RSS, SIGTERM. `direct` starts
 * nothing and runs its open-loop workloads against the upstreams themselves.
 */
export async function runSystem(sys: System, round: number, s: Settings, rig: Rig): Promise<RunResult> {
  await waitQuiet(s.disturbed / 2, 30_000);
  if (sys.kind === 'direct') {
    const result: RunResult = {
      system: sys.id,
      round,
      readyMs: Number.NaN,
      idleRssMB: Number.NaN,
      idleAnonMB: Number.NaN,
      peakRssMB: Number.NaN,
      exit: 0,
      workloads: {},
    };
    for (const w of sys.workloads) result.workloads[w.id] = await openLoop(directTarget(w, rig), w, s);
    return result;
  }
  const t = await startSystem(sys, s, rig);
  await sleep(300);
  const idle = memory(t.proc.pid);
  const result: RunResult = {
    system: sys.id,
    round,
    readyMs: t.readyMs,
    idleRssMB: idle.rssMB,
    idleAnonMB: idle.anonMB,
    peakRssMB: Number.NaN,
    exit: -1,
    workloads: {},
  };
  try {
    let first = true;
    for (const w of sys.workloads) {
      if (w.kind === 'sat') {
        result.workloads[w.id] = await saturate(t, w, s, first ? s.firstWarmUpMs : s.warmUpMs);
        first = false;
      } else {
        result.workloads[w.id] = await openLoop(t, w, s);
      }
    }
    result.peakRssMB = memory(t.proc.pid).hwmMB;
  } finally {
    result.exit = await t.proc.stop('SIGTERM', 8000);
  }
  if (result.exit !== 0) process.stderr.write(`  ${sys.id} exited with ${result.exit}: ${t.proc.stderr().slice(0, 2000)}\n`);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Statistics across rounds

export type Agg = Record<string, number>;

/** One system's medians. */
export interface Aggregate {
  /** readyMs, idleRssMB, idleAnonMB, peakRssMB: medians of the rounds. */
  top: Agg;
  /**
   * Per workload, every field of its results: the median of the rounds, except errors and
   * tries (summed); plus maxForeign, and rpsMin/rpsMax for saturation.
   */
  workloads: Record<string, Agg>;
}

export function aggregate(runs: RunResult[]): Aggregate {
  const top: Agg = {
    readyMs: median(runs.map((r) => r.readyMs)),
    idleRssMB: median(runs.map((r) => r.idleRssMB)),
    idleAnonMB: median(runs.map((r) => r.idleAnonMB)),
    peakRssMB: median(runs.map((r) => r.peakRssMB)),
  };
  const workloads: Record<string, Agg> = {};
  for (const id of Object.keys(runs[0]?.workloads ?? {})) {
    const list = runs.map((r) => r.workloads[id]).filter(Boolean) as unknown as Record<string, number>[];
    const keys = new Set(list.flatMap((x) => Object.keys(x)));
    const agg: Agg = {};
    for (const k of keys)
      agg[k] = k === 'errors' || k === 'tries' ? list.reduce((a, x) => a + (x[k] ?? 0), 0) : median(list.map((x) => x[k]));
    agg.maxForeign = Math.max(...list.map((x) => x.foreign));
    if (list[0]?.rps !== undefined) {
      agg.rpsMin = Math.min(...list.map((x) => x.rps));
      agg.rpsMax = Math.max(...list.map((x) => x.rps));
    }
    workloads[id] = agg;
  }
  return { top, workloads };
}
