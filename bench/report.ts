/**
 * What `npm run bench` prints and writes: the machine it ran on, the progress lines, the tables
 * (saturation, latency, time to first token, process) with every figure beside its ratio or
 * its difference to the floor measured in the same run, the issue 7 targets checked against
 * those ratios, and the result files (bench/results/latest.txt, the tables as printed, and
 * latest.json, every round's raw results). All of it plain text: the markdown tables of
 * docs/performance.md are written by hand from latest.txt. The numbers come from
 * bench/measure.ts.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import type { Aggregate, RunResult, SatResult, Settings } from './measure.ts';
import { NODE, PROXY_CORE, ROOT } from './proc.ts';
import { fmt, table, withDelta, withRatio } from './stats.ts';
import type { System, WorkloadKind } from './systems.ts';

export function machine() {
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
    dirty: version('git', ['-C', ROOT, 'status', '--porcelain', 'sidecar', 'probes'])
      .split('\n')
      .filter((l) => l && l !== 'unknown').length,
    date: new Date().toISOString(),
  };
}

export type Machine = ReturnType<typeof machine>;

/** The lines printed before the first round: machine, commit, how the processes run, what runs. */
export function header(m: Machine, s: Settings, chosen: System[], flagsFromImage: boolean): string {
  return [
    `llm-failover-sidecar bench: ${m.cpu}, ${m.nproc} cores, ${m.kernel}, node ${m.node}, ${m.wrk}\n`,
    `commit ${m.commit}${m.dirty ? ` + ${m.dirty} uncommitted file(s) under sidecar/ probes/` : ''}, ${m.date}\n`,
    `node flags of every process under test: ${s.nodeFlags.join(' ') || '(none)'}${flagsFromImage ? ' (deploy/Dockerfile)' : ''}\n`,
    `environment of every process under test (deploy/Dockerfile): ${
      Object.entries(s.env)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ') || '(none)'
    }\n`,
    `the sidecar runs as the image ships it: ${s.cli} (scripts/build-js.ts); sidecar-ts runs sidecar/cli.ts\n`,
    `${s.rounds} round(s) of ${chosen.length} systems: ${chosen.map((x) => x.id).join(', ')}\n\n`,
  ].join('');
}

/** One line per system and round, as it finishes: ready time, its first workload, wall time, retries. */
export function progressLine(round: number, sys: System, r: RunResult, wallMs: number): string {
  const main = Object.entries(r.workloads)[0];
  const tries = Object.values(r.workloads).reduce((a, w) => a + w.tries - 1, 0);
  return `round ${round} ${sys.id.padEnd(22)} ready ${fmt(r.readyMs).padStart(5)} ms  ${main ? `${main[0]} ${fmt((main[1] as SatResult).rps ?? Number.NaN)} req/s` : ''}  (${(wallMs / 1000).toFixed(1)} s${tries ? `, ${tries} retried: other processes were busy` : ''})\n`;
}

export interface TargetCheck {
  system: string;
  target: string;
  measured: string;
  pass: boolean;
}

/** The tables, every figure against the floor's twin workload, then the targets. */
export function report(systemsRun: System[], agg: Record<string, Aggregate>, s: Settings): { text: string; targets: TargetCheck[] } {
  const out: string[] = [];
  const floor = agg.floor;
  const fw = (twin: string) => floor?.workloads[twin] ?? {};
  const twinRows = (kind: WorkloadKind) =>
    systemsRun.flatMap((sys) =>
      sys.workloads.filter((w) => w.kind === kind).map((w) => ({ sys, w, a: agg[sys.id]?.workloads[w.id] ?? {}, f: fw(w.twin) })),
    );

  out.push(
    `Saturation: wrk, 8 connections, closed loop, ${s.satSeconds} s per round after a warm-up; the proxy alone on core ${PROXY_CORE}`,
  );
  out.push(
    table(
      [
        'system',
        'workload',
        'req/s (× floor)',
        'rounds min-max',
        'CPU µs/req (× floor)',
        'chunks/s (× floor)',
        'proxy cores',
        'load core',
        'attempts/req',
        'errors',
      ],
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
      twinRows('lat').map(({ sys, w, a, f }) => [
        sys.id,
        w.id,
        withDelta(a.p50, f.p50, 3),
        withDelta(a.p99, f.p99, 3),
        withDelta(a.p999, f.p999, 3),
        fmt(a.max, 1),
        fmt(a.errors),
      ]),
    ),
  );
  out.push('');
  out.push(
    `Streams: time to first token at ${s.ttftRate} streams/s (paced upstream: first content 2 ms after the headers), ms, (+ added vs floor)`,
  );
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
          return [
            sys.id,
            withRatio(a.readyMs, f.readyMs),
            withRatio(a.idleRssMB, f.idleRssMB, 1),
            withRatio(a.idleAnonMB, f.idleAnonMB, 1),
            withRatio(a.peakRssMB, f.peakRssMB, 1),
          ];
        }),
    ),
  );
  const targets = checkTargets(agg);
  if (targets.length > 0) {
    out.push('');
    out.push('Targets (issue 7)');
    out.push(
      table(
        ['system', 'target', 'measured', ''],
        targets.map((t) => [t.system, t.target, t.measured, t.pass ? 'met' : 'MISSED']),
      ),
    );
  }
  return { text: out.join('\n'), targets };
}

/** Issue 7's targets for every system but the floor and direct, from the medians. */
function checkTargets(agg: Record<string, Aggregate>): TargetCheck[] {
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
      add(
        'added p99 < 1 ms at 1k req/s',
        `${d >= 0 ? '+' : ''}${d.toFixed(3)} ms (p99 ${w[latId].p99.toFixed(3)} vs ${f.lat.p99.toFixed(3)})`,
        d < 1,
      );
    }
    const ttftId = ['ttft', 'an-ttft'].find((k) => w[k]);
    if (ttftId) {
      const d = w[ttftId].p50 - f[ttftId].p50;
      add(
        'stream TTFB within 0.5 ms of floor',
        `${d >= 0 ? '+' : ''}${d.toFixed(3)} ms (p50 ${w[ttftId].p50.toFixed(3)} vs ${f[ttftId].p50.toFixed(3)})`,
        d <= 0.5,
      );
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

/** After the tables: the OTLP sink's count (tracing runs) and the disturbed-measurement warning. */
export function trailer(chosen: System[], runs: RunResult[], s: Settings, exports: { requests: number; bytes: number }): string {
  let out = '';
  if (chosen.some((x) => x.tracing)) out += `\nOTLP sink (nginx, POST /v1/traces) received ${exports.requests} trace export requests\n`;
  const disturbed = runs.flatMap((r) => Object.values(r.workloads)).filter((w) => w.foreign > s.disturbed).length;
  if (disturbed > 0)
    out += `\nWARNING: ${disturbed} measurement(s) ran while other processes used more than ${s.disturbed * 100}% of a core: treat them with care.\n`;
  return out;
}

/**
 * bench/results/latest.txt (a short header and the tables) and latest.json (machine, settings,
 * systems, medians, targets, every round's results); returns latest.json's path.
 */
export function writeResults(
  m: Machine,
  s: Settings,
  chosen: System[],
  agg: Record<string, Aggregate>,
  text: string,
  targets: TargetCheck[],
  exports: { requests: number; bytes: number },
  runs: RunResult[],
): string {
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(
    join(ROOT, 'bench/results/latest.txt'),
    `llm-failover-sidecar bench: ${m.cpu}, ${m.nproc} cores, ${m.kernel}, node ${m.node}\ncommit ${m.commit}${m.dirty ? ` + ${m.dirty} uncommitted file(s)` : ''}, ${m.date}, node flags ${s.nodeFlags.join(' ') || '(none)'}\n\n${text}\n`,
  );
  const file = join(ROOT, 'bench/results/latest.json');
  writeFileSync(
    file,
    `${JSON.stringify({ machine: m, settings: s, systems: chosen.map(({ id, label, workloads }) => ({ id, label, workloads: workloads.map((w) => w.id) })), medians: agg, targets, otlpExports: exports, runs }, null, 2)}\n`,
  );
  return file;
}
