/**
 * Where the sidecar's CPU goes under saturation: `npm run bench -- profile [--seconds 8] [--only id,...]`.
 *
 * For each workload a fresh sidecar runs pinned to core 0 with node's `--cpu-prof`, wrk
 * saturates it (8 connections) from core 1, then SIGTERM drains it and node writes the
 * profile. Only the samples of the measured window count (start-up, warm-up and drain left
 * out). Printed: self time by function, by file / package, and the inclusive time of the
 * sidecar's own functions. Profiles are kept in bench/results/profiles/ (open them in Chrome
 * DevTools or speedscope).
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { type BackendSpec, sidecarYaml } from './configs.ts';
import {
  cpuMs,
  ensureTools,
  freePort,
  imageEnv,
  imageNodeFlags,
  installCleanup,
  LOAD_CORE,
  NODE,
  PROXY_CORE,
  pinSelf,
  ROOT,
  spawnPinned,
  waitReady,
} from './proc.ts';
import { fmt, table } from './stats.ts';
import { PATHS, REQUEST_JSON, STREAM_REQUEST_JSON, startNginx } from './upstream.ts';
import { runWrk } from './wrk.ts';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  workload: string;
  windowMs: number;
  sampledMs: number;
  rps: number;
  cpuUsPerReq: number;
  byFunction: { name: string; where: string; selfPct: number }[];
  byFile: { file: string; selfPct: number }[];
  sidecarInclusive: { name: string; where: string; totalPct: number }[];
}

/** "sidecar/translate/sse.ts", "node_modules/pino", "node:internal/streams/readable", "(garbage collector)". */
function fileOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native / V8 builtins)';
  let path = url.replace(/^file:\/\//, '');
  if (path.startsWith(ROOT)) path = relative(ROOT, path);
  const nm = path.lastIndexOf('node_modules/');
  if (nm !== -1) {
    const rest = path.slice(nm + 'node_modules/'.length).split('/');
    return `node_modules/${rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (path.startsWith('node:')) return path.split('/').slice(0, 3).join('/');
  return path;
}

function isOurs(url: string): boolean {
  const p = url.replace(/^file:\/\//, '');
  return p.startsWith(join(ROOT, 'sidecar')) || p.startsWith(join(ROOT, 'probes'));
}

export function summarize(
  profile: CpuProfile,
  fromUs: number,
  toUs: number,
  workload: string,
  rps: number,
  cpuUsPerReq: number,
): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  const inclusive = new Map<string, number>();
  let t = profile.startTime;
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i];
    const dt = profile.timeDeltas[i + 1] ?? 0; // a sample stands for the time until the next one
    if (t < fromUs || t > toUs || dt <= 0) continue;
    const id = profile.samples[i];
    const node = byId.get(id)!;
    if (node.callFrame.functionName === '(idle)') continue;
    total += dt;
    self.set(id, (self.get(id) ?? 0) + dt);
    // inclusive: every distinct sidecar function on the stack
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame;
      if (!isOurs(cf.url)) continue;
      const key = `${cf.functionName || '(anonymous)'}\t${fileOf(cf.url, cf.functionName)}:${cf.lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + dt);
    }
  }
  const fn = new Map<string, number>();
  const file = new Map<string, number>();
  for (const [id, us] of self) {
    const cf = byId.get(id)!.callFrame;
    const f = fileOf(cf.url, cf.functionName);
    const key = `${cf.functionName || '(anonymous)'}\t${f}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;
    fn.set(key, (fn.get(key) ?? 0) + us);
    file.set(f, (file.get(f) ?? 0) + us);
  }
  const pct = (us: number) => (100 * us) / Math.max(1, total);
  const split = (k: string) => {
    const [name, where] = k.split('\t');
    return { name, where };
  };
  return {
    workload,
    windowMs: (toUs - fromUs) / 1000,
    sampledMs: total / 1000,
    rps,
    cpuUsPerReq,
    byFunction: [...fn]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 30)
      .map(([k, us]) => ({ ...split(k), selfPct: pct(us) })),
    byFile: [...file]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 25)
      .map(([f, us]) => ({ file: f, selfPct: pct(us) })),
    sidecarInclusive: [...inclusive]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 25)
      .map(([k, us]) => ({ ...split(k), totalPct: pct(us) })),
  };
}

export function printSummary(s: ProfileSummary): string {
  const out: string[] = [];
  out.push(
    `== ${s.workload}: ${fmt(s.rps)} req/s, ${fmt(s.cpuUsPerReq)} µs CPU/req, ${fmt(s.sampledMs)} ms of samples in a ${fmt(s.windowMs)} ms window`,
  );
  out.push(
    table(
      ['self %', 'function', 'where'],
      s.byFunction.slice(0, 20).map((f) => [f.selfPct.toFixed(1), f.name, f.where]),
    ),
  );
  out.push('');
  out.push(
    table(
      ['self %', 'file / package'],
      s.byFile.slice(0, 15).map((f) => [f.selfPct.toFixed(1), f.file]),
    ),
  );
  out.push('');
  out.push(
    table(
      ['incl. %', 'sidecar function (self + callees)', 'where'],
      s.sidecarInclusive.slice(0, 15).map((f) => [f.totalPct.toFixed(1), f.name, f.where]),
    ),
  );
  return out.join('\n');
}

interface ProfileWorkload {
  id: string;
  /** The floor proxy instead of the sidecar (for comparison). */
  floor?: boolean;
  backends: (nginxPort: number) => BackendSpec[];
  path: string;
  body: string;
  logLevel?: string;
  /** Export traces to the nginx OTLP sink. */
  tracing?: boolean;
}

const WORKLOADS: ProfileWorkload[] = [
  { id: 'floor-json', floor: true, backends: () => [], path: PATHS.openaiJson, body: REQUEST_JSON },
  {
    id: 'openai-json',
    backends: (port) => [
      { name: 'oa-json', route: '/oa-json', groups: [[{ name: 'gpt-4o', kind: 'openai', model: 'gpt-4o', port, path: PATHS.openaiJson }]] },
    ],
    path: '/oa-json/model',
    body: REQUEST_JSON,
  },
  {
    id: 'openai-sse',
    backends: (port) => [
      { name: 'oa-sse', route: '/oa-sse', groups: [[{ name: 'gpt-4o', kind: 'openai', model: 'gpt-4o', port, path: PATHS.openaiSse }]] },
    ],
    path: '/oa-sse/model',
    body: STREAM_REQUEST_JSON,
  },
  {
    id: 'openai-json-info',
    backends: (port) => [
      { name: 'oa-json', route: '/oa-json', groups: [[{ name: 'gpt-4o', kind: 'openai', model: 'gpt-4o', port, path: PATHS.openaiJson }]] },
    ],
    path: '/oa-json/model',
    body: REQUEST_JSON,
    logLevel: 'info',
  },
  {
    id: 'openai-json-tracing',
    backends: (port) => [
      { name: 'oa-json', route: '/oa-json', groups: [[{ name: 'gpt-4o', kind: 'openai', model: 'gpt-4o', port, path: PATHS.openaiJson }]] },
    ],
    path: '/oa-json/model',
    body: REQUEST_JSON,
    tracing: true,
  },
  {
    id: 'anthropic-json',
    backends: (port) => [
      {
        name: 'an-json',
        route: '/an-json',
        groups: [[{ name: 'claude', kind: 'anthropic', model: 'claude-sonnet-4-20250514', port, path: PATHS.anthropicJson }]],
      },
    ],
    path: '/an-json/model',
    body: REQUEST_JSON,
  },
  {
    id: 'anthropic-sse',
    backends: (port) => [
      {
        name: 'an-sse',
        route: '/an-sse',
        groups: [[{ name: 'claude', kind: 'anthropic', model: 'claude-sonnet-4-20250514', port, path: PATHS.anthropicSse }]],
      },
    ],
    path: '/an-sse/model',
    body: STREAM_REQUEST_JSON,
  },
  {
    id: 'failover-json',
    backends: (port) => [
      {
        name: 'failover',
        route: '/failover',
        groups: [
          [{ name: 'small-a', kind: 'openai', model: 'gpt-4o-mini', port, path: PATHS.contextLength }],
          [{ name: 'small-b', kind: 'openai', model: 'gpt-4o-mini', port, path: PATHS.contextLengthB }],
          [{ name: 'gpt-4o', kind: 'openai', model: 'gpt-4o', port, path: PATHS.openaiJson }],
        ],
      },
    ],
    path: '/failover/model',
    body: REQUEST_JSON,
  },
];

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { seconds: { type: 'string', default: '8' }, interval: { type: 'string', default: '1000' }, only: { type: 'string' } },
  });
  ensureTools();
  installCleanup();
  pinSelf(LOAD_CORE);
  const seconds = Number(values.seconds);
  const only = values.only?.split(',');
  const outDir = join(ROOT, 'bench/results/profiles');
  mkdirSync(outDir, { recursive: true });
  const work = join(tmpdir(), `llm-failover-bench-profile-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const nginx = await startNginx(await freePort());
  const flags = imageNodeFlags();
  process.stdout.write(
    `profiling (node ${flags.join(' ')} --cpu-prof --cpu-prof-interval=${values.interval}), wrk 8 connections, ${seconds} s per workload\n\n`,
  );
  const summaries: ProfileSummary[] = [];
  try {
    for (const w of WORKLOADS.filter((x) => !only || only.includes(x.id))) {
      const port = await freePort();
      const admin = await freePort();
      const config = join(work, `${w.id}.yaml`);
      writeFileSync(config, sidecarYaml(w.backends(nginx.port), `127.0.0.1:${port}`, `127.0.0.1:${admin}`, w.logLevel ?? 'warn'));
      const profDir = join(work, w.id);
      rmSync(profDir, { recursive: true, force: true });
      // the image's environment; the TypeScript sources (not the image's JavaScript), so the profile names them
      const env: NodeJS.ProcessEnv = { ...imageEnv() };
      for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('OTEL_')) env[k] ??= v;
      if (w.tracing) env.OTEL_EXPORTER_OTLP_ENDPOINT = nginx.origin;
      const prof = [...flags, '--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-interval=${values.interval}`];
      const proc = w.floor
        ? spawnPinned(PROXY_CORE, NODE, [...prof, 'bench/floor.ts', '--listen', `127.0.0.1:${port}`, '--route', `/=${nginx.origin}`], {
            env,
          })
        : spawnPinned(PROXY_CORE, NODE, [...prof, 'sidecar/cli.ts', '--config', config, '--log-level', w.logLevel ?? 'warn'], { env });
      await waitReady(w.floor ? `http://127.0.0.1:${port}/__ready` : `http://127.0.0.1:${admin}/readyz`, proc);
      const url = `http://127.0.0.1:${port}${w.path}`;
      await runWrk(url, w.body, 2); // warm-up (JIT)
      const cpu0 = cpuMs(proc.pid);
      const fromUs = Number(process.hrtime.bigint() / 1000n);
      const r = await runWrk(url, w.body, seconds);
      const toUs = Number(process.hrtime.bigint() / 1000n);
      const cpu = cpuMs(proc.pid) - cpu0;
      const code = await proc.stop('SIGTERM', 10_000);
      if (code !== 0) throw new Error(`sidecar exited with ${code}: ${proc.stderr()}`);
      const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
      if (!file) throw new Error(`no profile written in ${profDir}`);
      const text = readFileSync(join(profDir, file), 'utf8');
      writeFileSync(join(outDir, `${w.id}.cpuprofile`), text);
      const profile = JSON.parse(text) as CpuProfile;
      const s = summarize(profile, fromUs, toUs, w.id, r.rps, (cpu * 1000) / Math.max(1, r.requests));
      summaries.push(s);
      process.stdout.write(`${printSummary(s)}\n\n`);
    }
  } finally {
    await nginx.stop();
    rmSync(work, { recursive: true, force: true });
  }
  writeFileSync(join(ROOT, 'bench/results/profile.json'), `${JSON.stringify(summaries, null, 2)}\n`);
  process.stdout.write(`profiles: ${outDir}/*.cpuprofile, summary: bench/results/profile.json\n`);
}

if (import.meta.main) await main(process.argv.slice(2));
