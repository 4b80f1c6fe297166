/**
 * Structured JSON logs (pino), fed by the event stream: one line per request with its switch
 * story, one per switch, one per health transition. Secrets cannot reach them: model targets
 * are logged by name, and tokens are Secret objects that serialise as "[redacted]".
 */
import { pino, type Logger } from 'pino';
import { redact } from '../core/secret.ts';
import type { Events } from './events.ts';

/** Log lines a slow reader of stdout may leave waiting before newer ones are dropped (never unbounded memory). */
export const MAX_PENDING_LOG_BYTES = 16 * 1024 * 1024;
/**
 * Lines are gathered into writes of up to 8 KiB and flushed at least this often: a write per
 * line was ~10 % of a request's CPU at `info` (one line per request). A line reaches stdout
 * within this time; on exit the CLI flushes what is pending.
 */
export const LOG_FLUSH_MS = 250;

/** Logs to `destination`, or to stdout through pino's own buffered writer, bounded. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const out =
    destination ??
    pino.destination({ dest: 1, sync: false, minLength: 8192, maxLength: MAX_PENDING_LOG_BYTES, periodicFlush: LOG_FLUSH_MS });
  return pino(
    {
      level,
      base: { service: 'llm-failover-sidecar' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['*.authorization', '*.Authorization', '*["x-api-key"]', '*.token', '*.inline'], censor: '[redacted]' },
      // every line, at every level, passes the one scrubber on its way out (core/secret.ts)
      hooks: { streamWrite: (line) => redact(line) },
    },
    out as pino.DestinationStream,
  );
}

export function logEvents(events: Events, log: Logger): void {
  events.on('switch', (e) => {
    log.warn(
      { event: 'switch', requestId: e.requestId, from: e.from.name, to: e.to.name, reason: e.reason, status: e.status },
      `switch ${e.from.name} -> ${e.to.name} (${e.reason}${e.status ? ` ${e.status}` : ''})`,
    );
  });
  events.on('health', (e) => {
    const level = e.to === 'healthy' ? 'info' : 'warn';
    log[level](
      {
        event: 'health',
        model: e.model.name,
        backend: e.model.backend,
        from: e.from,
        to: e.to,
        cause: e.cause,
        until: e.until ? new Date(e.until).toISOString() : undefined,
      },
      `model ${e.model.name} ${e.from} -> ${e.to}: ${e.cause}`,
    );
  });
  events.on('rejected', (e) => log.debug({ event: 'rejected', status: e.status, code: e.code }, `rejected ${e.status} ${e.code}`));
  events.on('config', (e) => {
    if (e.ok) log.info({ event: 'config', generation: e.generation }, `configuration ${e.generation} applied`);
    else
      log.error(
        { event: 'config', generation: e.generation, problems: e.problems },
        `configuration change rejected, still serving configuration ${e.generation}: ${e.problems?.join('; ')}`,
      );
  });
  // The request line is built here from names, ids, numbers and already-redacted messages: no
  // field can hold a header or a token, so pino's path redaction (half of the line's cost) is off.
  const requestLog = log.child({}, { redact: { paths: [] } });
  events.on('request', (e) => {
    if (!requestLog.isLevelEnabled('info')) return;
    requestLog.info(
      {
        event: 'request',
        requestId: e.requestId,
        route: e.route,
        stream: e.stream,
        status: e.status,
        outcome: e.outcome,
        servedBy: e.servedBy,
        attempts: e.attempts,
        durationMs: Math.round(e.durationMs),
      },
      'request',
    );
  });
}
