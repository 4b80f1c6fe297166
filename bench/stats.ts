/** Small numeric helpers and the table printer of the bench. */

export function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return '-';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** "value (ratio× floor)". */
export function withRatio(value: number, floor: number, digits = 0, unit = ''): string {
  const ratio = Number.isFinite(value) && Number.isFinite(floor) && floor !== 0 ? `${(value / floor).toFixed(2)}×` : '-';
  return `${fmt(value, digits)}${unit} (${ratio})`;
}

/** "value (+delta vs floor)" for latencies. */
export function withDelta(value: number, floor: number, digits = 2): string {
  if (!Number.isFinite(value)) return '-';
  const d = value - floor;
  return `${fmt(value, digits)} (${d >= 0 ? '+' : ''}${fmt(d, digits)})`;
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
