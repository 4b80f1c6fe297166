/**
 * `llm-failover-sidecar status`: every model's health from a running sidecar's admin /status,
 * as a table (coloured on a terminal), live with --watch, or as JSON for scripts.
 */
import { styleText } from 'node:util';

export interface StatusModel {
  name: string;
  provider: string;
  model: string | null;
  state: string;
  since: string;
  cause: string;
  until: string | null;
  /** The flags holding the model out, in precedence order (absent from older sidecars). */
  flags?: { name: string }[];
  successes: number;
  failures: number;
  inFlight: number;
  latency: { firstTokenMs: number | null; totalMs: number | null };
  probe: { lastAt: string | null; ok: boolean | null };
  breaker: { state: string } | null;
}

export interface StatusDoc {
  ready: boolean;
  backends: { name: string; namespace: string; groups: { priority: number; models: StatusModel[] }[] }[];
}

const STATE_COLOUR: Record<string, Parameters<typeof styleText>[0]> = {
  healthy: 'green',
  degraded: 'yellow',
  cooling: 'cyan',
  open: 'magenta',
  unhealthy: 'red',
};

export function ago(iso: string, now: number): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** The table, `width` characters at most per line (the cause column is cut to fit). */
export function renderStatus(doc: StatusDoc, options: { now: number; colour: boolean; width?: number }): string {
  const header = ['GROUP', 'MODEL', 'PROVIDER', 'STATE', 'FOR', 'OK', 'FAIL', 'ACTIVE', 'TTFT', 'CAUSE'];
  const out: string[] = [];
  for (const b of doc.backends) {
    out.push(`Backend ${b.namespace}/${b.name}${doc.ready ? '' : '  (sidecar not ready)'}`);
    const rows: string[][] = [];
    for (const g of b.groups) {
      for (const m of g.models) {
        const ttft = m.latency.firstTokenMs === null ? '-' : `${m.latency.firstTokenMs}ms`;
        // more than one flag set: name them all before the cause of the first (e.g. "breaker+cooldown: breaker opened: ...")
        const flags = m.flags && m.flags.length > 1 ? `${m.flags.map((f) => f.name).join('+')}: ` : '';
        rows.push([
          String(g.priority),
          m.name,
          `${m.provider}${m.model ? `/${m.model}` : ''}`,
          m.state,
          ago(m.since, options.now),
          String(m.successes),
          String(m.failures),
          String(m.inFlight),
          ttft,
          `${flags}${m.cause}`,
        ]);
      }
    }
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    // the last column (cause) takes what is left of the width
    const room = options.width
      ? Math.max(10, options.width - widths.slice(0, -1).reduce((a, w) => a + w + 2, 0))
      : Number.POSITIVE_INFINITY;
    const cut = (c: string) => (c.length > room ? `${c.slice(0, room - 1)}…` : c);
    const line = (cells: string[], colourState: boolean) =>
      cells
        .map((c, i) => {
          if (i === cells.length - 1) return cut(c);
          const padded = c.padEnd(widths[i]);
          return colourState && i === 3 && options.colour
            ? styleText(STATE_COLOUR[c] ?? 'white', padded, { validateStream: false })
            : padded;
        })
        .join('  ');
    out.push(line(header, false));
    for (const r of rows) out.push(line(r, true));
  }
  return `${out.join('\n')}\n`;
}

export async function fetchStatus(adminUrl: string): Promise<StatusDoc> {
  const res = await fetch(new URL('/status', adminUrl), { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${adminUrl}/status answered ${res.status}`);
  return (await res.json()) as StatusDoc;
}
