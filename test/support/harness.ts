/**
 * The one harness: simulated providers on loopback, a sidecar in front of them built from the
 * same YAML users write (test/support/yaml.ts), the official OpenAI SDK as the client, and every
 * log line captured.
 */
import { Writable } from 'node:stream';
import type { TracerProvider } from '@opentelemetry/api';
import OpenAI from 'openai';
import { loadPlan } from '../../sidecar/config/load.ts';
import { createLogger } from '../../sidecar/observe/log.ts';
import { type Sidecar, startSidecar } from '../../sidecar/runtime/main.ts';
import { type SimulatedProvider, startAnthropicSimulator, startOpenAISimulator } from '../../simulator/index.ts';
import { backendYaml, type ModelSpec, policyYaml, sidecarConfigYaml, TEST_KEY } from './yaml.ts';

export interface Harness {
  sidecar: Sidecar;
  sims: Record<string, SimulatedProvider>;
  client: OpenAI;
  /** Every log line the sidecar wrote. */
  logs: string[];
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Run the active health probes (off by default: most tests look at one request's path). */
  probes?: boolean;
  tracerProvider?: TracerProvider;
  /** The key the simulators demand (default TEST_KEY); null: none. */
  apiKey?: string | null;
  /** Lines under the SidecarConfig's spec (indented two spaces), beside listen/admin on loopback. */
  server?: string;
  /** A FailoverPolicy's spec lines for the Backend (see yaml.ts policyYaml). */
  policy?: string;
  /** More YAML documents after the Backend, HTTPRoute, SidecarConfig and policy. */
  extraYaml?: string;
  /** Rewrites the Backend/HTTPRoute YAML before loading (re-point a host, change auth); `ports` are the simulators'. */
  mapYaml?: (yaml: string, ports: Record<string, number>) => string;
  /** The whole configuration instead, from the simulators' ports. */
  yaml?: (ports: Record<string, number>) => string;
}

/** Simulators for `models`, and a sidecar in front of them on loopback. */
export async function startHarness(models: ModelSpec[], options: HarnessOptions = {}): Promise<Harness> {
  const sims: Record<string, SimulatedProvider> = {};
  const apiKey = options.apiKey === null ? undefined : (options.apiKey ?? TEST_KEY);
  for (const m of models) {
    const start = m.kind === 'anthropic' ? startAnthropicSimulator : startOpenAISimulator;
    sims[m.name] = await start({ model: m.model ?? m.name, apiKey, ...m.sim });
  }
  const ports = Object.fromEntries(Object.entries(sims).map(([k, s]) => [k, s.port]));
  const backend = options.mapYaml ? options.mapYaml(backendYaml(models, ports), ports) : backendYaml(models, ports);
  const text = options.yaml
    ? options.yaml(ports)
    : `${backend}${sidecarConfigYaml(options.server)}${options.policy ? policyYaml(options.policy) : ''}${options.extraYaml ?? ''}`;
  const plan = loadPlan([{ name: 'test.yaml', text }], { env: {} });
  const logs: string[] = [];
  const sidecar = await startSidecar({
    plan,
    logger: capturingLogger(logs),
    probes: options.probes ?? false,
    tracerProvider: options.tracerProvider,
    env: {},
  });
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
