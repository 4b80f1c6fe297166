#!/usr/bin/env node
/**
 * An open-loop (constant-rate) load generator, run by the bench as its own process pinned to the
 * load core. Requests are started on a fixed schedule whatever the answers do (unlike wrk, whose
 * connections wait for their answer: closed loop), so a slow proxy is measured as slow rather
 * than as sending fewer requests.
 *
 *   node bench/loadgen.ts '<json options>'     (prints one JSON result line)
 *
 * mode "latency": each request's time from being sent to its last body byte.
 * mode "ttft": streamed requests to the paced upstream (bench/paced.ts); the first content event
 *   carries the upstream's CLOCK_MONOTONIC write time ("t<ns>"), so besides the time to first
 *   token seen by the client we get how long the proxy took to deliver that first chunk.
 */
import { Pool } from 'undici';

export interface LoadOptions {
  mode: 'latency' | 'ttft';
  url: string;
  body: string;
  /** Requests per second. */
  rate: number;
  durationMs: number;
  connections?: number;
  /** Give up on a request after this long (counted as an error). */
  timeoutMs?: number;
  /** Run at the rate this long first, recording nothing (the generator's own JIT and connections). */
  warmupMs?: number;
}

export interface Summary {
  n: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export interface LoadResult {
  mode: string;
  sent: number;
  ok: number;
  errors: number;
  statuses: Record<string, number>;
  firstError?: string;
  achievedRate: number;
  /** Sent -> last byte (latency) or sent -> first content at the client (ttft), ms. */
  latency: Summary;
  /** Like latency, from the moment the schedule said to send (includes the generator's own lateness). */
  scheduled: Summary;
  /** ttft only: upstream wrote the first content -> client received it, ms. */
  firstChunk?: Summary;
  /** ttft only: sent -> first byte of any kind. */
  firstByte?: Summary;
}

export function summarize(samples: number[]): Summary {
  if (samples.length === 0)
    return { n: 0, mean: Number.NaN, p50: Number.NaN, p90: Number.NaN, p99: Number.NaN, p999: Number.NaN, max: Number.NaN };
  const s = Float64Array.from(samples).sort();
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
  let sum = 0;
  for (const v of s) sum += v;
  return { n: s.length, mean: sum / s.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: s[s.length - 1] };
}

const MARK = /"(?:content|text)":"t(\d{6,})/;

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const u = new URL(o.url);
  const pool = new Pool(u.origin, { connections: o.connections ?? 64, pipelining: 1, keepAliveTimeout: 60_000 });
  const path = u.pathname + u.search;
  const headers = { 'content-type': 'application/json' };
  const timeoutMs = o.timeoutMs ?? 10_000;
  const lat: number[] = [];
  const sched: number[] = [];
  const first: number[] = [];
  const firstByte: number[] = [];
  const statuses: Record<string, number> = {};
  let sent = 0;
  let ok = 0;
  let errors = 0;
  let firstError: string | undefined;
  const pending = new Set<Promise<void>>();
  const fail = (why: string) => {
    errors++;
    firstError ??= why;
  };

  let recording = false;
  const one = async (scheduledAt: number) => {
    if (!recording) {
      try {
        const res = await pool.request({ path, method: 'POST', headers, body: o.body, signal: AbortSignal.timeout(timeoutMs) });
        await res.body.dump({ limit: Number.POSITIVE_INFINITY });
      } catch {
        // warm-up: ignored
      }
      return;
    }
    const t0 = performance.now();
    try {
      const res = await pool.request({ path, method: 'POST', headers, body: o.body, signal: AbortSignal.timeout(timeoutMs) });
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      if (o.mode === 'latency') {
        await res.body.arrayBuffer();
        const t1 = performance.now();
        if (res.statusCode !== 200) return fail(`status ${res.statusCode}`);
        lat.push(t1 - t0);
        sched.push(t1 - scheduledAt);
        ok++;
        return;
      }
      let text = '';
      let tFirstByte: number | undefined;
      let found = false;
      for await (const chunk of res.body) {
        const now = performance.now();
        const nowNs = process.hrtime.bigint();
        tFirstByte ??= now;
        if (!found) {
          text += chunk.toString();
          const m = MARK.exec(text);
          if (m) {
            found = true;
            lat.push(now - t0);
            sched.push(now - scheduledAt);
            first.push(Number(nowNs - BigInt(m[1])) / 1e6);
            text = text.slice(-64);
          }
        } else {
          text = (text + chunk.toString()).slice(-64);
        }
      }
      if (res.statusCode !== 200) return fail(`status ${res.statusCode}`);
      if (!found) return fail('no content event with a timestamp');
      if (!text.includes('[DONE]') && !text.includes('message_stop')) return fail('stream ended without its final event');
      firstByte.push((tFirstByte ?? performance.now()) - t0);
      ok++;
    } catch (err) {
      fail((err as Error).message);
    }
  };

  const interval = 1000 / o.rate;
  const warmup = Math.floor(((o.warmupMs ?? 500) / 1000) * o.rate);
  let start = performance.now();
  let total = warmup;
  const schedule = () =>
    new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        while (sent < total && start + sent * interval <= now) {
          const p = one(start + sent * interval);
          sent++;
          pending.add(p);
          void p.finally(() => pending.delete(p));
        }
        if (sent >= total) return resolve();
        setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
      };
      tick();
    });
  if (warmup > 0) {
    await schedule();
    await Promise.all(pending);
  }
  recording = true;
  sent = 0;
  total = Math.floor((o.durationMs / 1000) * o.rate);
  start = performance.now();
  await schedule();
  const elapsed = performance.now() - start;
  await Promise.all(pending);
  await pool.close();
  const result: LoadResult = {
    mode: o.mode,
    sent,
    ok,
    errors,
    statuses,
    firstError,
    achievedRate: sent / (elapsed / 1000),
    latency: summarize(lat),
    scheduled: summarize(sched),
  };
  if (o.mode === 'ttft') {
    result.firstChunk = summarize(first);
    result.firstByte = summarize(firstByte);
  }
  return result;
}

if (import.meta.main) {
  const options = JSON.parse(process.argv[2]) as LoadOptions;
  const result = await runLoad(options);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
