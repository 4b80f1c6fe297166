/**
 * Spans as a test reads them: an OpenTelemetry tracer provider that keeps every finished span in
 * memory, for `startHarness({ tracerProvider })` or `startSidecar({ tracerProvider })`.
 */
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';

export function tracing() {
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  /** Spans export asynchronously: flush, then read. */
  const finished = async () => {
    await tracerProvider.forceFlush();
    return exporter.getFinishedSpans();
  };
  return { finished, tracerProvider, reset: () => exporter.reset() };
}
