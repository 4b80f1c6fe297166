#!/usr/bin/env node
/**
 * The sidecar injector: a mutating admission webhook over HTTPS.
 *
 *   POST /mutate/namespace  pods of namespaces labelled llm-failover.dev/inject=enabled
 *   POST /mutate/pod        pods labelled llm-failover.dev/inject=true
 *   GET  /healthz           the process runs (the Deployment's probes)
 *   GET  /metrics           review counters, Prometheus text format
 *
 * The certificate and key files are re-read every --cert-reload seconds and swapped in for new
 * connections when they change (cert-manager renews them in place; a failed swap keeps the old pair).
 *
 * Exit codes: 0 clean shutdown, 1 runtime failure, 2 invalid usage.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createSecureContext } from 'node:tls';
import { parseArgs } from 'node:util';
import { DEFAULT_EXCLUDED_NAMESPACES, type InjectorOptions, type PullPolicy, type Route, review } from './inject.ts';

export const MAX_REVIEW_BYTES = 4 * 1024 * 1024;

export interface StartOptions {
  certFile: string;
  keyFile: string;
  /** host:port (default 0.0.0.0:8443). */
  listen?: string;
  injector: InjectorOptions;
  /** How often the certificate files are checked for a new pair, ms (default 30 s; 0: never). */
  certReloadMs?: number;
  /** One JSON object per line (default: stdout). */
  log?: (entry: Record<string, unknown>) => void;
}

export interface Injector {
  url: string;
  server: Server;
  /** Re-reads the certificate pair now; true when a new pair was installed. */
  reloadCertificates(): boolean;
  close(): Promise<void>;
}

export const ROUTES: Record<string, Route> = { '/mutate/pod': 'pod', '/mutate/namespace': 'namespace' };

export function parseHostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:\s]+)):(\d{1,5})$/.exec(value);
  if (!m || Number(m[3]) > 65535) throw new Error(`expected host:port, got "${value}"`);
  return { host: m[1] ?? m[2], port: Number(m[3]) };
}

const jsonLog = (entry: Record<string, unknown>) =>
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), service: 'llm-failover-injector', ...entry })}\n`);

export async function startInjector(options: StartOptions): Promise<Injector> {
  const log = options.log ?? jsonLog;
  let pair = { cert: readFileSync(options.certFile, 'utf8'), key: readFileSync(options.keyFile, 'utf8') };
  const counters = new Map<string, number>();
  const count = (route: string, result: string) => {
    const k = `route="${route}",result="${result}"`;
    counters.set(k, (counters.get(k) ?? 0) + 1);
  };

  const server = createServer({ cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2' }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) }).end(body);
    };
    if (path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) return reply(200, 'ok\n');
    if (path === '/metrics' && req.method === 'GET') {
      const lines = [
        '# HELP llm_failover_injector_reviews_total AdmissionReviews answered, by route and result.',
        '# TYPE llm_failover_injector_reviews_total counter',
      ];
      for (const [labels, n] of counters) lines.push(`llm_failover_injector_reviews_total{${labels}} ${n}`);
      return reply(200, `${lines.join('\n')}\n`, 'text/plain; version=0.0.4');
    }
    const route = ROUTES[path];
    if (!route) return reply(404, 'not found: POST an AdmissionReview to /mutate/pod or /mutate/namespace\n');
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return reply(405, 'method not allowed: POST an AdmissionReview\n');
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REVIEW_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => {
      if (tooLarge) {
        count(route, 'malformed');
        return reply(413, `AdmissionReview larger than ${MAX_REVIEW_BYTES} bytes\n`);
      }
      let raw: unknown;
      try {
        raw = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        count(route, 'malformed');
        log({ level: 'warn', msg: 'malformed AdmissionReview', route, error: (err as Error).message });
        return reply(400, `malformed AdmissionReview: not JSON (${(err as Error).message})\n`);
      }
      let outcome: ReturnType<typeof review>;
      try {
        outcome = review(raw, route, options.injector);
      } catch (err) {
        // A bug must not hold pods: 500 makes the API server apply failurePolicy Ignore.
        count(route, 'error');
        log({ level: 'error', msg: 'review failed', route, error: (err as Error).stack });
        return reply(500, 'internal error\n');
      }
      const result = outcome.status !== 200 ? 'malformed' : outcome.decision?.inject ? 'injected' : 'skipped';
      count(route, result);
      log({
        level: outcome.status === 200 ? 'info' : 'warn',
        msg: result,
        route,
        uid: outcome.uid,
        namespace: outcome.namespace,
        pod: outcome.pod,
        reason: outcome.decision?.reason ?? outcome.body.trim(),
        warnings: outcome.decision?.warnings.length ? outcome.decision.warnings : undefined,
      });
      reply(outcome.status, outcome.body, outcome.contentType);
    });
    req.on('error', () => res.destroy());
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 30_000;

  const reloadCertificates = (): boolean => {
    let next: typeof pair;
    try {
      next = { cert: readFileSync(options.certFile, 'utf8'), key: readFileSync(options.keyFile, 'utf8') };
    } catch (err) {
      log({ level: 'warn', msg: 'cannot read the certificate pair; keeping the current one', error: (err as Error).message });
      return false;
    }
    if (next.cert === pair.cert && next.key === pair.key) return false;
    try {
      createSecureContext(next); // throws on a cert/key mismatch, e.g. halfway through a rotation
      server.setSecureContext({ ...next, minVersion: 'TLSv1.2' });
    } catch (err) {
      log({ level: 'warn', msg: 'new certificate pair rejected; keeping the current one', error: (err as Error).message });
      return false;
    }
    pair = next;
    log({ level: 'info', msg: 'certificate pair reloaded' });
    return true;
  };
  const reloadMs = options.certReloadMs ?? 30_000;
  const timer = reloadMs > 0 ? setInterval(reloadCertificates, reloadMs) : undefined;
  timer?.unref();

  const { host, port } = parseHostPort(options.listen ?? '0.0.0.0:8443');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const url = `https://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
  return {
    url,
    server,
    reloadCertificates,
    async close() {
      if (timer) clearInterval(timer);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // The API server keeps connections open; reviews take milliseconds, so 2 s is plenty.
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      });
    },
  };
}

export function usage(): string {
  return `llm-failover-injector --cert FILE --key FILE --image IMAGE [options]

A mutating admission webhook that adds the llm-failover sidecar to pods that opt in.

Options:
  --cert FILE               TLS certificate (PEM), re-read when it changes
  --key FILE                TLS private key (PEM)
  --image IMAGE             the sidecar image to inject
  --listen HOST:PORT        HTTPS address (default 0.0.0.0:8443)
  --exclude-namespaces LIST comma-separated namespaces never injected
                            (default ${DEFAULT_EXCLUDED_NAMESPACES.join(',')}, plus $POD_NAMESPACE)
  --image-pull-policy P     IfNotPresent (default), Always or Never
  --otlp-endpoint URL       sets OTEL_EXPORTER_OTLP_ENDPOINT in injected sidecars
  --cert-reload SECONDS     how often the certificate files are checked (default 30)
  --help                    this text

Exit codes: 0 stopped cleanly, 1 runtime failure, 2 invalid usage.
`;
}

export function optionsFromArgs(argv: string[], env: NodeJS.ProcessEnv): StartOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      cert: { type: 'string' },
      key: { type: 'string' },
      image: { type: 'string' },
      listen: { type: 'string' },
      'exclude-namespaces': { type: 'string' },
      'image-pull-policy': { type: 'string' },
      'otlp-endpoint': { type: 'string' },
      'cert-reload': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  const missing = (['cert', 'key', 'image'] as const).filter((k) => !values[k]);
  if (missing.length > 0) throw new Error(`missing ${missing.map((k) => `--${k}`).join(', ')}`);
  if (values.listen) parseHostPort(values.listen);
  const pullPolicy = (values['image-pull-policy'] ?? 'IfNotPresent') as PullPolicy;
  if (!['IfNotPresent', 'Always', 'Never'].includes(pullPolicy))
    throw new Error(`--image-pull-policy must be IfNotPresent, Always or Never, got "${pullPolicy}"`);
  const reload = values['cert-reload'] === undefined ? 30 : Number(values['cert-reload']);
  if (!Number.isFinite(reload) || reload < 0) throw new Error(`--cert-reload must be a number of seconds, got "${values['cert-reload']}"`);
  const excluded = (values['exclude-namespaces'] ?? DEFAULT_EXCLUDED_NAMESPACES.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (env.POD_NAMESPACE && !excluded.includes(env.POD_NAMESPACE)) excluded.push(env.POD_NAMESPACE);
  return {
    certFile: values.cert!,
    keyFile: values.key!,
    listen: values.listen,
    certReloadMs: reload * 1000,
    injector: { image: values.image!, excludeNamespaces: excluded, imagePullPolicy: pullPolicy, otlpEndpoint: values['otlp-endpoint'] },
  };
}

async function main(): Promise<void> {
  let options: StartOptions | 'help';
  try {
    options = optionsFromArgs(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${usage()}`);
    process.exit(2);
  }
  if (options === 'help') {
    process.stdout.write(usage());
    return;
  }
  let injector: Injector;
  try {
    injector = await startInjector(options);
  } catch (err) {
    process.stderr.write(`failed to start: ${(err as Error).message}\n`);
    process.exit(1);
  }
  jsonLog({
    level: 'info',
    msg: 'listening',
    url: injector.url,
    image: options.injector.image,
    excludeNamespaces: options.injector.excludeNamespaces,
  });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    jsonLog({ level: 'info', msg: 'stopping', signal });
    await injector.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

if (import.meta.main) await main();
