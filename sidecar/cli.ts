#!/usr/bin/env node
/**
 * The `llm-failover-sidecar` command. Every flag has an environment variable twin
 * (flags win). With no configuration at all it runs the embedded demo.
 *
 * Exit codes: 0 clean shutdown, 1 runtime failure, 2 invalid configuration or usage.
 */
import { parseArgs } from 'node:util';
import { loadPlanFromPath } from './config/load.ts';
import type { Plan } from './config/plan.ts';
import { ConfigError } from './config/problems.ts';
import { redact } from './config/secret.ts';
import { DEFAULT_SECRETS_DIR } from './config/secrets.ts';
import { printSwitches, startDemo } from './demo.ts';
import { type Sidecar, startSidecar } from './main.ts';

export const FLAGS = {
  config: { env: 'LLM_FAILOVER_CONFIG', help: 'YAML file or folder of Backend / HTTPRoute / SidecarConfig / FailoverPolicy documents (none: the demo)' },
  'secrets-dir': { env: 'LLM_FAILOVER_SECRETS_DIR', help: `folder of mounted Secrets, <dir>/<secret>/Authorization (default ${DEFAULT_SECRETS_DIR})` },
  listen: { env: 'LLM_FAILOVER_LISTEN', help: 'proxy address host:port (default 127.0.0.1:8080)' },
  admin: { env: 'LLM_FAILOVER_ADMIN', help: 'admin address host:port for /healthz /readyz /status (default 127.0.0.1:15000)' },
  'max-body': { env: 'LLM_FAILOVER_MAX_BODY', help: 'largest request body in bytes (default 33554432)' },
  'log-level': { env: 'LLM_FAILOVER_LOG_LEVEL', help: 'trace|debug|info|warn|error|silent (default info)' },
} as const;

type FlagName = keyof typeof FLAGS;

export function usage(): string {
  const lines = Object.entries(FLAGS).map(([name, f]) => `  --${name.padEnd(12)} ${f.help}\n  ${' '.repeat(15)}env ${f.env}`);
  return `llm-failover-sidecar [options]\n\nKeeps an app's LLM calls working when a model goes down: OpenAI-style requests to the\nlisten address are served by the first healthy model of the configured priority groups.\n\nOptions:\n${lines.join('\n')}\n  --help         this text\n\nExit codes: 0 stopped cleanly, 1 runtime failure, 2 invalid configuration or usage.\n`;
}

export function resolveFlags(argv: string[], env: NodeJS.ProcessEnv): Partial<Record<FlagName, string>> & { help?: boolean } {
  const { values } = parseArgs({
    args: argv,
    options: { ...Object.fromEntries(Object.keys(FLAGS).map((k) => [k, { type: 'string' as const }])), help: { type: 'boolean' as const, short: 'h' } },
    strict: true,
    allowPositionals: false,
  });
  const out: Partial<Record<FlagName, string>> & { help?: boolean } = { help: values.help as boolean | undefined };
  for (const [name, f] of Object.entries(FLAGS) as [FlagName, (typeof FLAGS)[FlagName]][]) {
    const v = (values as Record<string, unknown>)[name] ?? env[f.env];
    if (typeof v === 'string' && v !== '') out[name] = v;
  }
  return out;
}

function applyOverrides(plan: Plan, flags: ReturnType<typeof resolveFlags>): Plan {
  const server = { ...plan.server };
  if (flags.listen) server.listen = flags.listen;
  if (flags.admin) server.admin = flags.admin;
  if (flags['log-level']) server.logLevel = flags['log-level'];
  if (flags['max-body']) {
    const n = Number(flags['max-body']);
    if (!Number.isInteger(n) || n < 1024) throw new ConfigError([{ file: '--max-body', message: `expected a whole number of bytes >= 1024, got "${flags['max-body']}"` }]);
    server.maxBodyBytes = n;
  }
  return { ...plan, server };
}

async function main(): Promise<void> {
  let flags: ReturnType<typeof resolveFlags>;
  try {
    flags = resolveFlags(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${usage()}`);
    process.exit(2);
  }
  if (flags.help) {
    process.stdout.write(usage());
    return;
  }
  let sidecar: Sidecar;
  let stopDemo: (() => Promise<void>) | undefined;
  try {
    if (flags.config) {
      const secretsDir = flags['secrets-dir'] ?? DEFAULT_SECRETS_DIR;
      const plan = loadPlanFromPath(flags.config, { secretsDir });
      // a changed ConfigMap is applied without a restart (an invalid one is rejected and logged)
      sidecar = await startSidecar({ plan: applyOverrides(plan, flags), watch: { path: flags.config, secretsDir, adjust: (p) => applyOverrides(p, flags) } });
    } else {
      const demo = await startDemo(flags.listen ?? '127.0.0.1:8080', flags.admin ?? '127.0.0.1:15000');
      const plan = applyOverrides(demo.plan, { ...flags, 'log-level': flags['log-level'] ?? 'warn' });
      sidecar = await startSidecar({ plan });
      const print = (line: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
      printSwitches(sidecar.events, print);
      print(`demo: 3 simulated OpenAI models in 3 priority groups (${demo.plan.backends[0].groups.map((g) => g[0].name).join(' > ')}); the primary fails on a schedule`);
      print(`try:  curl -s ${sidecar.url}/model -H content-type:application/json -d '{"messages":[{"role":"user","content":"What is kubernetes?"}]}'`);
      print(`      curl -s ${sidecar.adminUrl}/status`);
      const stop = demo.schedule(print);
      stopDemo = async () => {
        stop();
        await demo.close();
      };
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`failed to start: ${(err as Error).message}\n`);
    process.exit(1);
  }

  // A failure outside any request (a timer, a subscriber) is logged, never printed raw: logs are redacted.
  process.on('unhandledRejection', (reason) => {
    sidecar.logger.error({ err: reason instanceof Error ? { name: reason.name, message: redact(reason.message) } : redact(String(reason)) }, 'unhandled rejection');
  });
  process.on('uncaughtException', (err) => {
    sidecar.logger.fatal({ err: { name: err.name, message: redact(err.message) } }, 'uncaught exception: exiting so the pod restarts this sidecar clean');
    process.exit(1);
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    sidecar.logger.info({ signal, inFlight: sidecar.inFlight() }, 'draining');
    await sidecar.drain();
    await stopDemo?.();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

if (import.meta.main) await main();
