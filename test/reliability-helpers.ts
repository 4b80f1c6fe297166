/**
 * Scaffolding for the reliability suites (fault matrix, hostile clients, bounds, fuzz, process
 * faults, secrets): a sidecar built from the YAML users write with any SidecarConfig, the
 * sidecar as a child process (RSS and open descriptors read from /proc), raw sockets, and a
 * reader for Prometheus text.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { TracerProvider } from '@opentelemetry/api';
import type tap from 'tap';
import { type Dispatcher, request as undiciRequest } from 'undici';
import { backendYaml, type Harness, type ModelSpec, policyYaml, startHarness } from './helpers.ts';

export const CLI = join(import.meta.dirname, '../sidecar/cli.ts');

/** A tap (sub)test, as the callbacks of t.test receive it. */
export type TapTest = Parameters<Parameters<typeof tap.test>[0]>[0];

/**
 * The options of a test that asserts the correct behaviour of a known product bug: tap's todo
 * (tap 21 does not run a todo test's body), or, with RELIABILITY_RUN_BUGS=1, a normal test that
 * runs and fails until the bug is fixed.
 */
export function bug(summary: string): { todo?: string } {
  return process.env.RELIABILITY_RUN_BUGS ? {} : { todo: `bug: ${summary}` };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits for `p`, at most `ms` (the timer is cleared either way, so it never holds the process open). */
export async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/** Polls `check` every 10 ms until it holds or `ms` passed; returns whether it held. */
export async function eventually(check: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (check()) return true;
    if (Date.now() > end) return false;
    await sleep(10);
  }
}

export interface RigOptions {
  /** Lines under the SidecarConfig's spec (indented two spaces), beside listen/admin on loopback. */
  server?: string;
  /** A FailoverPolicy's spec lines for the Backend (see helpers.policyYaml). */
  policy?: string;
  /** Rewrites the Backend/HTTPRoute YAML before loading (re-point a host, change auth); `ports` are the simulators'. */
  mapYaml?: (yaml: string, ports: Record<string, number>) => string;
  probes?: boolean;
  /** API key the simulators demand (default TEST_KEY); null: none. */
  apiKey?: string | null;
  tracerProvider?: TracerProvider;
}

/** helpers.startHarness with the SidecarConfig and the YAML under the test's control. */
export function startRig(models: ModelSpec[], options: RigOptions = {}): Promise<Harness> {
  return startHarness(models, '', {
    probes: options.probes,
    tracerProvider: options.tracerProvider,
    apiKey: options.apiKey,
    yaml: (ports) => {
      const yaml = options.mapYaml ? options.mapYaml(backendYaml(models, ports), ports) : backendYaml(models, ports);
      return `${yaml}${sidecarConfigYaml(options.server)}${options.policy ? policyDoc(options.policy) : ''}`;
    },
  });
}

export function sidecarConfigYaml(extra = '', listen = '127.0.0.1:0'): string {
  return `---
apiVersion: llm-failover.dev/v1alpha1
kind: SidecarConfig
spec:
  listen: ${listen}
  admin: 127.0.0.1:0
${extra}`;
}

/** A FailoverPolicy for the Backend (helpers.policyYaml under the name these suites use). */
export const policyDoc = policyYaml;

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

// ---- raw sockets ----

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

// ---- the sidecar as a child process ----

export interface ChildSidecar {
  child: ChildProcess;
  pid: number;
  /** host:port of the proxy and of the admin address, from the "sidecar ready" line. */
  listen: string;
  admin: string;
  url: string;
  adminUrl: string;
  out(): string;
  err(): string;
  /** Resident set size in bytes, from /proc/<pid>/status. */
  rss(): number;
  /** Open file descriptors, from /proc/<pid>/fd. */
  fds(): number;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

/** The V8 flags the sidecar's image runs with (deploy/Dockerfile). */
export const IMAGE_NODE_FLAGS = ['--max-old-space-size=64', '--max-semi-space-size=8'];

export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, nodeFlags: string[] = []): { child: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [...nodeFlags, CLI, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exited };
}

/** Starts `node sidecar/cli.ts --config <file> ...` and waits for its "sidecar ready" line. */
export async function startChildSidecar(config: string, extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}, nodeFlags: string[] = []): Promise<ChildSidecar> {
  const hasListen = extraArgs.includes('--listen');
  const args = ['--config', config, ...(hasListen ? [] : ['--listen', '127.0.0.1:0']), '--admin', '127.0.0.1:0', ...extraArgs];
  const p = spawnCli(args, env, nodeFlags);
  let exitCode: number | null | undefined;
  void p.exited.then((c) => (exitCode = c));
  const ready = await eventually(() => /"msg":"sidecar ready"/.test(p.out()) || exitCode !== undefined, 15_000);
  const line = p
    .out()
    .split('\n')
    .find((l) => l.includes('"msg":"sidecar ready"'));
  if (!ready || !line) {
    p.child.kill('SIGKILL');
    throw new Error(`the child sidecar did not start (exit ${exitCode}): ${p.err().slice(0, 2000)} ${p.out().slice(0, 2000)}`);
  }
  const { listen, admin } = JSON.parse(line) as { listen: string; admin: string };
  const pid = p.child.pid!;
  return {
    child: p.child,
    pid,
    listen,
    admin,
    url: `http://${listen}`,
    adminUrl: `http://${admin}`,
    out: p.out,
    err: p.err,
    rss: () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024,
    fds: () => readdirSync(`/proc/${pid}/fd`).length,
    exited: p.exited,
    kill: (signal = 'SIGKILL') => {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill(signal);
    },
  };
}

// ---- load ----

/**
 * What one request came to, from the client's side:
 * complete (200 with a whole JSON answer / a stream ending in [DONE]), error-event (a stream that
 * ended with an OpenAI error event and no [DONE]), http-error (an error status with the OpenAI
 * error body), no-response (refused or reset before any response), or truncated (a 200 whose body
 * broke off or is not whole, or an error status without the error body: never acceptable).
 */
export type Outcome = 'complete' | 'error-event' | 'http-error' | 'no-response' | 'truncated';

export async function chatOnce(url: string, stream: boolean, dispatcher: Dispatcher, headers: Record<string, string> = {}, content = 'What is kubernetes?'): Promise<{ outcome: Outcome; status?: number; detail?: string }> {
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
      if (typeof json.error?.message === 'string') return { outcome: 'http-error', status: res.statusCode, detail: json.error.message.slice(0, 200) };
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
  if (!events.includes('[DONE]') && /"error"/.test(events.at(-1) ?? '')) return { outcome: 'error-event', status: 200, detail: events.at(-1)?.slice(0, 200) };
  return { outcome: 'truncated', status: 200, detail: text.slice(-200) };
}
