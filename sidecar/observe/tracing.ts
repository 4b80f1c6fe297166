/**
 * OpenTelemetry traces, fed by the event stream:
 * - a SERVER span per request, continuing the app's `traceparent`;
 * - a CLIENT span per attempt, named and attributed by the GenAI semantic conventions
 *   (`chat <model>`, gen_ai.*, server.*, error.type) plus our own llm_failover.* attributes;
 * - every switch inside a request as a span event `llm_failover.switch` on the request span;
 * - every health transition as a short trace of its own, linked to the probe or the attempt
 *   that caused it: the switch ahead of user traffic is visible there.
 * No prompt, completion or secret is ever put on a span (nothing here reads message content).
 */
import {
  type Context,
  type Link,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapPropagator,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { redact } from '../core/secret.ts';
import type { Events, ProbeEvent } from './events.ts';

const MAX_OPEN_REQUESTS = 10_000;
const MAX_REMEMBERED = 256;

const headerGetter: TextMapGetter<Record<string, string | string[] | undefined>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

interface OpenRequest {
  span: Span;
  ctx: Context;
  attempts: Map<number, Span>;
}

/** A bounded map: the oldest entry goes when it is full. */
class Recent<V> extends Map<string, V> {
  readonly #max: number;
  constructor(max: number) {
    super();
    this.#max = max;
  }
  override set(key: string, value: V): this {
    if (this.size >= this.#max) this.delete(this.keys().next().value as string);
    return super.set(key, value);
  }
}

/** `propagator` reads the app's trace context: W3C traceparent unless OTEL_PROPAGATORS says otherwise. */
export function subscribeTracing(events: Events, tracer: Tracer, propagator: TextMapPropagator = new W3CTraceContextPropagator()): void {
  const open = new Map<string, OpenRequest>();
  const probeSpans = new Recent<Span>(MAX_REMEMBERED);
  const quietProbes = new Recent<ProbeEvent>(MAX_REMEMBERED);

  const probeSpan = (e: ProbeEvent): Span => {
    const span = tracer.startSpan(
      `llm_failover.probe ${e.model.name}`,
      {
        kind: SpanKind.CLIENT,
        startTime: e.startedAt,
        attributes: {
          'llm_failover.provider': e.model.name,
          'llm_failover.backend': e.model.backend,
          'llm_failover.probe.kind': e.kind,
          'llm_failover.probe.trigger': e.trigger,
          'gen_ai.provider.name': e.model.provider,
          ...(e.model.model ? { 'gen_ai.request.model': e.model.model } : {}),
          ...(e.firstChunkMs !== undefined ? { 'gen_ai.response.time_to_first_chunk': e.firstChunkMs / 1000 } : {}),
          ...(e.status !== undefined ? { 'http.response.status_code': e.status } : {}),
        },
      },
      ROOT_CONTEXT,
    );
    if (!e.ok) {
      span.setAttribute('error.type', e.reason ?? 'error');
      span.setStatus({ code: SpanStatusCode.ERROR, message: e.reason });
    }
    span.end(e.startedAt + e.durationMs);
    probeSpans.set(e.id, span);
    return span;
  };

  events.on('request-start', (e) => {
    if (open.size >= MAX_OPEN_REQUESTS) return; // a leak guard; never reached while 'request' always follows
    const parent = propagator.extract(ROOT_CONTEXT, e.headers, headerGetter);
    const span = tracer.startSpan(
      `${e.method} ${e.route}`,
      {
        kind: SpanKind.SERVER,
        startTime: e.at,
        attributes: { 'http.request.method': e.method, 'url.path': redact(e.path), 'http.route': e.route, 'llm_failover.stream': e.stream },
      },
      parent,
    );
    open.set(e.requestId, { span, ctx: trace.setSpan(parent, span), attempts: new Map() });
  });

  events.on('attempt-start', (e) => {
    const req = open.get(e.requestId);
    if (!req) return;
    const m = e.model;
    const { hostname, port } = new URL(m.origin);
    const span = tracer.startSpan(
      `chat ${m.model ?? ''}`.trim(),
      {
        kind: SpanKind.CLIENT,
        startTime: e.at,
        attributes: {
          'gen_ai.operation.name': 'chat',
          'gen_ai.provider.name': m.provider,
          ...(m.model ? { 'gen_ai.request.model': m.model } : {}),
          'server.address': hostname.replace(/^\[|\]$/g, ''),
          'server.port': Number(port || (m.origin.startsWith('https:') ? 443 : 80)),
          'llm_failover.provider': m.name,
          'llm_failover.backend': m.backend,
          'llm_failover.priority_group': m.group + 1,
          'llm_failover.attempt': e.attempt,
          'llm_failover.health_state': e.state,
          'llm_failover.last_resort': e.lastResort,
          'gen_ai.request.stream': e.stream,
        },
      },
      req.ctx,
    );
    req.attempts.set(e.attempt, span);
  });

  events.on('attempt-end', (e) => {
    const span = open.get(e.requestId)?.attempts.get(e.attempt);
    if (!span) return;
    if (e.responseModel) span.setAttribute('gen_ai.response.model', e.responseModel);
    if (e.usage) {
      span.setAttribute('gen_ai.usage.input_tokens', e.usage.inputTokens);
      span.setAttribute('gen_ai.usage.output_tokens', e.usage.outputTokens);
    }
    if (e.firstChunkMs !== undefined) span.setAttribute('gen_ai.response.time_to_first_chunk', e.firstChunkMs / 1000);
    if (e.status !== undefined) span.setAttribute('http.response.status_code', e.status);
    span.setAttribute('llm_failover.outcome', e.outcome);
    if (e.outcome !== 'success') {
      span.setAttribute('error.type', e.outcome);
      span.setStatus({ code: SpanStatusCode.ERROR, message: e.message === undefined ? undefined : redact(e.message) });
    }
    span.end(e.at);
  });

  events.on('switch', (e) => {
    open.get(e.requestId)?.span.addEvent('llm_failover.switch', {
      'llm_failover.switch.from': e.from.name,
      'llm_failover.switch.to': e.to.name,
      'llm_failover.switch.reason': e.reason,
      ...(e.status !== undefined ? { 'llm_failover.switch.status': e.status } : {}),
    });
  });

  events.on('request', (e) => {
    const req = open.get(e.requestId);
    if (!req) return;
    open.delete(e.requestId);
    const span = req.span;
    if (e.status) span.setAttribute('http.response.status_code', e.status);
    span.setAttribute('llm_failover.outcome', e.outcome);
    span.setAttribute('llm_failover.attempts', e.attempts.length);
    if (e.servedBy) span.setAttribute('llm_failover.served_by', e.servedBy);
    if (e.outcome === 'failed' || e.outcome === 'cut') {
      span.setAttribute('error.type', e.outcome === 'cut' ? 'stream_interrupted' : 'all_models_failed');
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    for (const a of req.attempts.values()) if (a.isRecording()) a.end();
    span.end(e.at);
  });

  events.on('probe', (e) => {
    // Failed probes always get a span; a quiet success only when it changes a model's health.
    if (e.ok) quietProbes.set(e.id, e);
    else probeSpan(e);
  });

  events.on('health', (e) => {
    const links: Link[] = [];
    let origin: Span | undefined;
    if (e.origin?.kind === 'request') {
      const req = open.get(e.origin.id);
      origin = req?.attempts.get(e.origin.attempt) ?? req?.span;
    } else if (e.origin?.kind === 'probe') {
      origin = probeSpans.get(e.origin.id);
      const quiet = quietProbes.get(e.origin.id);
      if (!origin && quiet) origin = probeSpan(quiet);
    }
    if (origin) links.push({ context: origin.spanContext(), attributes: { 'llm_failover.link': e.origin?.kind ?? 'cause' } });
    const span = tracer.startSpan(
      `llm_failover.health ${e.model.name} ${e.to}`,
      {
        kind: SpanKind.INTERNAL,
        startTime: e.at,
        links,
        attributes: {
          'llm_failover.provider': e.model.name,
          'llm_failover.backend': e.model.backend,
          'llm_failover.priority_group': e.model.group + 1,
          'llm_failover.health.from': e.from,
          'llm_failover.health.to': e.to,
          'llm_failover.health.cause': redact(e.cause),
          ...(e.until !== undefined ? { 'llm_failover.health.until': new Date(e.until).toISOString() } : {}),
          'gen_ai.provider.name': e.model.provider,
          ...(e.model.model ? { 'gen_ai.request.model': e.model.model } : {}),
        },
      },
      ROOT_CONTEXT,
    );
    if (e.to !== 'healthy') span.setStatus({ code: SpanStatusCode.ERROR, message: redact(e.cause) });
    span.end(e.at);
  });
}
