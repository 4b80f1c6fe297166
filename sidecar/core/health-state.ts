/**
 * A model's health states. Selection reads them; nobody writes them: each is derived from the
 * model's flags (one per signal, each set and cleared by its own owner) by one precedence.
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

/**
 * A model's health flags, one per signal, each owned by one writer (docs/health.md):
 * - breaker: the opossum breaker is open (health/breaker.ts) -> `open`;
 * - passive: real traffic met a hard failure: unreachable, credentials, credit, a model gone
 *   (health/passive.ts) -> `unhealthy`;
 * - probe: the probes' verdict is down (health/active.ts) -> `unhealthy`;
 * - cooldown: a wait, stated by the provider (Retry-After and kin) or assumed -> `cooling`;
 * - slow: time to first token over slowThreshold (health/latency.ts) -> `degraded`.
 * Listed in precedence order: the first flag set gives the state.
 */
export type HealthFlagName = 'breaker' | 'passive' | 'probe' | 'cooldown' | 'slow';

/** The precedence, highest first: open > unhealthy > cooling > degraded > healthy. */
export const FLAG_PRECEDENCE: readonly HealthFlagName[] = ['breaker', 'passive', 'probe', 'cooldown', 'slow'];

/** The state each flag gives a model when it is the highest one set. */
export const FLAG_STATE: Readonly<Record<HealthFlagName, HealthState>> = {
  breaker: 'open',
  passive: 'unhealthy',
  probe: 'unhealthy',
  cooldown: 'cooling',
  slow: 'degraded',
};

/** Flags that take a model out of selection (slow only demotes it). */
export function holdsOut(flag: HealthFlagName): boolean {
  return flag !== 'slow';
}

/**
 * The one place a model's state is decided: the highest flag set by FLAG_PRECEDENCE, or
 * healthy when none is. Returns that flag too (its cause and until are the model's).
 */
export function deriveState(isSet: (flag: HealthFlagName) => boolean): { state: HealthState; flag?: HealthFlagName } {
  for (const flag of FLAG_PRECEDENCE) if (isSet(flag)) return { state: FLAG_STATE[flag], flag };
  return { state: 'healthy' };
}
