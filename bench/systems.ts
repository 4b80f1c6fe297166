/**
 * What `npm run bench` starts and measures: the catalogue of systems under test (the floor
 * proxy, bench/floor.ts; the sidecar as the image runs it, in several configurations; `direct`,
 * no proxy at all), the workloads each one is measured with and the floor workload each is
 * compared with, the upstreams they all run against (nginx with canned answers,
 * bench/upstream.ts, and the paced streaming upstream, bench/paced.ts), and how one system's
 * process is started pinned to the proxy core. Measuring it is bench/measure.ts.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BackendSpec, NO_HEALTH_POLICY, type ProviderSpec, sidecarYaml } from './configs.ts';
import { freePort, LOAD_CORE, NODE, PROXY_CORE, type Spawned, spawnPinned, waitReady } from './proc.ts';
import { PATHS, REQUEST_JSON, STREAM_REQUEST_JSON, startNginx, type Upstream } from './upstream.ts';

export type WorkloadKind = 'sat' | 'lat' | 'ttft';

export interface Workload {
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

export interface System {
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

/** How every process under test is launched: the part of the run's Settings this file reads. */
export interface LaunchSettings {
  /** V8 flags for every Node.js process under test (default: the image's, deploy/Dockerfile). */
  nodeFlags: string[];
  /** Environment for every Node.js process under test (the image's ENV lines). */
  env: Record<string, string>;
  /** The sidecar CLI the image runs (built JavaScript), relative to the repository. */
  cli: string;
}

export function systems(nginxPort: number, pacedPort: number, events: { openai: number; anthropic: number }): System[] {
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
    json: (path: string, twin = 'json', id = 'json'): Workload => ({
      id,
      kind: 'sat',
      label: 'non-streamed',
      path,
      body: REQUEST_JSON,
      twin,
    }),
    sse: (path: string, ev: number, twin = 'sse', id = 'sse'): Workload => ({
      id,
      kind: 'sat',
      label: 'streamed',
      path,
      body: STREAM_REQUEST_JSON,
      twin,
      events: ev,
    }),
    lat: (path: string, twin = 'lat', id = 'lat'): Workload => ({
      id,
      kind: 'lat',
      label: 'non-streamed @1k rps',
      path,
      body: REQUEST_JSON,
      twin,
    }),
    ttft: (path: string, twin = 'ttft', id = 'ttft'): Workload => ({
      id,
      kind: 'ttft',
      label: 'stream first token',
      path,
      body: STREAM_REQUEST_JSON,
      twin,
    }),
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
    {
      id: 'sidecar-ts',
      label: "sidecar, OpenAI, 1 group, from the TypeScript sources (npm start) instead of the image's JavaScript",
      kind: 'sidecar',
      quick: true,
      backends: openai,
      typescript: true,
      workloads: openaiWork,
    },
    {
      id: 'sidecar-otel',
      label: 'sidecar, OpenAI, 1 group, tracing on',
      kind: 'sidecar',
      quick: true,
      backends: openai,
      tracing: true,
      workloads: openaiWork,
    },
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
          groups: [
            [p('small-a', 'openai', PATHS.contextLength)],
            [p('small-b', 'openai', PATHS.contextLengthB)],
            [p('gpt-4o', 'openai', PATHS.openaiJson)],
          ],
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
          groups: [
            [p('down-a', 'openai', PATHS.error503)],
            [p('down-b', 'openai', PATHS.error503b)],
            [p('gpt-4o', 'openai', PATHS.openaiJson)],
          ],
          policy: NO_HEALTH_POLICY,
        },
      ],
      workloads: [W.json('/failover/model', 'json', 'fo503-json')],
    },
    {
      id: 'sidecar-v8-defaults',
      label: "sidecar, OpenAI, 1 group, node without the image's flags (heap caps, --no-maglev)",
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

/**
 * The systems of this run: those named by --only (the floor always among them: every ratio
 * needs it), else the quick ones for --quick, else all.
 */
export function chooseSystems(all: System[], only: string[] | undefined, quick: boolean): System[] {
  const chosen = all.filter((x) => (only ? only.includes(x.id) : quick ? x.quick : true));
  if (only && !chosen.some((x) => x.id === 'floor')) chosen.unshift(all[0]);
  return chosen;
}

/** What every system runs against, started once per run (on the load core). */
export interface Rig {
  nginx: Upstream;
  /** The paced streaming upstream (time to first token). */
  paced: Spawned;
  pacedPort: number;
  /** Scratch directory for the sidecars' YAML configurations. */
  dir: string;
}

/** The scratch directory first, then nginx, then the paced upstream (ready when this resolves). */
export async function startRig(): Promise<Rig> {
  const dir = join(tmpdir(), `llm-failover-bench-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const nginx = await startNginx(await freePort());
  const pacedPort = await freePort();
  const paced = spawnPinned(LOAD_CORE, NODE, [
    'bench/paced.ts',
    '--listen',
    `127.0.0.1:${pacedPort}`,
    '--first-ms',
    '2',
    '--chunk-ms',
    '5',
    '--chunks',
    '8',
  ]);
  await waitReady(`http://127.0.0.1:${pacedPort}/__ready`, paced);
  return { nginx, paced, pacedPort, dir };
}

/** Stops the rig (nginx, then the paced upstream) and removes the scratch directory. */
export async function stopRig(rig: Rig): Promise<void> {
  await rig.nginx.stop();
  await rig.paced.stop();
  rmSync(rig.dir, { recursive: true, force: true });
}

/** A started system: its process, the URL the load goes to, and the sidecar's admin URL. */
export interface Target {
  proc: Spawned;
  url: string;
  adminUrl?: string;
}

/** For `direct`: the upstream a workload's path belongs to (no process of ours in between). */
export function directTarget(w: Workload, rig: Rig): Target {
  const origin = w.path.startsWith('/paced/') ? `http://127.0.0.1:${rig.pacedPort}` : rig.nginx.origin;
  return { proc: undefined as unknown as Spawned, url: origin };
}

/**
 * Starts the floor or a sidecar alone on the proxy core, with the run's node flags and the
 * image's environment; resolves once it answers its readiness URL (polled every 5 ms), with
 * readyMs from spawn to that answer.
 */
export async function startSystem(sys: System, s: LaunchSettings, rig: Rig): Promise<Target & { readyMs: number }> {
  const { nginx, pacedPort, dir } = rig;
  const port = await freePort();
  const v8 = sys.nodeFlags ?? s.nodeFlags;
  if (sys.kind === 'floor') {
    const proc = spawnPinned(
      PROXY_CORE,
      NODE,
      [
        ...v8,
        'bench/floor.ts',
        '--listen',
        `127.0.0.1:${port}`,
        '--route',
        `/paced/=http://127.0.0.1:${pacedPort}`,
        '--route',
        `/=${nginx.origin}`,
      ],
      {
        env: { ...process.env, ...s.env },
      },
    );
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
    [
      ...v8,
      sys.typescript ? 'sidecar/cli.ts' : s.cli,
      '--config',
      config,
      '--listen',
      `127.0.0.1:${port}`,
      '--admin',
      `127.0.0.1:${adminPort}`,
      '--log-level',
      sys.logLevel ?? 'warn',
    ],
    { env, stdout: 'ignore' },
  );
  const ready = await waitReady(`http://127.0.0.1:${adminPort}/readyz`, proc);
  return { proc, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}`, readyMs: ready - proc.startedAt };
}
