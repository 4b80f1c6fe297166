/**
 * The `llm-failover-sidecar` command.
 *   llm-failover-sidecar [serve] [flags]      the sidecar (what `npm start` runs); no config: the demo
 *   llm-failover-sidecar check --config PATH   validate a configuration without starting
 *   llm-failover-sidecar status [--admin URL]  every model's health from a running sidecar
 * Every serve/check flag has an environment variable twin (flags win).
 *
 * Exit codes: 0 success / clean shutdown (every request drained), 1 runtime failure (sidecar
 * failed, admin unreachable, or the drain grace ended with requests still in flight), 2 invalid
 * configuration or usage.
 *
 * Signals: SIGTERM / SIGINT drain, then exit; SIGHUP re-reads the configuration (streams in
 * flight continue).
 */
import { parseArgs } from 'node:util';
import { loadPlanFromPath } from '../config/load.ts';
import type { Plan } from '../config/plan.ts';
import { ConfigError } from '../config/problems.ts';
import { redact } from '../core/secret.ts';
import { DEFAULT_SECRETS_DIR } from '../config/secrets.ts';
import { type Sidecar, startSidecar } from '../runtime/main.ts';

interface Flag {
  env?: string;
  help: string;
  boolean?: boolean;
}

const SERVE_FLAGS: Record<string, Flag> = {
  config: {
    env: 'LLM_FAILOVER_CONFIG',
    help: 'YAML file or folder of Backend / HTTPRoute / SidecarConfig / FailoverPolicy documents (none: the demo); watched, changes apply without a restart',
  },
  'secrets-dir': {
    env: 'LLM_FAILOVER_SECRETS_DIR',
    help: `folder of mounted Secrets, <dir>/<secret>/Authorization (default ${DEFAULT_SECRETS_DIR})`,
  },
  listen: { env: 'LLM_FAILOVER_LISTEN', help: 'proxy address host:port (default 127.0.0.1:8080)' },
  admin: { env: 'LLM_FAILOVER_ADMIN', help: 'admin address host:port for /healthz /readyz /status /metrics (default 127.0.0.1:15000)' },
  'max-body': { env: 'LLM_FAILOVER_MAX_BODY', help: 'largest request body in bytes (default 33554432)' },
  'log-level': { env: 'LLM_FAILOVER_LOG_LEVEL', help: 'trace|debug|info|warn|error|silent (default info)' },
};

const CHECK_FLAGS: Record<string, Flag> = {
  config: SERVE_FLAGS.config,
  'secrets-dir': SERVE_FLAGS['secrets-dir'],
};

const STATUS_FLAGS: Record<string, Flag> = {
  admin: { env: 'LLM_FAILOVER_ADMIN_URL', help: 'the admin URL of a running sidecar (default http://127.0.0.1:15000)' },
  watch: { help: 'refresh every 2 s until interrupted', boolean: true },
  json: { help: 'print the /status JSON (for scripts)', boolean: true },
};

const COMMANDS = {
  serve: { flags: SERVE_FLAGS, summary: 'run the sidecar (the default command)' },
  check: { flags: CHECK_FLAGS, summary: 'validate a configuration without starting; print the resolved plan' },
  status: { flags: STATUS_FLAGS, summary: "show every model's health from a running sidecar" },
} as const;
type Command = keyof typeof COMMANDS;

const EXIT =
  '\nExit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage.\nAfter SIGTERM or SIGINT: 0 when every request drained, 1 when the drain grace ended and requests were cut.\nSIGHUP re-reads the configuration; streams in flight continue.\n';

export function usage(command?: Command): string {
  if (!command) {
    const list = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`);
    return `llm-failover-sidecar [command] [options]\n\nKeeps an app's LLM calls working when a model goes down: OpenAI-style requests to the\nlisten address are served by the first healthy model of the configured priority groups.\n\nCommands:\n${list.join('\n')}\n\n'llm-failover-sidecar <command> --help' for a command's options.\n${EXIT}`;
  }
  const flags = Object.entries(COMMANDS[command].flags).map(
    ([name, f]) => `  --${name.padEnd(12)} ${f.help}${f.env ? `\n  ${' '.repeat(15)}env ${f.env}` : ''}`,
  );
  return `llm-failover-sidecar ${command} [options]\n\n${COMMANDS[command].summary}\n\nOptions:\n${flags.join('\n')}\n  --help         this text\n${EXIT}`;
}

type Values = Record<string, string | boolean | undefined>;

/** Flags, then their environment twins. */
export function resolveFlags(command: Command, argv: string[], env: NodeJS.ProcessEnv): Values {
  const flags = COMMANDS[command].flags;
  const { values } = parseArgs({
    args: argv,
    options: {
      ...Object.fromEntries(Object.entries(flags).map(([k, f]) => [k, { type: f.boolean ? ('boolean' as const) : ('string' as const) }])),
      help: { type: 'boolean' as const, short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  const out: Values = { help: values.help as boolean | undefined };
  for (const [name, f] of Object.entries(flags)) {
    const v = (values as Values)[name] ?? (f.env ? env[f.env] : undefined);
    if (v !== undefined && v !== '') out[name] = v;
  }
  return out;
}

function applyOverrides(plan: Plan, flags: Values): Plan {
  const server = { ...plan.server };
  if (typeof flags.listen === 'string') server.listen = flags.listen;
  if (typeof flags.admin === 'string') server.admin = flags.admin;
  if (typeof flags['log-level'] === 'string') server.logLevel = flags['log-level'];
  if (typeof flags['max-body'] === 'string') {
    const n = Number(flags['max-body']);
    if (!Number.isInteger(n) || n < 1024)
      throw new ConfigError([{ file: '--max-body', message: `expected a whole number of bytes >= 1024, got "${flags['max-body']}"` }]);
    server.maxBodyBytes = n;
  }
  return { ...plan, server };
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

async function serve(flags: Values): Promise<void> {
  let sidecar: Sidecar;
  let stopDemo: (() => Promise<void>) | undefined;
  /** Lines about the process itself (signals, shutdown): a log line, or in the demo a printed one. */
  let notice: (level: 'info' | 'warn', fields: Record<string, unknown>, line: string) => void = (level, fields, line) =>
    sidecar.logger[level](fields, line);
  try {
    if (typeof flags.config === 'string') {
      const secretsDir = typeof flags['secrets-dir'] === 'string' ? flags['secrets-dir'] : DEFAULT_SECRETS_DIR;
      const plan = loadPlanFromPath(flags.config, { secretsDir });
      // a changed ConfigMap is applied without a restart (an invalid one is rejected and logged)
      sidecar = await startSidecar({
        plan: applyOverrides(plan, flags),
        watch: { path: flags.config, secretsDir, adjust: (p) => applyOverrides(p, flags) },
      });
    } else {
      // the demo, check and status load only when asked for: the serving process never needs them
      const { printSwitches, startDemo } = await import('./demo.ts');
      const demo = await startDemo(
        typeof flags.listen === 'string' ? flags.listen : '127.0.0.1:8080',
        typeof flags.admin === 'string' ? flags.admin : '127.0.0.1:15000',
      );
      const plan = applyOverrides(demo.plan, { ...flags, 'log-level': flags['log-level'] ?? 'warn' });
      sidecar = await startSidecar({ plan });
      const print = (line: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
      printSwitches(sidecar.events, print);
      print(
        `demo: 3 simulated OpenAI models in 3 priority groups (${demo.plan.backends[0].groups.map((g) => g[0].name).join(' > ')}); the primary fails on a schedule`,
      );
      print(
        `try:  curl -s ${sidecar.url}/model -H content-type:application/json -d '{"messages":[{"role":"user","content":"What is kubernetes?"}]}'`,
      );
      print(`      curl -s ${sidecar.adminUrl}/status`);
      notice = (_level, _fields, line) => print(line);
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
    process.stderr.write(`failed to start: ${redact((err as Error).message)}\n`);
    process.exit(1);
  }

  // A failure outside any request (a timer, a subscriber) is logged, never printed raw: logs are redacted.
  process.on('unhandledRejection', (reason) => {
    sidecar.logger.error(
      { err: reason instanceof Error ? { name: reason.name, message: redact(reason.message) } : redact(String(reason)) },
      'unhandled rejection',
    );
  });
  process.on('uncaughtException', (err) => {
    sidecar.logger.fatal(
      { err: { name: err.name, message: redact(err.message) } },
      'uncaught exception: exiting so the pod restarts this sidecar clean',
    );
    sidecar.logger.flush(() => process.exit(1));
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    sidecar.logger.info({ signal, inFlight: sidecar.inFlight() }, 'draining');
    const { cut, refused } = await sidecar.drain();
    await stopDemo?.();
    // the last line, and the exit code, say whether anything was cut
    if (cut + refused > 0)
      notice(
        'warn',
        { signal, cut, refused },
        `shutdown: drain grace ended; cut ${plural(cut, 'stream')}, refused ${plural(refused, 'request')}`,
      );
    else notice('info', { signal }, 'shutdown: every request drained');
    sidecar.logger.flush(() => process.exit(cut + refused > 0 ? 1 : 0));
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  // as daemons do: SIGHUP re-reads the configuration; nothing in flight is touched
  process.on('SIGHUP', () => {
    const result = sidecar.recheckConfig();
    const line = {
      unwatched: 'SIGHUP: no --config (the demo): nothing to reload',
      unchanged: `SIGHUP: configuration re-read: unchanged, still serving configuration ${sidecar.generation}`,
      changed: `SIGHUP: configuration re-read: changed, now serving configuration ${sidecar.generation}`,
      rejected: `SIGHUP: configuration re-read: invalid (the error above), still serving configuration ${sidecar.generation}`,
      unreadable: `SIGHUP: the configuration cannot be read (the error above), still serving configuration ${sidecar.generation}`,
    }[result];
    notice(result === 'rejected' || result === 'unreadable' ? 'warn' : 'info', { signal: 'SIGHUP', result }, line);
  });
}

async function status(flags: Values): Promise<void> {
  const admin = typeof flags.admin === 'string' ? flags.admin : 'http://127.0.0.1:15000';
  const url = /^https?:\/\//.test(admin) ? admin : `http://${admin}`;
  const { fetchStatus, renderStatus } = await import('./status.ts');
  const once = async () => {
    const doc = await fetchStatus(url);
    if (flags.json) return `${JSON.stringify(doc, null, 2)}\n`;
    const colour = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
    return renderStatus(doc, { now: Date.now(), colour, width: process.stdout.columns });
  };
  try {
    if (!flags.watch) {
      process.stdout.write(await once());
      return;
    }
    for (;;) {
      const text = await once();
      process.stdout.write(`${process.stdout.isTTY ? '\x1b[2J\x1b[H' : ''}${new Date().toISOString()}  ${url}\n${text}`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  } catch (err) {
    process.stderr.write(`cannot read ${url}/status: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

async function main(argv: string[]): Promise<void> {
  const command: Command = argv[0] && argv[0] in COMMANDS ? (argv[0] as Command) : 'serve';
  const rest = argv[0] && argv[0] in COMMANDS ? argv.slice(1) : argv;
  if (command === 'serve' && (rest[0] === 'help' || (argv.length === 1 && (argv[0] === '--help' || argv[0] === '-h')))) {
    process.stdout.write(`${usage()}\n${usage('serve')}`);
    return;
  }
  let flags: Values;
  try {
    flags = resolveFlags(command, rest, process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${usage(command)}`);
    process.exit(2);
  }
  if (flags.help) {
    process.stdout.write(usage(command));
    return;
  }
  if (command === 'check') {
    if (typeof flags.config !== 'string') {
      process.stderr.write(`check needs --config PATH\n\n${usage('check')}`);
      process.exit(2);
    }
    const { check } = await import('./check.ts');
    const result = check(flags.config, typeof flags['secrets-dir'] === 'string' ? flags['secrets-dir'] : DEFAULT_SECRETS_DIR);
    (result.ok ? process.stdout : process.stderr).write(`${result.text}\n`);
    process.exit(result.ok ? 0 : 2);
  }
  if (command === 'status') return status(flags);
  return serve(flags);
}

export const run = main;
