/**
 * How long a provider asked us to back off, from any of the headers providers use:
 * `retry-after-ms` (milliseconds), `retry-after` (seconds or an HTTP date),
 * OpenAI's `x-ratelimit-reset-requests` / `-tokens` ("1s", "6m0s", "20ms") and
 * Anthropic's `anthropic-ratelimit-*-reset` (RFC 3339 time). The longest wins, capped.
 */
type Headers = Record<string, string | string[] | undefined>;

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

const GO_DURATION = /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$/;

export function parseResetDuration(text: string): number | undefined {
  const m = GO_DURATION.exec(text.trim());
  if (!m || text.trim() === '') return undefined;
  const [, h, min, s, ms] = m;
  return Math.round((Number(h ?? 0) * 3600 + Number(min ?? 0) * 60 + Number(s ?? 0)) * 1000 + Number(ms ?? 0));
}

export function retryAfterMs(headers: Headers, capMs: number, now: number = Date.now()): number | undefined {
  const candidates: number[] = [];
  const ms = first(headers['retry-after-ms']);
  if (ms !== undefined && /^\d+(\.\d+)?$/.test(ms.trim())) candidates.push(Number(ms));
  const ra = first(headers['retry-after']);
  if (ra !== undefined) {
    if (/^\d+(\.\d+)?$/.test(ra.trim())) candidates.push(Number(ra) * 1000);
    else {
      const at = Date.parse(ra);
      if (!Number.isNaN(at)) candidates.push(Math.max(0, at - now));
    }
  }
  for (const name of ['x-ratelimit-reset-requests', 'x-ratelimit-reset-tokens']) {
    const v = first(headers[name]);
    const d = v === undefined ? undefined : parseResetDuration(v);
    if (d !== undefined) candidates.push(d);
  }
  for (const name of [
    'anthropic-ratelimit-requests-reset',
    'anthropic-ratelimit-tokens-reset',
    'anthropic-ratelimit-input-tokens-reset',
    'anthropic-ratelimit-output-tokens-reset',
  ]) {
    const v = first(headers[name]);
    const at = v === undefined ? Number.NaN : Date.parse(v);
    if (!Number.isNaN(at)) candidates.push(Math.max(0, at - now));
  }
  if (candidates.length === 0) return undefined;
  return Math.min(capMs, Math.max(...candidates));
}
