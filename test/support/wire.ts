/**
 * The wire, read as a client reads it: a JSON POST, Server-Sent Events, Prometheus text, raw
 * HTTP/1.1 over a socket, and one chat request's outcome as the app would judge it.
 */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { type Dispatcher, request as undiciRequest } from 'undici';
import { DEFAULT_HEALTH } from '../../sidecar/config/plan.ts';
import { eventually, within } from './wait.ts';

/** POST a JSON body with plain fetch; returns status, headers and parsed body. */
export async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return {
    status: res.status,
    headers: res.headers,
    text,
    json: json as { error?: { message: string; type: string; code: string | null; attempts?: unknown[] } } & Record<string, unknown>,
  };
}

/** The value of one series in Prometheus text: the name and every given label must match. */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let total: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^[^{ ]+(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const have = Object.fromEntries([...(m[1] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total = (total ?? 0) + Number(m[2]);
  }
  return total;
}

/** The `data:` payloads of an SSE text, in order. */
export function sseData(text: string): string[] {
  return text
    .split(/\n\n/)
    .map((block) =>
      block
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n'),
    )
    .filter((d) => d !== '');
}

/** The text content of an OpenAI SSE stream (concatenated deltas). */
export function streamedContent(text: string): string {
  let out = '';
  for (const d of sseData(text)) {
    if (d === '[DONE]') continue;
    try {
      const j = JSON.parse(d) as { choices?: { delta?: { content?: string | null } }[] };
      out += j.choices?.[0]?.delta?.content ?? '';
    } catch {
      // not a chunk
    }
  }
  return out;
}

export interface RawConnection {
  socket: Socket;
  /** Everything received so far. */
  received(): string;
  /** Resolves when the socket closed (either side). */
  closed: Promise<void>;
  isClosed(): boolean;
  /** Resolves once the received text matches, or rejects after `ms`. */
  waitFor(re: RegExp, ms?: number): Promise<string>;
}

export async function rawConnect(port: number, host = '127.0.0.1'): Promise<RawConnection> {
  const socket = connect(port, host);
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  let data = '';
  let closed = false;
  socket.on('data', (d) => (data += d.toString('latin1')));
  const closedP = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closed = true;
      resolve();
    }),
  );
  return {
    socket,
    received: () => data,
    closed: closedP,
    isClosed: () => closed,
    async waitFor(re, ms = 5000) {
      const ok = await eventually(() => re.test(data) || closed, ms);
      if (!ok || !re.test(data)) throw new Error(`no ${re} within ${ms} ms (got ${JSON.stringify(data.slice(0, 300))}, closed=${closed})`);
      return data;
    },
  };
}

/** Sends one raw request on a fresh connection and reads until the server closes (Connection: close). */
export async function rawExchange(port: number, request: string | Buffer, ms = 5000): Promise<string> {
  const c = await rawConnect(port);
  c.socket.write(request);
  await within(c.closed, ms);
  c.socket.destroy();
  return c.received();
}

/** Splits a raw HTTP/1.1 response into status, headers and body (chunked bodies decoded). */
export function parseRawResponse(raw: string): { status: number; headers: Record<string, string>; body: string } {
  const end = raw.indexOf('\r\n\r\n');
  const head = end === -1 ? raw : raw.slice(0, end);
  let body = end === -1 ? '' : raw.slice(end + 4);
  const [statusLine, ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  if (headers['transfer-encoding'] === 'chunked') {
    let out = '';
    let rest = body;
    for (;;) {
      const nl = rest.indexOf('\r\n');
      if (nl === -1) break;
      const size = Number.parseInt(rest.slice(0, nl), 16);
      if (!size) break;
      out += rest.slice(nl + 2, nl + 2 + size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    body = out;
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body };
}

/**
 * What one request came to, from the client's side:
 * complete (200 with a whole JSON answer / a stream ending in [DONE]), error-event (a stream that
 * ended with an OpenAI error event and no [DONE]), http-error (an error status with the OpenAI
 * error body), no-response (refused or reset before any response), or truncated (a 200 whose body
 * broke off or is not whole, or an error status without the error body: never acceptable).
 */
export type Outcome = 'complete' | 'error-event' | 'http-error' | 'no-response' | 'truncated';

export async function chatOnce(
  url: string,
  stream: boolean,
  dispatcher: Dispatcher,
  headers: Record<string, string> = {},
  content = 'What is kubernetes?',
): Promise<{ outcome: Outcome; status?: number; detail?: string }> {
  let res: Dispatcher.ResponseData;
  try {
    res = await undiciRequest(`${url}/model`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ messages: [{ role: 'user', content }], stream }),
      dispatcher,
      signal: AbortSignal.timeout(20_000),
    });
  } catch (err) {
    return { outcome: 'no-response', detail: (err as Error).message };
  }
  let text: string;
  try {
    text = await res.body.text();
  } catch (err) {
    return { outcome: 'truncated', status: res.statusCode, detail: `body broke off: ${(err as Error).message}` };
  }
  if (res.statusCode !== 200) {
    try {
      const json = JSON.parse(text) as { error?: { message?: unknown } };
      if (typeof json.error?.message === 'string')
        return { outcome: 'http-error', status: res.statusCode, detail: json.error.message.slice(0, 200) };
    } catch {
      // fall through
    }
    return { outcome: 'truncated', status: res.statusCode, detail: text.slice(0, 200) };
  }
  if (!stream) {
    try {
      const json = JSON.parse(text) as { choices?: { message?: { content?: string } }[] };
      if (json.choices?.[0]?.message?.content) return { outcome: 'complete', status: 200 };
    } catch {
      // fall through
    }
    return { outcome: 'truncated', status: 200, detail: text.slice(-200) };
  }
  const events = sseData(text);
  if (events.at(-1) === '[DONE]' && streamedContent(text).length > 0) return { outcome: 'complete', status: 200 };
  if (!events.includes('[DONE]') && /"error"/.test(events.at(-1) ?? ''))
    return { outcome: 'error-event', status: 200, detail: events.at(-1)?.slice(0, 200) };
  return { outcome: 'truncated', status: 200, detail: text.slice(-200) };
}

/** The prompt every chat probe sends by default: requests that carry it are the sidecar's probes, not an app's. */
export const PROBE_PROMPT = DEFAULT_HEALTH.probe.prompt;

/** What a simulated provider received from apps, its probes left out (with probes on, models near traffic get chat probes). */
export function userRequests<R extends { body?: { messages?: { content?: unknown }[] } }>(requests: readonly R[]): R[] {
  return requests.filter((r) => r.body?.messages?.[0]?.content !== PROBE_PROMPT);
}
