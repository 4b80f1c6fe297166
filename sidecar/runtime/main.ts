/**
 * Wiring: a Plan in, a running sidecar out. The servers, the event stream and its subscribers
 * (logs, metrics, traces) live as long as the process; everything built from the configuration
 * lives in a Generation (generation.ts), swapped atomically when the configuration changes.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { TracerProvider } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { type Plan, withoutProbes } from '../config/plan.ts';
import { ConfigError } from '../config/problems.ts';
import { redact } from '../core/secret.ts';
import { type CheckResult, watchConfig } from '../config/watch.ts';
import { Generation } from './generation.ts';
import type { HealthMonitor } from '../health/monitor.ts';
import type { ProbeScheduler } from '../../probes/scheduler.ts';
import type { HealthView } from '../health/view.ts';
import { Events } from '../observe/events.ts';
import { createLogger, logEvents } from '../observe/log.ts';
import { createMetrics } from '../observe/metrics.ts';
import { startTracing } from '../observe/telemetry.ts';
import { createAdminServer } from '../server/admin.ts';
import { createHandler, type HandlerState, interruptInFlight } from '../server/handler.ts';
import { Admission } from '../server/admission.ts';
import { createDualServer, DEFAULT_LIMITS, isLoopback, parseHostPort } from '../server/listen.ts';

export interface StartOptions {
  plan: Plan;
  logger?: Logger;
  /** false: no active probes, as if every model said `probe.kind: none` (default true). */
  probes?: boolean;
  /** Trace with this provider (tests); by default OTEL_* decides (observe/telemetry.ts). */
  tracerProvider?: TracerProvider;
  env?: NodeJS.ProcessEnv;
  /** Watch this configuration path and apply valid changes without a restart. */
  watch?: { path: string; secretsDir?: string; pollMs?: number; adjust?: (plan: Plan) => Plan };
}

export interface Sidecar {
  /** http://host:port of the proxy. */
  url: string;
  adminUrl: string;
  events: Events;
  logger: Logger;
  metrics: Registry;
  /** The configuration being served now. */
  readonly plan: Plan;
  /** Health of the configuration being served now. */
  readonly health: HealthView;
  readonly monitor: HealthMonitor;
  /** The active probes of the configuration being served now. */
  readonly probes: ProbeScheduler;
  /** Which configuration is served: 1 at start, +1 per applied change. */
  readonly generation: number;
  inFlight(): number;
  /** Serve a new configuration from now on; requests in flight finish on the old one. */
  reload(plan: Plan): void;
  /**
   * Stop accepting, let in-flight requests finish within graceMs; then answer what is left
   * (streams end with a `sidecar_shutting_down` error event, requests that sent nothing get a
   * 503), give those answers a moment to flush, and close everything.
   */
  drain(graceMs?: number): Promise<DrainResult>;
  /**
   * Read the watched configuration now (SIGHUP) and apply it if it changed and is valid.
   * 'unwatched' when the sidecar was started without a configuration path (the demo).
   */
  recheckConfig(): CheckResult | 'unwatched';
  /** Close everything now. */
  close(): Promise<void>;
}

/** What a drain left unfinished when its grace ended (both 0: everything finished). */
export interface DrainResult {
  /** Committed streams ended with the shutting-down error event. */
  cut: number;
  /** Requests that had sent nothing yet, answered 503 sidecar_shutting_down. */
  refused: number;
}

/** How long the answers sent when the drain grace ends may take to reach their clients. */
const FLUSH_MS = 1000;

export async function startSidecar(options: StartOptions): Promise<Sidecar> {
  const prepare = (p: Plan) => (options.probes === false ? withoutProbes(p) : p);
  const events = new Events();
  let current = new Generation(1, prepare(options.plan), events);
  const server0 = current.plan.server;
  const logger = options.logger ?? createLogger(server0.logLevel);
  logEvents(events, logger);
  events.onListenerError = (err, event) =>
    logger.error(
      { event, err: err instanceof Error ? { name: err.name, message: redact(err.message) } : redact(String(err)) },
      'an event subscriber failed',
    );
  const tracing = await startTracing(options.env ?? process.env, options.tracerProvider);
  // the tracing subscriber (and OpenTelemetry's API) is only loaded when tracing is on
  if (tracing) (await import('../observe/tracing.ts')).subscribeTracing(events, tracing.tracer, tracing.propagator);

  const retiring = new Set<Promise<void>>();
  const state: HandlerState = {
    current: () => current,
    admission: new Admission(server0.maxConcurrentRequests, server0.maxQueuedRequests, server0.queueTimeoutMs),
    maxBodyBytes: server0.maxBodyBytes,
    draining: false,
    inFlight: 0,
    live: new Set(),
    onError: (err) =>
      logger.error(
        {
          err:
            err instanceof Error ? { name: err.name, message: redact(err.message), stack: redact(err.stack ?? '') } : redact(String(err)),
        },
        'request handler failed',
      ),
  };
  const limits = {
    headersTimeoutMs: server0.headersTimeoutMs,
    requestTimeoutMs: server0.requestBodyTimeoutMs,
    keepAliveTimeoutMs: DEFAULT_LIMITS.keepAliveTimeoutMs,
    maxHeaderBytes: DEFAULT_LIMITS.maxHeaderBytes,
    maxConnections: server0.maxConnections,
  };
  const server = createDualServer(createHandler(state), limits, (status, code) =>
    events.emit('rejected', { status, code, at: Date.now() }),
  );
  let ready = false;
  const metrics = createMetrics(events, { current: () => current, inFlight: () => state.inFlight });
  const admin = createAdminServer(
    {
      ready: () => ready && !state.draining,
      backends: () => current.plan.backends,
      monitor: () => current.monitor,
      probes: () => current.probes,
      metrics: () => metrics,
    },
    limits,
  );

  const listen = parseHostPort(server0.listen);
  const adminAt = parseHostPort(server0.admin);
  server.net.listen(listen.port, listen.host);
  admin.listen(adminAt.port, adminAt.host);
  await Promise.all([once(server.net, 'listening'), once(admin, 'listening')]);
  ready = true;
  current.start();
  const addr = server.net.address() as AddressInfo;
  const adminAddr = admin.address() as AddressInfo;
  const host = (a: AddressInfo) => (a.family === 'IPv6' ? `[${a.address}]` : a.address);
  if (!isLoopback(listen.host))
    logger.warn({ listen: server0.listen }, 'the proxy port is not on loopback: anyone who reaches it spends the API keys');
  logger.info(
    {
      listen: `${host(addr)}:${addr.port}`,
      admin: `${host(adminAddr)}:${adminAddr.port}`,
      backends: current.plan.backends.map((b) => b.name),
      tracing: Boolean(tracing),
    },
    'sidecar ready',
  );

  const reload = (next: Plan) => {
    const previous = current;
    const prepared = prepare(next);
    const generation = new Generation(previous.number + 1, prepared, events, previous);
    // the log level and the drain grace apply at once; the listeners' settings only at the next start
    if (prepared.server.logLevel !== logger.level) logger.level = prepared.server.logLevel;
    for (const key of [
      'listen',
      'admin',
      'maxBodyBytes',
      'maxConcurrentRequests',
      'maxQueuedRequests',
      'queueTimeoutMs',
      'maxConnections',
      'headersTimeoutMs',
      'requestBodyTimeoutMs',
    ] as const) {
      if (prepared.server[key] !== server0[key])
        logger.warn(
          { setting: key, running: server0[key], configured: prepared.server[key] },
          `${key} changes take effect at the next restart`,
        );
    }
    current = generation;
    generation.start();
    const retired = previous.retire();
    retiring.add(retired);
    void retired.finally(() => retiring.delete(retired));
    events.emit('config', { generation: generation.number, ok: true, at: Date.now() });
  };

  const watcher = options.watch
    ? watchConfig(
        options.watch.path,
        { secretsDir: options.watch.secretsDir, pollMs: options.watch.pollMs },
        {
          onPlan: (plan) => {
            try {
              reload(options.watch?.adjust ? options.watch.adjust(plan) : plan);
            } catch (err) {
              events.emit('config', { generation: current.number, ok: false, problems: problemsOf(err), at: Date.now() });
            }
          },
          onRejected: (err) => events.emit('config', { generation: current.number, ok: false, problems: problemsOf(err), at: Date.now() }),
          onRecovered: () =>
            logger.info(
              { event: 'config', generation: current.number },
              `the configuration can be read again and is unchanged: still serving configuration ${current.number}`,
            ),
        },
      )
    : undefined;

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    watcher?.stop();
    server.stopAccepting();
    server.destroyAll();
    admin.closeAllConnections();
    admin.close();
    await Promise.all([current.close(), ...retiring]);
    await tracing?.shutdown();
  };

  return {
    url: `http://${host(addr)}:${addr.port}`,
    adminUrl: `http://${host(adminAddr)}:${adminAddr.port}`,
    events,
    logger,
    metrics,
    get plan() {
      return current.plan;
    },
    get health() {
      return current.monitor.view;
    },
    get monitor() {
      return current.monitor;
    },
    get probes() {
      return current.probes;
    },
    get generation() {
      return current.number;
    },
    inFlight: () => state.inFlight,
    reload,
    async drain(graceMs = current.plan.server.drainGraceMs) {
      state.draining = true;
      server.stopAccepting();
      const deadline = Date.now() + graceMs;
      while (state.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const result = state.inFlight > 0 ? interruptInFlight(state, graceMs) : { cut: 0, refused: 0 };
      // the error events and 503s just sent get a moment to reach their clients
      const flushed = Date.now() + FLUSH_MS;
      while (state.inFlight > 0 && Date.now() < flushed) await new Promise((r) => setTimeout(r, 10));
      await close();
      return result;
    },
    recheckConfig: () => (watcher ? watcher.check(true) : 'unwatched'),
    close,
  };
}

function problemsOf(err: unknown): string[] {
  if (err instanceof ConfigError)
    return err.message
      .split('\n')
      .slice(1)
      .map((l) => l.replace(/^ {2}- /, ''));
  return [err instanceof Error ? err.message : String(err)];
}
