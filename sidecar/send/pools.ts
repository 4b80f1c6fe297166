/**
 * Upstream connections: one undici Pool per provider origin, created at config load and
 * reused by every request (keep-alive; HTTP/2 negotiated by ALPN where the provider speaks it).
 *
 * Attempts ask for `accept-encoding: identity`, but a server or proxy may compress anyway: every
 * pool is composed with undici's decompress interceptor, so a gzip, deflate or br answer
 * (streamed or not, error bodies too, the models probe included) arrives decoded, incrementally,
 * as the bytes come. Size caps apply to the decoded bytes (attempt.ts reads them).
 */
import { type Dispatcher, interceptors, Pool } from 'undici';
import type { ModelTarget } from '../config/plan.ts';

export interface PoolOptions {
  connectionsPerOrigin: number;
}

export class Pools {
  readonly #pools = new Map<string, Pool>();
  readonly #dispatchers = new Map<string, Dispatcher>();

  constructor(models: ModelTarget[], options: PoolOptions = { connectionsPerOrigin: 256 }) {
    for (const m of models) {
      if (this.#pools.has(m.origin)) continue;
      const https = m.origin.startsWith('https:');
      const pool = new Pool(m.origin, {
        connections: options.connectionsPerOrigin,
        allowH2: https,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 600_000,
        // Timeouts are the request path's (per attempt, per phase); undici's own are a backstop.
        headersTimeout: 0,
        bodyTimeout: 0,
        connect: { timeout: m.timeouts.connectMs },
      });
      this.#pools.set(m.origin, pool);
      this.#dispatchers.set(m.origin, pool.compose(interceptors.decompress({ skipErrorResponses: false })));
    }
  }

  for(model: ModelTarget): Dispatcher {
    const dispatcher = this.#dispatchers.get(model.origin);
    if (!dispatcher) throw new Error(`no pool for ${model.origin}`);
    return dispatcher;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.destroy()));
  }
}
