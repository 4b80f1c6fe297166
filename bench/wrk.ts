/**
 * Saturation with wrk (Debian's wrk 4.1, C, one thread): a fixed number of keep-alive
 * connections, each sending its next request as soon as the previous answer ended (closed
 * loop), which is what "requests per second at concurrency 8" means.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOAD_CORE } from './proc.ts';

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  non2xx: number;
  socketErrors: number;
  /** wrk's own latency percentiles under saturation (ms): informative only. */
  p50: number;
  p99: number;
  raw: string;
}

const scriptDir = mkdtempSync(join(tmpdir(), 'llm-failover-bench-wrk-'));
process.once('exit', () => rmSync(scriptDir, { recursive: true, force: true }));
const scripts = new Map<string, string>();

function scriptFor(body: string): string {
  let path = scripts.get(body);
  if (path) return path;
  if (body.includes(']]')) throw new Error('request body must not contain "]]" (Lua long string)');
  path = join(scriptDir, `post-${scripts.size}.lua`);
  writeFileSync(path, `wrk.method = "POST"\nwrk.body = [[${body}]]\nwrk.headers["Content-Type"] = "application/json"\n`);
  scripts.set(body, path);
  return path;
}

function ms(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n;
}

export function parseWrk(out: string): WrkResult {
  const req = /(\d+) requests in ([\d.]+)(ms|s|m)/.exec(out);
  const requests = req ? Number(req[1]) : 0;
  const seconds = req ? ms(req[2], req[3]) / 1000 : 0;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = se ? se.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  const pct = (p: string) => {
    const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s|m)`).exec(out);
    return m ? ms(m[1], m[2]) : Number.NaN;
  };
  return { requests, seconds, rps, non2xx, socketErrors, p50: pct('50'), p99: pct('99'), raw: out };
}

/** wrk takes whole seconds. */
export async function runWrk(url: string, body: string, secondsWanted: number, connections = 8): Promise<WrkResult> {
  const seconds = Math.max(1, Math.round(secondsWanted));
  const args = [
    '-c',
    String(LOAD_CORE),
    'wrk',
    '-t1',
    `-c${connections}`,
    `-d${seconds}s`,
    '--timeout',
    '5s',
    '--latency',
    '-s',
    scriptFor(body),
    url,
  ];
  const child = spawn('taskset', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), (seconds + 15) * 1000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(killer);
  if (code !== 0) throw new Error(`wrk exited with ${code}:\n${out}`);
  return parseWrk(out);
}
