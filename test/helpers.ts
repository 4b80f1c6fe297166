/**
 * Test scaffolding: simulated providers on loopback, a sidecar in front of them built from the
 * same YAML users write, and the official OpenAI SDK as the client.
 */
import type { TracerProvider } from '@opentelemetry/api';
import OpenAI from 'openai';
import { loadPlan } from '../sidecar/config/load.ts';
import { startSidecar, type Sidecar } from '../sidecar/runtime/main.ts';
import { createLogger } from '../sidecar/observe/log.ts';
import { failoverYaml } from '../simulator/config.ts';
import { type SimulatedProvider, type SimulatorOptions, startAnthropicSimulator, startOpenAISimulator } from '../simulator/index.ts';
import { Writable } from 'node:stream';

export interface ModelSpec {
  name: string;
  kind?: 'openai' | 'anthropic';
  model?: string;
  /** 0-based priority group. */
  group: number;
  sim?: Partial<SimulatorOptions>;
}

export interface Harness {
  sidecar: Sidecar;
  sims: Record<string, SimulatedProvider>;
  client: OpenAI;
  /** Every log line the sidecar wrote. */
  logs: string[];
  close(): Promise<void>;
}

export const TEST_KEY = 'sk-test-planted-secret-0123456789';

export function backendYaml(models: ModelSpec[], ports: Record<string, number>, name = 'model-failover'): string {
  return failoverYaml(
    models.map((m) => ({ ...m, port: ports[m.name], token: TEST_KEY })),
    { backend: name },
  );
}

export const LOOPBACK_SERVER = `---
apiVersion: llm-failover.dev/v1alpha1
kind: SidecarConfig
spec:
  listen: 127.0.0.1:0
  admin: 127.0.0.1:0
`;

export function policyYaml(spec: string, backend = 'model-failover'): string {
  return `---
apiVersion: llm-failover.dev/v1alpha1
kind: FailoverPolicy
metadata:
  name: test
spec:
  targetRefs:
  - kind: Backend
    name: ${backend}
${spec}
`;
}

export interface HarnessOptions {
  /** Run the active health probes (off by default: most tests look at one request's path). */
  probes?: boolean;
  tracerProvider?: TracerProvider;
  /** The key the simulators demand (default TEST_KEY); null: none. */
  apiKey?: string | null;
  /** The configuration, from the simulators' ports (default: the Backend and HTTPRoute for `models`). */
  yaml?: (ports: Record<string, number>) => string;
}

/** Simulators for `models`, and a sidecar in front of them on loopback. */
export async function startHarness(models: ModelSpec[], extraYaml = '', options: HarnessOptions = {}): Promise<Harness> {
  const sims: Record<string, SimulatedProvider> = {};
  const apiKey = options.apiKey === null ? undefined : (options.apiKey ?? TEST_KEY);
  for (const m of models) {
    const start = m.kind === 'anthropic' ? startAnthropicSimulator : startOpenAISimulator;
    sims[m.name] = await start({ model: m.model ?? m.name, apiKey, ...m.sim });
  }
  const ports = Object.fromEntries(Object.entries(sims).map(([k, s]) => [k, s.port]));
  const text = options.yaml ? options.yaml(ports) : backendYaml(models, ports) + LOOPBACK_SERVER + extraYaml;
  const plan = loadPlan([{ name: 'test.yaml', text }], { env: {} });
  const logs: string[] = [];
  const sidecar = await startSidecar({ plan, logger: capturingLogger(logs), probes: options.probes ?? false, tracerProvider: options.tracerProvider, env: {} });
  const client = new OpenAI({ baseURL: `${sidecar.url}/v1`, apiKey: 'client-key-unused', maxRetries: 0, timeout: 20_000 });
  return {
    sidecar,
    sims,
    client,
    logs,
    async close() {
      await sidecar.close();
      await Promise.all(Object.values(sims).map((s) => s.close()));
    },
  };
}

/** A logger at info level whose every line lands in `lines`. */
export function capturingLogger(lines: string[]) {
  return createLogger(
    'info',
    new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    }),
  );
}

export const HELLO = [{ role: 'user' as const, content: 'What is kubernetes?' }];

/** POST a JSON body with plain fetch; returns status, headers and parsed body. */
export async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json: json as { error?: { message: string; type: string; code: string | null; attempts?: unknown[] } } & Record<string, unknown> };
}
