/**
 * The demo that `npm start` runs with no configuration: the seed page's first example (three
 * priority groups of OpenAI models), served by simulated OpenAI-compatible providers in this
 * process. The primary fails on a schedule, so every switch can be watched with no API key.
 */
import { loadPlan } from '../config/load.ts';
import type { Plan } from '../config/plan.ts';
import { redact } from '../core/secret.ts';
import type { Events } from '../observe/events.ts';
import { failoverYaml } from '../../simulator/config.ts';
import { type Fault, type SimulatedProvider, startOpenAISimulator } from '../../simulator/index.ts';

export interface Demo {
  plan: Plan;
  providers: SimulatedProvider[];
  /** Starts the fault schedule on the primary (durations times `scale`); returns a function that stops it. */
  schedule(log: (line: string) => void, scale?: number): () => void;
  close(): Promise<void>;
}

const MODELS = [
  { name: 'openai-gpt-4o', model: 'gpt-4o' },
  { name: 'openai-gpt-4.0-turbo', model: 'gpt-4.0-turbo' },
  { name: 'openai-gpt-3.5-turbo', model: 'gpt-3.5-turbo' },
];

/** What the primary does, in turn, for `seconds` each. */
export const DEMO_SCHEDULE: { fault: Fault; seconds: number; label: string }[] = [
  { fault: { kind: 'none' }, seconds: 10, label: 'primary healthy' },
  { fault: { kind: 'status', status: 503 }, seconds: 15, label: 'primary answers 503' },
  { fault: { kind: 'none' }, seconds: 20, label: 'primary healthy' },
  {
    fault: { kind: 'status', status: 429, headers: { 'retry-after': '10' } },
    seconds: 15,
    label: 'primary rate-limited (429, Retry-After: 10)',
  },
  { fault: { kind: 'none' }, seconds: 20, label: 'primary healthy' },
  { fault: { kind: 'refuse' }, seconds: 15, label: 'primary refuses connections' },
];

export function demoYaml(ports: number[], listen: string, admin: string): string {
  const models = MODELS.map((m, i) => ({ ...m, group: i, port: ports[i], token: 'demo-key' }));
  return `${failoverYaml(models, { backend: 'model-failover', namespace: 'demo' })}---
apiVersion: llm-failover.dev/v1alpha1
kind: FailoverPolicy
metadata:
  name: demo
spec:
  targetRefs:
  - kind: Backend
    name: model-failover
  cooldown:
    afterFailure: 5s
---
apiVersion: llm-failover.dev/v1alpha1
kind: SidecarConfig
spec:
  listen: ${listen}
  admin: ${admin}
`;
}

export async function startDemo(listen: string, admin: string): Promise<Demo> {
  const providers = await Promise.all(MODELS.map((m) => startOpenAISimulator({ model: m.model, apiKey: 'demo-key', chunkDelayMs: 20 })));
  const plan = loadPlan([
    {
      name: '(embedded demo)',
      text: demoYaml(
        providers.map((p) => p.port),
        listen,
        admin,
      ),
    },
  ]);
  return {
    plan,
    providers,
    schedule(log, scale = 1) {
      let step = 0;
      let timer: NodeJS.Timeout;
      const run = () => {
        const s = DEMO_SCHEDULE[step % DEMO_SCHEDULE.length];
        step++;
        providers[0].setFault(s.fault);
        log(`[demo] ${s.label} for ${s.seconds}s`);
        timer = setTimeout(run, s.seconds * 1000 * scale);
        timer.unref();
      };
      run();
      return () => clearTimeout(timer);
    },
    async close() {
      await Promise.all(providers.map((p) => p.close()));
    },
  };
}

/** Human lines for the demo's terminal: every switch and every health change. */
export function printSwitches(events: Events, print: (line: string) => void): void {
  events.on('switch', (e) => print(`[switch] ${e.from.name} -> ${e.to.name} (${e.reason}${e.status ? ` ${e.status}` : ''})`));
  events.on('health', (e) => print(`[health] ${e.model.name}: ${e.from} -> ${e.to} (${redact(e.cause)})`));
  events.on('request', (e) => {
    if (e.outcome !== 'ok') print(`[request] ${e.route} -> ${e.status} ${e.outcome}`);
  });
}
