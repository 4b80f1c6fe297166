/**
 * Wiring: a Plan in, a running sidecar out. The pieces compose here and nowhere else:
 * health view <- passive health; balancer reads health; failover runs attempts through pools
 * and translators; the event stream feeds logs.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { TracerProvider } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { allModels, type Plan, type ProviderKind, withoutProbes } from './config/plan.ts';
import { ConfigError, type Problem } from './config/problems.ts';
import { FileSecret } from './config/secret.ts';
import { HealthMonitor } from './health/monitor.ts';
import type { HealthView } from './health/view.ts';
import { Events } from './observe/events.ts';
import { createLogger, logEvents } from './observe/log.ts';
import { createMetrics } from './observe/metrics.ts';
import { startTracing } from './observe/telemetry.ts';
import { subscribeTracing } from './observe/tracing.ts';
import type { FailoverDeps } from './retry/failover.ts';
import { Balancer } from './select/balancer.ts';
import { Pools } from './send/pools.ts';
import { createAdminServer } from './server/admin.ts';
import { createHandler, type HandlerState } from './server/handler.ts';
import { createDualServer, isLoopback, parseHostPort } from './server/listen.ts';
import { createRouter } from './server/routes.ts';
import { ADAPTERS } from './translate/index.ts';
import type { ProviderAdapter } from './translate/provider.ts';

export interface StartOptions {
  plan: Plan;
  logger?: Logger;
  /** Trace with this provider (tests); by default OTEL_* decides (observe/telemetry.ts). */
  tracerProvider?: TracerProvider;
  env?: NodeJS.ProcessEnv;
  /** false: no active probes, as if every model said `probe.kind: none` (default true). */
  probes?: boolean;
}

export interface Sidecar {
  /** http://host:port of the proxy. */
  url: string;
  adminUrl: string;
  plan: Plan;
  events: Events;
  health: HealthView;
  monitor: HealthMonitor;
  logger: Logger;
  metrics: Registry;
  inFlight(): number;
  /** Stop accepting, let in-flight requests finish within graceMs, then close everything. */
  drain(graceMs?: number): Promise<void>;
  /** Close everything now. */
  close(): Promise<void>;
}

export function adaptersFor(plan: Plan): Record<ProviderKind, ProviderAdapter> {
  const problems: Problem[] = [];
  for (const b of plan.backends) {
    for (const m of allModels(b)) {
      if (!ADAPTERS[m.provider]) problems.push({ file: '(configuration)', document: `Backend/${b.name}`, path: m.name, message: `provider "${m.provider}" is not served yet` });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return ADAPTERS as Record<ProviderKind, ProviderAdapter>;
}

export async function startSidecar(options: StartOptions): Promise<Sidecar> {
  const plan = options.probes === false ? withoutProbes(options.plan) : options.plan;
  const logger = options.logger ?? createLogger(plan.server.logLevel);
  const adapters = adaptersFor(plan);
  const models = plan.backends.flatMap(allModels);
  const events = new Events();
  const pools = new Pools(models);
  const monitor = new HealthMonitor(events, plan.backends, { pools, adapters });
  const health = monitor.view;
  logEvents(events, logger);
  const tracing = await startTracing(options.env ?? process.env, options.tracerProvider);
  if (tracing) subscribeTracing(events, tracing.tracer, tracing.propagator);

  const deps: FailoverDeps = { balancer: new Balancer(health), health: monitor, pools, events, adapters };
  const state: HandlerState = {
    router: createRouter(plan.routes),
    deps,
    maxBodyBytes: plan.server.maxBodyBytes,
    draining: false,
    inFlight: 0,
    onError: (err) => logger.error({ err: err instanceof Error ? { name: err.name, message: err.message, stack: err.stack } : String(err) }, 'request handler failed'),
  };
  const server = createDualServer(createHandler(state));
  let ready = false;
  const metrics = createMetrics(events, { backends: plan.backends, monitor, inFlight: () => state.inFlight });
  const admin = createAdminServer({ ready: () => ready && !state.draining, backends: () => plan.backends, monitor: () => monitor, metrics: () => metrics });

  const listen = parseHostPort(plan.server.listen);
  const adminAt = parseHostPort(plan.server.admin);
  server.net.listen(listen.port, listen.host);
  admin.listen(adminAt.port, adminAt.host);
  await Promise.all([once(server.net, 'listening'), once(admin, 'listening')]);
  ready = true;
  monitor.start();
  const addr = server.net.address() as AddressInfo;
  const adminAddr = admin.address() as AddressInfo;
  const host = (a: AddressInfo) => (a.family === 'IPv6' ? `[${a.address}]` : a.address);
  if (!isLoopback(listen.host)) logger.warn({ listen: plan.server.listen }, 'the proxy port is not on loopback: anyone who reaches it spends the API keys');
  logger.info({ listen: `${host(addr)}:${addr.port}`, admin: `${host(adminAddr)}:${adminAddr.port}`, backends: plan.backends.map((b) => b.name), tracing: Boolean(tracing) }, 'sidecar ready');

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    server.stopAccepting();
    server.destroyAll();
    admin.closeAllConnections();
    admin.close();
    monitor.stop();
    for (const m of models) if (m.auth.kind === 'static' && m.auth.token instanceof FileSecret) m.auth.token.close();
    await pools.close();
    await tracing?.shutdown();
  };

  return {
    url: `http://${host(addr)}:${addr.port}`,
    adminUrl: `http://${host(adminAddr)}:${adminAddr.port}`,
    plan,
    events,
    health,
    monitor,
    logger,
    metrics,
    inFlight: () => state.inFlight,
    async drain(graceMs = plan.server.drainGraceMs) {
      state.draining = true;
      server.stopAccepting();
      const deadline = Date.now() + graceMs;
      while (state.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (state.inFlight > 0) logger.warn({ inFlight: state.inFlight }, 'drain grace period ended with requests still in flight');
      await close();
    },
    close,
  };
}
