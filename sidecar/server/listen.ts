/**
 * One port, two protocols: HTTP/1.1 and cleartext HTTP/2 with prior knowledge. The first bytes
 * of a connection decide (HTTP/2's preface starts with "PRI"); node's own servers do the rest.
 */
import type * as http from 'node:http';
import type * as http2 from 'node:http2';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';

// The CommonJS objects, not ESM namespaces: building node:http's namespace runs its lazy
// WebSocket getters, which load node's bundled undici (~1.5 MB of RSS; nodejs/node#59686).
const { createServer: createH1Server } = process.getBuiltinModule('node:http');
const { createServer: createH2Server } = process.getBuiltinModule('node:http2');

export type RequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export interface DualServer {
  net: NetServer;
  h1: http.Server;
  h2: http2.Http2Server;
  /** Stops accepting connections; idle keep-alive connections are closed, busy ones finish. */
  stopAccepting(): void;
  /** Ends every connection at once. */
  destroyAll(): void;
}

export interface ListenLimits {
  /** Time a client may take to send its request headers (slowloris bound). */
  headersTimeoutMs: number;
  /** Time a client may take to send its whole request. */
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxHeaderBytes: number;
  maxConnections: number;
}

export const DEFAULT_LIMITS: ListenLimits = {
  headersTimeoutMs: 30_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 65_000,
  maxHeaderBytes: 32 * 1024,
  maxConnections: 4096,
};

/** What node's HTTP parser reports, as the status and OpenAI-shaped error a client gets. */
function clientErrorReply(code: string | undefined): { status: number; reason: string; error: string; message: string } {
  if (code === 'HPE_HEADER_OVERFLOW')
    return {
      status: 431,
      reason: 'Request Header Fields Too Large',
      error: 'headers_too_large',
      message: 'the request headers are too large or too many',
    };
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return { status: 408, reason: 'Request Timeout', error: 'request_timeout', message: 'the request was not received in time' };
  return { status: 400, reason: 'Bad Request', error: 'malformed_http', message: 'the request is not valid HTTP/1.1' };
}

/** node:http's own bounds from the limits: the proxy's listener and the admin port take the same. */
export function httpServerOptions(limits: ListenLimits): http.ServerOptions {
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    // the timeouts above are checked this often
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    maxHeaderSize: limits.maxHeaderBytes,
  };
}

/** `onClientError`: node's parser refused a request (malformed, headers too large, too slow). */
export function createDualServer(
  handler: RequestHandler,
  limits: ListenLimits = DEFAULT_LIMITS,
  onClientError?: (status: number, code: string) => void,
): DualServer {
  const h1 = createH1Server({ ...httpServerOptions(limits), noDelay: true }, handler);
  // Node answers parse errors, oversized headers and slow clients itself, with an empty body: answer in the OpenAI shape.
  h1.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const r = clientErrorReply(err.code);
    onClientError?.(r.status, r.error);
    const body = JSON.stringify({ error: { message: r.message, type: 'invalid_request_error', param: null, code: r.error } });
    socket.end(
      `HTTP/1.1 ${r.status} ${r.reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  const h2 = createH2Server({ settings: { maxHeaderListSize: limits.maxHeaderBytes } }, handler);
  const sockets = new Set<Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  const net = createNetServer({ noDelay: true }, (socket) => {
    // over maxConnections, node closes new connections before this runs
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    // A connection that never says anything is closed like a slow header.
    socket.setTimeout(limits.headersTimeoutMs, () => socket.destroy());
    socket.once('data', (chunk) => {
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(chunk);
      const isH2 = chunk.length >= 3 && chunk[0] === 0x50 && chunk[1] === 0x52 && chunk[2] === 0x49; // "PRI"
      (isH2 ? h2 : h1).emit('connection', socket);
      process.nextTick(() => socket.resume());
    });
  });
  net.maxConnections = limits.maxConnections;
  // node starts the HTTP server's timeout checker (headersTimeout, requestTimeout) when that server
  // listens; here the net server listens for it
  net.on('listening', () => h1.emit('listening'));
  return {
    net,
    h1,
    h2,
    stopAccepting() {
      net.close();
      h1.closeIdleConnections();
      for (const s of sessions) s.close();
    },
    destroyAll() {
      for (const s of sockets) s.destroy();
    },
  };
}

export function parseHostPort(value: string): { host: string; port: number } {
  const i = value.lastIndexOf(':');
  const host = value.slice(0, i).replace(/^\[|\]$/g, '');
  return { host, port: Number(value.slice(i + 1)) };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
