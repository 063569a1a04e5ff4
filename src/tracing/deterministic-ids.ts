import type { IdGenerator } from '@opentelemetry/sdk-trace-base';

/**
 * Hands the tracer the ids asp already chose, so the OTLP traceId is the document's trace id and every span id
 * is its observation id: a re-push then overwrites in Langfuse instead of duplicating. Seeding the trace id via a
 * fake parent context would leave the top span pointing at a parent that never exists; the id generator does not.
 *
 * `Tracer.startSpan` is synchronous and asks for exactly one span id (and, for a root, one trace id), so setting
 * the next ids right before each call is enough.
 */
export class DeterministicIdGenerator implements IdGenerator {
  private traceId = '';
  private spanId = '';

  next(traceId: string, spanId: string): void {
    this.traceId = traceId;
    this.spanId = spanId;
  }

  generateTraceId(): string {
    return this.traceId;
  }

  generateSpanId(): string {
    return this.spanId;
  }
}
