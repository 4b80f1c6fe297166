/**
 * A model's health states. Selection reads them; probes, breakers and cooldowns write them.
 * - healthy: serve it.
 * - degraded: answering, but slower than its threshold; used only when no healthy peer is left in its group.
 * - unhealthy: failing (probes, or a failure that says the model cannot serve: refused, 401/403/404, ...).
 * - open: circuit breaker tripped by real traffic.
 * - cooling: told to back off (429 / Retry-After), or failed a moment ago.
 */
export type HealthState = 'healthy' | 'degraded' | 'unhealthy' | 'open' | 'cooling';

export function isUsable(state: HealthState): boolean {
  return state === 'healthy' || state === 'degraded';
}
