#!/usr/bin/env node
/**
 * The floor: the least a Node.js reverse proxy can do. node:http in, one undici Pool per
 * upstream out (the same Pool settings as the sidecar's), the request body piped up and the
 * response body piped down, nothing parsed. Any Node gateway costs at least this much.
 *
 *   node bench/floor.ts --listen 127.0.0.1:9000 --route /openai/=http://127.0.0.1:8081 [--route ...]
 *
 * A request goes to the first route whose prefix starts its path, with the path unchanged.
 * GET /__ready answers 200 (for the bench's start-up timing).
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

function forwardHeaders(
  headers: http.IncomingHttpHeaders | Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

export function startFloor(listen: string, routes: { prefix: string; origin: string }[]): http.Server {
  const pools = new Map<string, Pool>();
  for (const r of routes) {
    if (!pools.has(r.origin))
      pools.set(
        r.origin,
        new Pool(r.origin, {
          connections: 256,
          pipelining: 1,
          keepAliveTimeout: 30_000,
          keepAliveMaxTimeout: 600_000,
          headersTimeout: 0,
          bodyTimeout: 0,
        }),
      );
  }
  const table = routes.map((r) => ({ prefix: r.prefix, pool: pools.get(r.origin)! }));
  const server = http.createServer({ keepAliveTimeout: 65_000, requestTimeout: 0, noDelay: true }, (req, res) => {
    const url = req.url ?? '/';
    if (url === '/__ready') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ready\n');
      return;
    }
    const route = table.find((r) => url.startsWith(r.prefix));
    if (!route) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('no route\n');
      return;
    }
    route.pool.request({ path: url, method: req.method as 'POST', headers: forwardHeaders(req.headers), body: req }, (err, data) => {
      if (err) {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`upstream failed: ${err.message}\n`);
        return;
      }
      if (res.destroyed) {
        data.body.destroy(); // the client went away meanwhile
        return;
      }
      res.writeHead(data.statusCode, forwardHeaders(data.headers));
      // .pipe(), not stream.pipeline(): pipeline builds an AbortError (a DOMException with a
      // stack trace) for every stream it finishes, about 9% of this proxy's CPU.
      data.body.pipe(res);
      data.body.once('error', () => res.destroy());
      res.once('close', () => {
        if (!data.body.readableEnded) data.body.destroy();
      });
    });
  });
  const [host, port] = [listen.slice(0, listen.lastIndexOf(':')), Number(listen.slice(listen.lastIndexOf(':') + 1))];
  server.listen(port, host);
  const stop = () => {
    server.close();
    server.closeAllConnections();
    void Promise.all([...pools.values()].map((p) => p.close())).then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return server;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { listen: { type: 'string', default: '127.0.0.1:9000' }, route: { type: 'string', multiple: true, default: [] } },
  });
  const routes = (values.route ?? []).map((r) => {
    const i = r.indexOf('=');
    return { prefix: r.slice(0, i), origin: r.slice(i + 1) };
  });
  if (routes.length === 0) {
    process.stderr.write('usage: node bench/floor.ts --listen HOST:PORT --route /prefix/=http://HOST:PORT [...]\n');
    process.exit(2);
  }
  startFloor(values.listen!, routes);
}
