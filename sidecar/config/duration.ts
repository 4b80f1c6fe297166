/**
 * Gateway API duration strings ("500ms", "30s", "5m", "1h30m") to milliseconds.
 * The same grammar Gateway API uses for HTTPRoute timeouts, so the YAML reads alike.
 */
const PART = /(\d{1,5})(h|ms|m|s)/gy;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

export function parseDuration(text: string): number | undefined {
  if (!/^(\d{1,5}(h|ms|m|s)){1,4}$/.test(text)) return undefined;
  let total = 0;
  PART.lastIndex = 0;
  for (let match = PART.exec(text); match; match = PART.exec(text)) {
    total += Number(match[1]) * UNIT_MS[match[2]];
  }
  return total;
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
