/**
 * The YAML a test sidecar loads, written the way users write it: the seed page's Backend and
 * HTTPRoute for simulated models, a SidecarConfig on loopback, a FailoverPolicy for the Backend.
 */
import { loadPlan } from '../../sidecar/config/load.ts';
import { ConfigError } from '../../sidecar/config/problems.ts';
import { failoverYaml } from '../../simulator/config.ts';

/** The key every simulated provider demands by default; the scrubbing tests look for it everywhere. */
export const TEST_KEY = 'sk-test-planted-secret-0123456789';

export interface ModelSpec {
  name: string;
  kind?: 'openai' | 'anthropic';
  model?: string;
  /** 0-based priority group. */
  group: number;
  sim?: Partial<import('../../simulator/index.ts').SimulatorOptions>;
}

export function backendYaml(models: ModelSpec[], ports: Record<string, number>, name = 'model-failover'): string {
  return failoverYaml(
    models.map((m) => ({ ...m, port: ports[m.name], token: TEST_KEY })),
    { backend: name },
  );
}

/** A SidecarConfig on loopback (ephemeral ports), with `extra` lines under its spec (indented two spaces). */
export function sidecarConfigYaml(extra = '', listen = '127.0.0.1:0'): string {
  return `---
apiVersion: llm-failover.dev/v1alpha1
kind: SidecarConfig
spec:
  listen: ${listen}
  admin: 127.0.0.1:0
${extra}`;
}

export const LOOPBACK_SERVER = sidecarConfigYaml();

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

/** The problems the loader finds in `text`, one line each (none: the configuration loads). */
export function configProblems(text: string, options: { env?: NodeJS.ProcessEnv; secretsDir?: string } = {}): string[] {
  try {
    loadPlan([{ name: 'bad.yaml', text }], { env: options.env ?? {}, secretsDir: options.secretsDir ?? '/nonexistent' });
  } catch (err) {
    if (err instanceof ConfigError)
      return err.message
        .split('\n')
        .slice(1)
        .map((l) => l.replace(/^ {2}- /, ''));
    throw err;
  }
  return [];
}
