/**
 * The admin address: /healthz (the process runs), /readyz (listening with a valid config and
 * not draining; never "every provider healthy": one provider's outage must not unready a pod),
 * /status (every model's health, readable with curl | jq). Nothing here can spend a key.
 * Bounded like the proxy port: the same header, request and keep-alive timeouts, a silent
 * connection closed after the header timeout, and at most ADMIN_MAX_CONNECTIONS connections.
 */
import type { Server } from 'node:http';
import type { BackendPlan } from '../config/plan.ts';
import type { Registry } from 'prom-client';
import { FLAG_STATE } from '../core/health-state.ts';
import { redact } from '../core/secret.ts';
import type { HealthMonitor } from '../health/monitor.ts';
import type { ProbeScheduler } from '../../probes/scheduler.ts';
import { DEFAULT_LIMITS, httpServerOptions, type ListenLimits } from './listen.ts';

// the CommonJS object, not the ESM namespace (see listen.ts)
const { createServer } = process.getBuiltinModule('node:http');

export interface AdminState {
  ready(): boolean;
  backends(): BackendPlan[];
  monitor(): HealthMonitor;
  probes(): ProbeScheduler;
  metrics(): Registry;
}

/** Kubelet probes and a scraper need a handful; never more than the proxy's own cap. */
export const ADMIN_MAX_CONNECTIONS = 256;

const iso = (t: number | undefined) => (t === undefined ? null : new Date(t).toISOString());
const rounded = (ms: number | undefined) => (ms === undefined ? null : Math.round(ms));

export function createAdminServer(state: AdminState, limits: ListenLimits = DEFAULT_LIMITS): Server {
  const server = createServer(httpServerOptions(limits), (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ok = state.ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ready\n' : 'not ready\n');
    } else if (path === '/metrics') {
      const registry = state.metrics();
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n'),
      );
    } else if (path === '/status') {
      // provider error messages and probe errors are quoted here: scrubbed like everything that leaves
      res.writeHead(200, { 'content-type': 'application/json' }).end(`${redact(JSON.stringify(statusOf(state), null, 2))}\n`);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz, /readyz, /status, /metrics\n');
    }
  });
  server.maxConnections = Math.min(limits.maxConnections, ADMIN_MAX_CONNECTIONS);
  // a connection that never says anything is closed like a slow header (node's timeouts start with a request)
  server.on('connection', (socket) => {
    const timer = setTimeout(() => socket.destroy(), limits.headersTimeoutMs);
    timer.unref();
    socket.once('data', () => clearTimeout(timer));
    socket.once('close', () => clearTimeout(timer));
  });
  return server;
}

export function statusOf(state: AdminState) {
  const monitor = state.monitor();
  const probes = state.probes();
  const health = monitor.view;
  return {
    ready: state.ready(),
    backends: state.backends().map((b) => ({
      name: b.name,
      namespace: b.namespace,
      groups: b.groups.map((group, i) => ({
        priority: i + 1,
        models: group.map((m) => {
          const h = health.get(m);
          return {
            name: m.name,
            provider: m.provider,
            model: m.model ?? null,
            endpoint: `${m.origin}${m.path}`,
            state: h.state,
            since: iso(h.since),
            cause: h.cause,
            until: iso(h.until),
            // every flag set on the model, in precedence order (the first gives the state): which signal holds it out, why, until when
            flags: health.flagsOf(m).map((name) => {
              const f = h.flags[name]!;
              return {
                name,
                state: FLAG_STATE[name],
                cause: f.cause,
                since: iso(f.since),
                until: iso(f.until),
                ...(f.stated === undefined ? {} : { stated: f.stated }),
              };
            }),
            lastStatus: h.lastStatus ?? null,
            lastError: h.lastError ?? null,
            lastSuccessAt: iso(h.lastSuccessAt),
            lastFailureAt: iso(h.lastFailureAt),
            successes: h.successes,
            failures: h.failures,
            inFlight: monitor.inFlight.count(m),
            suspected: health.isSuspected(m),
            latency: { firstTokenMs: rounded(h.ttftMs), totalMs: rounded(h.totalMs) },
            probe: {
              kind: m.health.probe.kind,
              // what the model is probed with, and why when that differs from kind (a server with no model list)
              using: probes.mode(m).using,
              note: probes.mode(m).note,
              lastAt: iso(h.probe.at),
              lastKind: h.probe.kind ?? null,
              ok: h.probe.ok ?? null,
              error: h.probe.error ?? null,
              durationMs: rounded(h.probe.durationMs),
              okStreak: h.probe.okStreak,
              failStreak: h.probe.failStreak,
            },
            breaker: monitor.breakers.stats(m) ?? null,
          };
        }),
      })),
    })),
  };
}
