import http from 'node:http';
import https from 'node:https';
import { promisify } from 'node:util';
import { constants, gzip } from 'node:zlib';
import type { Attributes } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { valueAt } from '../core/record-guard.js';
import { ExportFailure, httpFailure, networkFailure } from './export-failure.js';

/** Statuses worth one more try inside the flush budget (the SDK's own exporter retries these too). */
const RETRYABLE = new Set([429, 502, 503, 504]);
const RETRIES = 2;
/** Two rounds of cutting for a span the server finds too large (413) on its own: generous first, then small. */
const TRUNCATE_STEPS = [4096, 256];
export const TRUNCATION_MARKER = "[asp: truncated to fit the server's request size limit; the full trace is in the local JSON]";

export interface OtlpJsonExporterOptions {
  url: string;
  headers: Record<string, string>;
  /** Aborting it stops every request at once: the bounded flush relies on it. */
  signal: AbortSignal;
}

/**
 * The span exporter behind the Langfuse span processor: the same OTLP/HTTP JSON the SDK's exporter sends
 * (OpenTelemetry's own serializer), gzipped (Langfuse takes it; the repeated trace attributes shrink ~10x), and
 * posted on its own HTTP agent under an AbortSignal, so a dead or hung server costs at most the flush budget and
 * `close()` leaves no socket behind. It also records every outcome: the batch span processor swallows export
 * errors of background flushes, and asp must know whether each span arrived.
 *
 * A 413 splits the batch in halves until single spans remain; a single span still too large has its long
 * attributes cut with a marker. A span is never silently dropped: what cannot be sent fails the export.
 */
export class OtlpJsonExporter implements SpanExporter {
  delivered = 0;
  requests = 0;
  truncatedSpans = 0;
  failure: ExportFailure | undefined;
  /** Spans handed to `export` so far: they have left the span processor's queue. */
  handed = 0;
  private readonly inflight = new Set<Promise<void>>();
  private readonly waiters = new Set<() => void>();
  private readonly agent: http.Agent;
  private readonly active = new Set<http.ClientRequest>();
  private closed = false;
  // One listener for all requests: a signal with a listener per request warns (MaxListenersExceeded) on stderr.
  private readonly onAbort = () => {
    for (const request of this.active) request.destroy(abortReason(this.options.signal));
  };

  constructor(private readonly options: OtlpJsonExporterOptions) {
    this.agent = new (options.url.startsWith('https:') ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: 8 });
    options.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Ends every request of this exporter and destroys its sockets, busy or idle; any later export fails at once. */
  close(): void {
    this.closed = true;
    this.onAbort();
    this.options.signal.removeEventListener('abort', this.onAbort);
    this.agent.destroy();
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.handed += spans.length;
    const sending = this.send(spans).then(
      () => {
        this.delivered += spans.length;
        resultCallback({ code: ExportResultCode.SUCCESS });
      },
      (error: unknown) => {
        const failure = error instanceof ExportFailure ? error : new ExportFailure('http', String(error));
        this.failure ??= failure;
        resultCallback({ code: ExportResultCode.FAILED, error: failure });
      },
    );
    this.inflight.add(sending);
    this.wake();
    void sending.finally(() => {
      this.inflight.delete(sending);
      this.wake();
    });
  }

  /** Resolves once at least `count` spans were handed over (or an export failed). */
  handedAtLeast(count: number): Promise<void> {
    return this.until(() => this.handed >= count || this.failure !== undefined);
  }

  /** Resolves once no more than `count` exports are on the wire. */
  inflightAtMost(count: number): Promise<void> {
    return this.until(() => this.inflight.size <= count);
  }

  private until(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!done()) return;
        this.waiters.delete(check);
        resolve();
      };
      this.waiters.add(check);
    });
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Resolves when every export handed to this exporter has settled. */
  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  forceFlush(): Promise<void> {
    return this.drain();
  }

  /** Nothing of its own to close: the owner aborts the signal, which ends any request still open. */
  shutdown(): Promise<void> {
    return Promise.resolve();
  }

  private async send(spans: ReadableSpan[], truncateStep = -1): Promise<void> {
    const body = JsonTraceSerializer.serializeRequest(spans);
    if (!body) throw new ExportFailure('http', 'the OTLP serializer produced nothing to send');
    for (let attempt = 0; ; attempt += 1) {
      const { status, text } = await this.post(body);
      if (status >= 200 && status < 300) return checkPartialSuccess(text);
      if (status === 413) return this.sendSmaller(spans, truncateStep);
      if (RETRYABLE.has(status) && attempt < RETRIES) {
        await abortableSleep(250 * 2 ** attempt, this.options.signal);
        continue;
      }
      throw httpFailure(status, `${spans.length} span(s)`, text);
    }
  }

  private async sendSmaller(spans: ReadableSpan[], truncateStep: number): Promise<void> {
    if (spans.length > 1) {
      const half = Math.ceil(spans.length / 2);
      // One half after the other: a server that says "too large" is not helped by twice the load.
      await this.send(spans.slice(0, half), truncateStep);
      await this.send(spans.slice(half), truncateStep);
      return;
    }
    const next = truncateStep + 1;
    const limit = TRUNCATE_STEPS[next];
    const span = spans[0];
    if (limit === undefined || !span) throw new ExportFailure('http', `Langfuse answered HTTP 413 (too large) even for one span cut to ${TRUNCATE_STEPS.at(-1)} characters per attribute`, 413);
    if (next === 0) this.truncatedSpans += 1;
    await this.send([truncatedSpan(span, limit)], next);
  }

  private async post(json: Uint8Array): Promise<{ status: number; text: string }> {
    this.requests += 1;
    const body = await gzipAsync(json, { level: constants.Z_BEST_SPEED });
    const { signal, url } = this.options;
    // A batch the processor flushes while shutting down after a failure must not open a request nobody ends.
    if (signal.aborted || this.closed) throw abortReason(signal);
    return new Promise((resolve, reject) => {
      const fail = (error: unknown) => reject(signal.aborted ? abortReason(signal) : networkFailure(error, url));
      const request = (url.startsWith('https:') ? https : http).request(
        url,
        {
          method: 'POST',
          agent: this.agent,
          headers: { ...this.options.headers, 'Content-Type': 'application/json', 'Content-Encoding': 'gzip', 'Content-Length': body.length },
        },
        (response) => {
          const chunks: Buffer[] = [];
          let size = 0;
          response.on('data', (chunk: Buffer) => {
            // Only the start of an answer is ever shown: never hold a huge one.
            if (size < RESPONSE_MAX_BYTES) chunks.push(chunk);
            size += chunk.length;
          });
          response.on('end', () => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8').slice(0, RESPONSE_MAX_BYTES) }));
          response.on('error', fail);
          response.on('close', () => {
            if (!response.complete) fail(new Error('the server closed the connection mid-answer'));
          });
        },
      );
      this.active.add(request);
      request.on('close', () => this.active.delete(request));
      request.on('error', fail);
      request.end(body);
    });
  }
}

const gzipAsync = promisify(gzip);
const RESPONSE_MAX_BYTES = 64 * 1024;

/** OTLP lets a server take a request and still drop some spans; for asp that is a failed export. */
function checkPartialSuccess(text: string): void {
  if (!text) return;
  // The server's JSON is read step by step: a body of `null` is an answer without partialSuccess, not a TypeError.
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return;
  }
  const rejected = Number(valueAt(parsed, 'partialSuccess', 'rejectedSpans') ?? 0);
  if (rejected > 0) {
    throw new ExportFailure('rejected', `Langfuse dropped ${rejected} span(s): ${String(valueAt(parsed, 'partialSuccess', 'errorMessage') ?? 'no reason given')}`);
  }
}

/** A copy of the span whose long string attributes are cut to `limit` characters, each with the marker. */
export function truncatedSpan(span: ReadableSpan, limit: number): ReadableSpan {
  const attributes: Attributes = { 'asp.truncated': true };
  for (const [key, value] of Object.entries(span.attributes)) {
    attributes[key] = typeof value === 'string' && value.length > limit ? `${value.slice(0, limit)}${TRUNCATION_MARKER}` : value;
  }
  return {
    name: span.name,
    kind: span.kind,
    spanContext: () => span.spanContext(),
    ...(span.parentSpanContext ? { parentSpanContext: span.parentSpanContext } : {}),
    startTime: span.startTime,
    endTime: span.endTime,
    status: span.status,
    attributes,
    links: span.links,
    events: span.events,
    duration: span.duration,
    ended: span.ended,
    resource: span.resource,
    instrumentationScope: span.instrumentationScope,
    droppedAttributesCount: span.droppedAttributesCount,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount,
  };
}

export function abortReason(signal: AbortSignal): ExportFailure {
  return signal.reason instanceof ExportFailure ? signal.reason : new ExportFailure('interrupted', 'sending the trace was stopped');
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
