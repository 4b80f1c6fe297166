/**
 * The admin address: /healthz (the process runs), /readyz (listening with a valid config and
 * not draining; never "every provider healthy": one provider's outage must not unready a pod),
 * /status (every model's health, readable with curl | jq). Nothing here can spend a key.
 */
import { createServer, type Server } from 'node:http';
import type { BackendPlan } from '../config/plan.ts';
import type { HealthView } from '../health/view.ts';

export interface AdminState {
  ready(): boolean;
  backends(): BackendPlan[];
  health(): HealthView;
}

export function createAdminServer(state: AdminState): Server {
  return createServer((req, res) => {
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
    } else if (path === '/status') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(statusOf(state), null, 2)}\n`);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz, /readyz, /status\n');
    }
  });
}

export function statusOf(state: AdminState) {
  const health = state.health();
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
            since: new Date(h.since).toISOString(),
            cause: h.cause,
            until: h.until ? new Date(h.until).toISOString() : null,
            lastStatus: h.lastStatus ?? null,
            lastError: h.lastError ?? null,
            lastSuccessAt: h.lastSuccessAt ? new Date(h.lastSuccessAt).toISOString() : null,
            lastFailureAt: h.lastFailureAt ? new Date(h.lastFailureAt).toISOString() : null,
            successes: h.successes,
            failures: h.failures,
          };
        }),
      })),
    })),
  };
}
