/**
 * Upstream connections: one undici Pool per provider origin, created at config load and
 * reused by every request (keep-alive; HTTP/2 negotiated by ALPN where the provider speaks it).
 */
import { Pool } from 'undici';
import type { ModelTarget } from '../config/plan.ts';

export interface PoolOptions {
  connectionsPerOrigin: number;
}

export class Pools {
  readonly #pools = new Map<string, Pool>();

  constructor(models: ModelTarget[], options: PoolOptions = { connectionsPerOrigin: 256 }) {
    for (const m of models) {
      if (this.#pools.has(m.origin)) continue;
      const https = m.origin.startsWith('https:');
      this.#pools.set(
        m.origin,
        new Pool(m.origin, {
          connections: options.connectionsPerOrigin,
          allowH2: https,
          pipelining: 1,
          keepAliveTimeout: 30_000,
          keepAliveMaxTimeout: 600_000,
          // Timeouts are the request path's (per attempt, per phase); undici's own are a backstop.
          headersTimeout: 0,
          bodyTimeout: 0,
          connect: { timeout: m.timeouts.connectMs },
        }),
      );
    }
  }

  for(model: ModelTarget): Pool {
    const pool = this.#pools.get(model.origin);
    if (!pool) throw new Error(`no pool for ${model.origin}`);
    return pool;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.destroy()));
  }
}
