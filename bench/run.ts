#!/usr/bin/env node
/**
 * `npm run bench` — the sidecar against the floor (bench/floor.ts: the least a Node.js reverse
 * proxy can do), both in front of the same cheap upstream (nginx with canned answers), on this
 * machine, in the same run. docs/performance.md explains the method and the numbers.
 *
 *   npm run bench                  full run (3 rounds, about 5 minutes on 2 cores)
 *   npm run bench -- --quick       one short round (about a minute)
 *   npm run bench -- --rounds 5 --only floor,sidecar
 *   npm run bench -- failover      the failover bench (bench/failover.ts)
 *   npm run bench -- profile       CPU profiles of the sidecar under saturation (bench/profile.ts)
 *
 * The proxy under test runs alone on core 0 (taskset -c 0); nginx, the load generators and this
 * script share core 1. Systems alternate round by round; every figure is the median of the
 * rounds, printed beside its ratio to the floor. Results: bench/results/latest.json.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type BackendSpec, NO_HEALTH_POLICY, type ProviderSpec, sidecarYaml } from './configs.ts';
import type { LoadOptions, LoadResult } from './loadgen.ts';
import {
  cpuMs,
  coreBusy,
  coreTimes,
  ensureTools,
  ForeignCpu,
  freePort,
  imageEnv,
  imageNodeFlags,
  buildImageJs,
  installCleanup,
  LOAD_CORE,
  memory,
  NODE,
  nodeVersionOk,
  PROXY_CORE,
  pinSelf,
  ROOT,
  type Spawned,
  sleep,
  spawnPinned,
  waitQuiet,
  waitReady,
} from './proc.ts';
import { fmt, median, table, withDelta, withRatio } from './stats.ts';
import { PATHS, REQUEST_JSON, STREAM_REQUEST_JSON, startNginx, type Upstream } from './upstream.ts';
import { runWrk, type WrkResult } from './wrk.ts';

// ---------------------------------------------------------------------------------------------
// What is measured

type WorkloadKind = 'sat' | 'lat' | 'ttft';

interface Workload {
  id: string;
  kind: WorkloadKind;
  label: string;
  /** Path on the proxy under test. */
  path: string;
  body: string;
  /** The floor's workload this one is compared with. */
  twin: string;
  /** Upstream SSE events per answer (chunk throughput). */
  events?: number;
}

interface System {
  id: string;
  label: string;
  /** direct: no proxy at all, the load generator talks to the upstream (the machine's own noise). */
  kind: 'floor' | 'sidecar' | 'direct';
  backends?: BackendSpec[];
  tracing?: boolean;
  logLevel?: string;
  /** V8 flags instead of the run's (Settings.nodeFlags). */
  nodeFlags?: string[];
  /** Run the TypeScript sources (node's type stripping) instead of the image's JavaScript. */
  typescript?: boolean;
  workloads: Workload[];
  /** In the quick run too. */
  quick: boolean;
}

interface Settings {
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
  /** V8 flags for every Node.js process under test (default: the image's, deploy/Dockerfile). */
  nodeFlags: string[];
  /** Environment for every Node.js process under test (the image's ENV lines). */
  env: Record<string, string>;
  /** The sidecar CLI the image runs (built JavaScript), relative to the repository. */
  cli: string;
}

const FULL: Settings = { rounds: 3, firstWarmUpMs: 1000, warmUpMs: 400, satSeconds: 2, latSeconds: 4, latRate: 1000, ttftSeconds: 2, ttftRate: 200, disturbed: 0.05, retries: 2, nodeFlags: [], env: {}, cli: 'sidecar/cli.ts' };
const QUICK: Settings = { rounds: 1, firstWarmUpMs: 1000, warmUpMs: 300, satSeconds: 2, latSeconds: 2, latRate: 1000, ttftSeconds: 1.5, ttftRate: 200, disturbed: 0.08, retries: 1, nodeFlags: [], env: {}, cli: 'sidecar/cli.ts' };

function systems(nginxPort: number, pacedPort: number, events: { openai: number; anthropic: number }): System[] {
  const p = (name: string, kind: 'openai' | 'anthropic', path: string, port = nginxPort): ProviderSpec => ({
    name,
    kind,
    model: kind === 'openai' ? 'gpt-4o' : 'claude-sonnet-4-20250514',
    port,
    path,
  });
  const one = (name: string, route: string, provider: ProviderSpec): BackendSpec => ({ name, route, groups: [[provider]] });
  const openai = [
    one('oa-json', '/oa-json', p('gpt-4o', 'openai', PATHS.openaiJson)),
    one('oa-sse', '/oa-sse', p('gpt-4o', 'openai', PATHS.openaiSse)),
    one('oa-paced', '/oa-paced', p('gpt-4o', 'openai', '/paced/openai/v1/chat/completions', pacedPort)),
  ];
  const anthropic = [
    one('an-json', '/an-json', p('claude', 'anthropic', PATHS.anthropicJson)),
    one('an-sse', '/an-sse', p('claude', 'anthropic', PATHS.anthropicSse)),
    one('an-paced', '/an-paced', p('claude', 'anthropic', '/paced/anthropic/v1/messages', pacedPort)),
  ];
  const W = {
    json: (path: string, twin = 'json', id = 'json'): Workload => ({ id, kind: 'sat', label: 'non-streamed', path, body: REQUEST_JSON, twin }),
    sse: (path: string, ev: number, twin = 'sse', id = 'sse'): Workload => ({ id, kind: 'sat', label: 'streamed', path, body: STREAM_REQUEST_JSON, twin, events: ev }),
    lat: (path: string, twin = 'lat', id = 'lat'): Workload => ({ id, kind: 'lat', label: 'non-streamed @1k rps', path, body: REQUEST_JSON, twin }),
    ttft: (path: string, twin = 'ttft', id = 'ttft'): Workload => ({ id, kind: 'ttft', label: 'stream first token', path, body: STREAM_REQUEST_JSON, twin }),
  };
  const openaiWork = [W.json('/oa-json/model'), W.sse('/oa-sse/model', events.openai), W.lat('/oa-json/model'), W.ttft('/oa-paced/model')];
  return [
    {
      id: 'floor',
      label: 'floor (node:http + undici, piped)',
      kind: 'floor',
      quick: true,
      workloads: [
        W.json(PATHS.openaiJson),
        W.sse(PATHS.openaiSse, events.openai),
        W.lat(PATHS.openaiJson),
        W.ttft('/paced/openai/v1/chat/completions'),
        W.json(PATHS.anthropicJson, 'an-json', 'an-json'),
        W.sse(PATHS.anthropicSse, events.anthropic, 'an-sse', 'an-sse'),
        W.ttft('/paced/anthropic/v1/messages', 'an-ttft', 'an-ttft'),
      ],
    },
    {
      id: 'direct',
      label: 'no proxy: the load generator straight to the upstream',
      kind: 'direct',
      quick: false,
      workloads: [W.lat(PATHS.openaiJson), W.ttft('/paced/openai/v1/chat/completions')],
    },
    { id: 'sidecar', label: 'sidecar, OpenAI, 1 group', kind: 'sidecar', quick: true, backends: openai, workloads: openaiWork },
    { id: 'sidecar-ts', label: 'sidecar, OpenAI, 1 group, from the TypeScript sources (npm start) instead of the image\'s JavaScript', kind: 'sidecar', quick: true, backends: openai, typescript: true, workloads: openaiWork },
    { id: 'sidecar-otel', label: 'sidecar, OpenAI, 1 group, tracing on', kind: 'sidecar', quick: true, backends: openai, tracing: true, workloads: openaiWork },
    {
      id: 'sidecar-anthropic',
      label: 'sidecar, Anthropic (translated), 1 group',
      kind: 'sidecar',
      quick: true,
      backends: anthropic,
      workloads: [
        W.json('/an-json/model', 'an-json', 'an-json'),
        W.sse('/an-sse/model', events.anthropic, 'an-sse', 'an-sse'),
        W.lat('/an-json/model', 'lat', 'an-lat'),
        W.ttft('/an-paced/model', 'an-ttft', 'an-ttft'),
      ],
    },
    {
      id: 'sidecar-failover',
      label: 'sidecar, 3 groups, every request fails over twice (400 context length)',
      kind: 'sidecar',
      quick: true,
      backends: [
        {
          name: 'failover',
          route: '/failover',
          groups: [[p('small-a', 'openai', PATHS.contextLength)], [p('small-b', 'openai', PATHS.contextLengthB)], [p('gpt-4o', 'openai', PATHS.openaiJson)]],
        },
      ],
      workloads: [W.json('/failover/model', 'json', 'fo-json'), W.lat('/failover/model', 'lat', 'fo-lat')],
    },
    {
      id: 'sidecar-failover-503',
      label: 'sidecar, 3 groups, first two answer 503 (breaker and probes off, cooldown 1ms)',
      kind: 'sidecar',
      quick: false,
      backends: [
        {
          name: 'failover',
          route: '/failover',
          groups: [[p('down-a', 'openai', PATHS.error503)], [p('down-b', 'openai', PATHS.error503b)], [p('gpt-4o', 'openai', PATHS.openaiJson)]],
          policy: NO_HEALTH_POLICY,
        },
      ],
      workloads: [W.json('/failover/model', 'json', 'fo503-json')],
    },
    {
      id: 'sidecar-v8-defaults',
      label: 'sidecar, OpenAI, 1 group, node without the image\'s flags (heap caps, --no-maglev)',
      kind: 'sidecar',
      quick: false,
      backends: [openai[0]],
      nodeFlags: [],
      workloads: [W.json('/oa-json/model', 'json', 'v8d-json')],
    },
    {
      id: 'sidecar-info',
      label: 'sidecar, OpenAI, 1 group, --log-level info (the default: a line per request)',
      kind: 'sidecar',
      quick: false,
      backends: [openai[0]],
      logLevel: 'info',
      workloads: [W.json('/oa-json/model', 'json', 'info-json')],
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Measuring one system

interface SatResult {
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

interface LatResult {
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

interface RunResult {
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

async function runLoadgen(o: LoadOptions): Promise<LoadResult> {
  const child = spawn('taskset', ['-c', String(LOAD_CORE), NODE, join(ROOT, 'bench/loadgen.ts'), JSON.stringify(o)], { stdio: ['ignore', 'pipe', 'pipe'] });
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

interface Target {
  proc: Spawned;
  url: string;
  adminUrl?: string;
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
    if (before && after && after.requests > before.requests) res.attemptsPerRequest = (after.attempts - before.attempts) / (after.requests - before.requests);
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
      ttft ? { mode: 'ttft', url, body: w.body, rate: s.ttftRate, durationMs: s.ttftSeconds * 1000 } : { mode: 'latency', url, body: w.body, rate: s.latRate, durationMs: s.latSeconds * 1000 },
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

async function startSystem(sys: System, s: Settings, nginx: Upstream, pacedPort: number, dir: string): Promise<Target & { readyMs: number }> {
  const port = await freePort();
  const v8 = sys.nodeFlags ?? s.nodeFlags;
  if (sys.kind === 'floor') {
    const proc = spawnPinned(PROXY_CORE, NODE, [...v8, 'bench/floor.ts', '--listen', `127.0.0.1:${port}`, '--route', `/paced/=http://127.0.0.1:${pacedPort}`, '--route', `/=${nginx.origin}`], {
      env: { ...process.env, ...s.env },
    });
    const ready = await waitReady(`http://127.0.0.1:${port}/__ready`, proc);
    return { proc, url: `http://127.0.0.1:${port}`, readyMs: ready - proc.startedAt };
  }
  const adminPort = await freePort();
  const config = join(dir, `${sys.id}.yaml`);
  writeFileSync(config, sidecarYaml(sys.backends!, `127.0.0.1:${port}`, `127.0.0.1:${adminPort}`, sys.logLevel ?? 'warn'));
  const env: NodeJS.ProcessEnv = { ...s.env };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('OTEL_')) env[k] ??= v;
  if (sys.tracing) {
    env.OTEL_EXPORTER_OTLP_ENDPOINT = nginx.origin;
    env.OTEL_SERVICE_NAME = 'llm-failover-sidecar-bench';
  }
  const proc = spawnPinned(
    PROXY_CORE,
    NODE,
    [...v8, sys.typescript ? 'sidecar/cli.ts' : s.cli, '--config', config, '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`, '--log-level', sys.logLevel ?? 'warn'],
    { env, stdout: 'ignore' },
  );
  const ready = await waitReady(`http://127.0.0.1:${adminPort}/readyz`, proc);
  return { proc, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}`, readyMs: ready - proc.startedAt };
}

async function runSystem(sys: System, round: number, s: Settings, nginx: Upstream, pacedPort: number, dir: string): Promise<RunResult> {
  await waitQuiet(s.disturbed / 2, 30_000);
  if (sys.kind === 'direct') {
    const result: RunResult = { system: sys.id, round, readyMs: Number.NaN, idleRssMB: Number.NaN, idleAnonMB: Number.NaN, peakRssMB: Number.NaN, exit: 0, workloads: {} };
    for (const w of sys.workloads) {
      const origin = w.path.startsWith('/paced/') ? `http://127.0.0.1:${pacedPort}` : nginx.origin;
      result.workloads[w.id] = await openLoop({ proc: undefined as unknown as Spawned, url: origin }, w, s);
    }
    return result;
  }
  const t = await startSystem(sys, s, nginx, pacedPort, dir);
  await sleep(300);
  const idle = memory(t.proc.pid);
  const result: RunResult = { system: sys.id, round, readyMs: t.readyMs, idleRssMB: idle.rssMB, idleAnonMB: idle.anonMB, peakRssMB: Number.NaN, exit: -1, workloads: {} };
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
// Reporting

type Agg = Record<string, number>;

function aggregate(runs: RunResult[]): { top: Agg; workloads: Record<string, Agg> } {
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
    for (const k of keys) agg[k] = k === 'errors' || k === 'tries' ? list.reduce((a, x) => a + (x[k] ?? 0), 0) : median(list.map((x) => x[k]));
    agg.maxForeign = Math.max(...list.map((x) => x.foreign));
    if (list[0]?.rps !== undefined) {
      agg.rpsMin = Math.min(...list.map((x) => x.rps));
      agg.rpsMax = Math.max(...list.map((x) => x.rps));
    }
    workloads[id] = agg;
  }
  return { top, workloads };
}

function report(systemsRun: System[], agg: Record<string, ReturnType<typeof aggregate>>, s: Settings): { text: string; targets: TargetCheck[] } {
  const out: string[] = [];
  const floor = agg.floor;
  const fw = (twin: string) => floor?.workloads[twin] ?? {};
  const twinRows = (kind: WorkloadKind) =>
    systemsRun.flatMap((sys) => sys.workloads.filter((w) => w.kind === kind).map((w) => ({ sys, w, a: agg[sys.id]?.workloads[w.id] ?? {}, f: fw(w.twin) })));

  out.push(`Saturation: wrk, 8 connections, closed loop, ${s.satSeconds} s per round after a warm-up; the proxy alone on core ${PROXY_CORE}`);
  out.push(
    table(
      ['system', 'workload', 'req/s (× floor)', 'rounds min-max', 'CPU µs/req (× floor)', 'chunks/s (× floor)', 'proxy cores', 'load core', 'attempts/req', 'errors'],
      twinRows('sat').map(({ sys, w, a, f }) => [
        sys.id,
        w.id,
        withRatio(a.rps, f.rps),
        `${fmt(a.rpsMin)}-${fmt(a.rpsMax)}`,
        withRatio(a.cpuUsPerReq, f.cpuUsPerReq, 1),
        w.events ? withRatio(a.chunksPerSec, f.chunksPerSec) : '',
        fmt(a.proxyCores, 2),
        `${fmt(a.loadCoreBusy * 100)}%`,
        a.attemptsPerRequest !== undefined ? fmt(a.attemptsPerRequest, 3) : '',
        fmt(a.errors),
      ]),
    ),
  );
  out.push('');
  out.push(`Latency at a fixed ${s.latRate} req/s (open loop, bench/loadgen.ts), ${s.latSeconds} s per round; ms, (+ added vs floor)`);
  out.push(
    table(
      ['system', 'workload', 'p50', 'p99', 'p99.9', 'max', 'errors'],
      twinRows('lat').map(({ sys, w, a, f }) => [sys.id, w.id, withDelta(a.p50, f.p50, 3), withDelta(a.p99, f.p99, 3), withDelta(a.p999, f.p999, 3), fmt(a.max, 1), fmt(a.errors)]),
    ),
  );
  out.push('');
  out.push(`Streams: time to first token at ${s.ttftRate} streams/s (paced upstream: first content 2 ms after the headers), ms, (+ added vs floor)`);
  out.push(
    table(
      ['system', 'workload', 'TTFT p50', 'TTFT p99', 'first chunk delivery p50', 'p99', 'errors'],
      twinRows('ttft').map(({ sys, w, a, f }) => [
        sys.id,
        w.id,
        withDelta(a.p50, f.p50, 3),
        withDelta(a.p99, f.p99, 3),
        withDelta(a.firstChunkP50, f.firstChunkP50, 3),
        withDelta(a.firstChunkP99, f.firstChunkP99, 3),
        fmt(a.errors),
      ]),
    ),
  );
  out.push('');
  out.push('Process: spawn -> ready (polling /readyz or the port every 5 ms), RSS 300 ms after ready, peak RSS (VmHWM) after all loads');
  out.push(
    table(
      ['system', 'ready ms (× floor)', 'idle RSS MB (× floor)', 'of it private (RssAnon)', 'peak RSS MB (× floor)'],
      systemsRun
        .filter((sys) => sys.kind !== 'direct')
        .map((sys) => {
        const a = agg[sys.id]?.top ?? {};
        const f = floor?.top ?? {};
        return [sys.id, withRatio(a.readyMs, f.readyMs), withRatio(a.idleRssMB, f.idleRssMB, 1), withRatio(a.idleAnonMB, f.idleAnonMB, 1), withRatio(a.peakRssMB, f.peakRssMB, 1)];
      }),
    ),
  );
  const targets = checkTargets(agg);
  if (targets.length > 0) {
    out.push('');
    out.push('Targets (issue 7)');
    out.push(table(['system', 'target', 'measured', ''], targets.map((t) => [t.system, t.target, t.measured, t.pass ? 'met' : 'MISSED'])));
  }
  return { text: out.join('\n'), targets };
}

interface TargetCheck {
  system: string;
  target: string;
  measured: string;
  pass: boolean;
}

function checkTargets(agg: Record<string, ReturnType<typeof aggregate>>): TargetCheck[] {
  const floor = agg.floor;
  const out: TargetCheck[] = [];
  if (!floor) return out;
  const f = floor.workloads;
  for (const [id, a] of Object.entries(agg)) {
    if (id === 'floor' || id === 'direct') continue;
    const w = a.workloads;
    const add = (target: string, measured: string, pass: boolean) => out.push({ system: id, target, measured, pass });
    const jsonId = ['json', 'an-json', 'fo-json', 'fo503-json', 'info-json', 'v8d-json'].find((k) => w[k]);
    if (jsonId) {
      const twin = jsonId === 'an-json' ? 'an-json' : 'json';
      const r = w[jsonId].rps / f[twin].rps;
      add('saturation >= 0.75x floor', `${r.toFixed(2)}x (${fmt(w[jsonId].rps)} vs ${fmt(f[twin].rps)} req/s)`, r >= 0.75);
      const c = w[jsonId].cpuUsPerReq / f[twin].cpuUsPerReq;
      add('CPU/req <= 1.5x floor', `${c.toFixed(2)}x (${fmt(w[jsonId].cpuUsPerReq)} vs ${fmt(f[twin].cpuUsPerReq)} µs)`, c <= 1.5);
    }
    const latId = ['lat', 'an-lat', 'fo-lat'].find((k) => w[k]);
    if (latId) {
      const d = w[latId].p99 - f.lat.p99;
      add('added p99 < 1 ms at 1k req/s', `${d >= 0 ? '+' : ''}${d.toFixed(3)} ms (p99 ${w[latId].p99.toFixed(3)} vs ${f.lat.p99.toFixed(3)})`, d < 1);
    }
    const ttftId = ['ttft', 'an-ttft'].find((k) => w[k]);
    if (ttftId) {
      const d = w[ttftId].p50 - f[ttftId].p50;
      add('stream TTFB within 0.5 ms of floor', `${d >= 0 ? '+' : ''}${d.toFixed(3)} ms (p50 ${w[ttftId].p50.toFixed(3)} vs ${f[ttftId].p50.toFixed(3)})`, d <= 0.5);
    }
    const sseId = ['sse', 'an-sse'].find((k) => w[k]);
    if (sseId) {
      const r = w[sseId].rps / f[sseId].rps;
      add('chunk throughput >= 0.8x floor', `${r.toFixed(2)}x`, r >= 0.8);
    }
    add('peak RSS < 120 MB under saturation', `${fmt(a.top.peakRssMB, 1)} MB`, a.top.peakRssMB < 120);
    add('idle RSS < 70 MB', `${fmt(a.top.idleRssMB, 1)} MB`, a.top.idleRssMB < 70);
    add('ready < 500 ms', `${fmt(a.top.readyMs)} ms`, a.top.readyMs < 500);
  }
  return out;
}

function machine() {
  const cpuModel = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.+)$/m)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const version = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim() || 'unknown';
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      return `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() || 'unknown';
    }
  };
  return {
    cpu: cpuModel,
    nproc: cpus().length,
    mhz: cpus()[0]?.speed,
    kernel: release(),
    node: version(NODE, ['--version']),
    wrk: version('wrk', ['-v']).split('\n')[0],
    nginx: version('nginx', ['-v']),
    commit: version('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']),
    /** Uncommitted changes under sidecar/ and probes/ when the run started (other people's work in progress). */
    dirty: version('git', ['-C', ROOT, 'status', '--porcelain', 'sidecar', 'probes']).split('\n').filter((l) => l && l !== 'unknown').length,
    date: new Date().toISOString(),
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  // the subcommands parse their own options
  if (process.argv[2] === 'failover') {
    const { main: failover } = await import('./failover.ts');
    return failover(process.argv.slice(3));
  }
  if (process.argv[2] === 'profile') {
    const { main: profile } = await import('./profile.ts');
    return profile(process.argv.slice(3));
  }
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      only: { type: 'string' },
      'node-flags': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0].replace(/^#!.*\n\/\*\*\n/, '').replace(/^ \* ?/gm, ''));
    return;
  }
  if (positionals.length > 0) throw new Error(`unknown command ${positionals[0]}: use failover, profile or nothing`);

  if (cpus().length < 2) throw new Error('the bench needs 2 cores (proxy on core 0, load on core 1)');
  if (!nodeVersionOk()) throw new Error(`${NODE} is not Node.js 24+: run npm ci first`);
  ensureTools();
  installCleanup();
  pinSelf(LOAD_CORE);
  const s: Settings = { ...(values.quick ? QUICK : FULL) };
  if (values.rounds) s.rounds = Number(values.rounds);
  s.nodeFlags = values['node-flags'] !== undefined ? values['node-flags'].split(/\s+/).filter(Boolean) : imageNodeFlags();
  s.env = imageEnv();
  s.cli = buildImageJs();
  const dir = join(tmpdir(), `llm-failover-bench-${process.pid}`);
  mkdirSync(dir, { recursive: true });

  const started = performance.now();
  const nginx = await startNginx(await freePort());
  const pacedPort = await freePort();
  const paced = spawnPinned(LOAD_CORE, NODE, ['bench/paced.ts', '--listen', `127.0.0.1:${pacedPort}`, '--first-ms', '2', '--chunk-ms', '5', '--chunks', '8']);
  await waitReady(`http://127.0.0.1:${pacedPort}/__ready`, paced);

  const all = systems(nginx.port, pacedPort, { openai: nginx.canned.openaiEvents, anthropic: nginx.canned.anthropicEvents });
  const only = values.only?.split(',');
  const chosen = all.filter((x) => (only ? only.includes(x.id) : values.quick ? x.quick : true));
  if (only && !chosen.some((x) => x.id === 'floor')) chosen.unshift(all[0]);
  const m = machine();
  process.stdout.write(`llm-failover-sidecar bench: ${m.cpu}, ${m.nproc} cores, ${m.kernel}, node ${m.node}, ${m.wrk}\n`);
  process.stdout.write(`commit ${m.commit}${m.dirty ? ` + ${m.dirty} uncommitted file(s) under sidecar/ probes/` : ''}, ${m.date}\n`);
  process.stdout.write(`node flags of every process under test: ${s.nodeFlags.join(' ') || '(none)'}${values['node-flags'] === undefined ? ' (deploy/Dockerfile)' : ''}\n`);
  process.stdout.write(`environment of every process under test (deploy/Dockerfile): ${Object.entries(s.env).map(([k, v]) => `${k}=${v}`).join(' ') || '(none)'}\n`);
  process.stdout.write(`the sidecar runs as the image ships it: ${s.cli} (scripts/build-js.ts); sidecar-ts runs sidecar/cli.ts\n`);
  process.stdout.write(`${s.rounds} round(s) of ${chosen.length} systems: ${chosen.map((x) => x.id).join(', ')}\n\n`);

  const runs: RunResult[] = [];
  let exports = { requests: 0, bytes: 0 };
  try {
    for (let round = 0; round < s.rounds; round++) {
      // rotate the order each round so no system always runs first or last
      const order = chosen.map((_, i) => chosen[(i + round) % chosen.length]);
      for (const sys of order) {
        const t0 = performance.now();
        const r = await runSystem(sys, round + 1, s, nginx, pacedPort, dir);
        runs.push(r);
        const main = Object.entries(r.workloads)[0];
        const tries = Object.values(r.workloads).reduce((a, w) => a + w.tries - 1, 0);
        process.stdout.write(
          `round ${round + 1} ${sys.id.padEnd(22)} ready ${fmt(r.readyMs).padStart(5)} ms  ${main ? `${main[0]} ${fmt((main[1] as SatResult).rps ?? Number.NaN)} req/s` : ''}  (${((performance.now() - t0) / 1000).toFixed(1)} s${tries ? `, ${tries} retried: other processes were busy` : ''})\n`,
        );
      }
    }
  } finally {
    exports = nginx.otlpExports();
    await nginx.stop();
    await paced.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const agg: Record<string, ReturnType<typeof aggregate>> = {};
  for (const sys of chosen) agg[sys.id] = aggregate(runs.filter((r) => r.system === sys.id));
  const { text, targets } = report(chosen, agg, s);
  process.stdout.write(`\n${text}\n`);
  if (chosen.some((x) => x.tracing)) process.stdout.write(`\nOTLP sink (nginx, POST /v1/traces) received ${exports.requests} trace export requests\n`);
  const disturbed = runs.flatMap((r) => Object.values(r.workloads)).filter((w) => w.foreign > s.disturbed).length;
  if (disturbed > 0) process.stdout.write(`\nWARNING: ${disturbed} measurement(s) ran while other processes used more than ${s.disturbed * 100}% of a core: treat them with care.\n`);
  process.stdout.write(`\n${((performance.now() - started) / 1000).toFixed(0)} s in all\n`);

  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(
    join(ROOT, 'bench/results/latest.txt'),
    `llm-failover-sidecar bench: ${m.cpu}, ${m.nproc} cores, ${m.kernel}, node ${m.node}\ncommit ${m.commit}${m.dirty ? ` + ${m.dirty} uncommitted file(s)` : ''}, ${m.date}, node flags ${s.nodeFlags.join(' ') || '(none)'}\n\n${text}\n`,
  );
  const file = join(ROOT, 'bench/results/latest.json');
  writeFileSync(file, `${JSON.stringify({ machine: m, settings: s, systems: chosen.map(({ id, label, workloads }) => ({ id, label, workloads: workloads.map((w) => w.id) })), medians: agg, targets, otlpExports: exports, runs }, null, 2)}\n`);
  process.stdout.write(`results: ${file}\n`);
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}
