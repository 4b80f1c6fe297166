/**
 * One port, two protocols: HTTP/1.1 and cleartext HTTP/2 with prior knowledge. The first bytes
 * of a connection decide (HTTP/2's preface starts with "PRI"); node's own servers do the rest.
 */
import http from 'node:http';
import http2 from 'node:http2';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';

export type RequestHandler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

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
  keepAliveTimeoutMs: number;
  maxHeaderBytes: number;
}

export const DEFAULT_LIMITS: ListenLimits = { headersTimeoutMs: 30_000, keepAliveTimeoutMs: 65_000, maxHeaderBytes: 32 * 1024 };

export function createDualServer(handler: RequestHandler, limits: ListenLimits = DEFAULT_LIMITS): DualServer {
  const h1 = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: 0,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      maxHeaderSize: limits.maxHeaderBytes,
      noDelay: true,
    },
    handler,
  );
  const h2 = http2.createServer({ settings: { maxHeaderListSize: limits.maxHeaderBytes } }, handler);
  const sockets = new Set<Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  const net = createNetServer({ noDelay: true }, (socket) => {
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
