import { LangfuseClient } from '@langfuse/client';
import { LangfuseSpanProcessor } from '@langfuse/otel';
import { LANGFUSE_SDK_VERSION, setLangfuseTraceIdInBaggage } from '@langfuse/core';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { ASP_VERSION } from '../core/version.js';
import { valueAt } from '../core/record-guard.js';
import { DeterministicIdGenerator } from './deterministic-ids.js';
import { ExportFailure, httpFailure, networkFailure } from './export-failure.js';
import { observationAttributes, traceAttributes, traceIoAttributes } from './langfuse-attributes.js';
import { abortReason, OtlpJsonExporter } from './otlp-json-exporter.js';
import type { Observation, TraceDocument } from './trace-model.js';

/** The instrumentation scope of asp's spans; the span processor's filter lets exactly these through. */
export const ASP_TRACER_NAME = 'asp-runner';
/** The whole export (spans and scores) of one trace ends within this, whatever the server does. */
export const DEFAULT_FLUSH_BUDGET_MS = 5000;
/** Spans per OTLP request: the SDK's own default batch size. */
const SPANS_PER_REQUEST = 512;
/** The batch processor silently drops spans beyond a queue of 2048: end fewer than that between two flushes. */
const SPANS_PER_ROUND = 1024;
/**
 * Requests on the wire at once for a large trace. More does not make 10,000 spans faster against one server, and
 * every request in flight keeps its spans and serialized body alive: 2 kept bench/trace-export under 150 MB.
 */
const MAX_REQUESTS_IN_FLIGHT = 2;

export interface LangfuseTarget {
  publicKey: string;
  secretKey: string;
  baseUrl: string;
  /** For a trace that does not say its own (one written before asp recorded it): the environment of this run. */
  environment?: string | undefined;
}

export interface ExportOptions {
  budgetMs?: number | undefined;
  /** Aborting it (Ctrl-C) stops the export at once, like the budget running out. */
  signal?: AbortSignal | undefined;
}

export interface ExportReceipt {
  traceId: string;
  url: string;
  spans: number;
  scores: number;
  requests: number;
  truncatedSpans: number;
  durationMs: number;
}

/** Langfuse's own route that redirects a bare trace id to the trace in its project. */
export function traceUrl(baseUrl: string, traceId: string): string {
  return `${baseUrl}/trace/${traceId}`;
}

/**
 * Sends one finished trace to Langfuse, spans through the SDK's span processor and then the PROBE scores, all
 * within one time budget. Either everything arrived (the receipt) or it throws an ExportFailure saying why; in
 * both cases nothing is left running. Ids come from the document, so sending the same trace again overwrites.
 */
export async function exportToLangfuse(document: TraceDocument, target: LangfuseTarget, options: ExportOptions = {}): Promise<ExportReceipt> {
  const budgetMs = options.budgetMs ?? DEFAULT_FLUSH_BUDGET_MS;
  const started = performance.now();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new ExportFailure('timeout', `Langfuse at ${target.baseUrl} did not take the trace within ${(budgetMs / 1000).toFixed(1)}s`)), budgetMs);
  const onInterrupt = () => controller.abort(new ExportFailure('interrupted', 'sending the trace to Langfuse was interrupted'));
  if (options.signal?.aborted) onInterrupt();
  options.signal?.addEventListener('abort', onInterrupt, { once: true });
  try {
    const spans = await sendSpans(document, target, controller.signal);
    const scores = await sendScores(document, target, controller.signal, budgetMs);
    return { traceId: document.trace.id, url: traceUrl(target.baseUrl, document.trace.id), scores, ...spans, durationMs: Math.round(performance.now() - started) };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onInterrupt);
    // Ends whatever might still be open (a request of a failed export): nothing outlives this call.
    controller.abort(new ExportFailure('interrupted', 'export finished'));
  }
}

async function sendSpans(document: TraceDocument, target: LangfuseTarget, signal: AbortSignal): Promise<{ spans: number; requests: number; truncatedSpans: number }> {
  const exporter = new OtlpJsonExporter({ url: `${target.baseUrl}/api/public/otel/v1/traces`, headers: sdkHeaders(target), signal });
  const ids = new DeterministicIdGenerator();
  // Keys, URL, batching and the filter are passed explicitly: the SDK's own LANGFUSE_* defaults (read from the
  // environment) do not decide where or how asp's traces go. Media upload is off: asp sends no base64 media.
  const processor = new LangfuseSpanProcessor({
    exporter,
    publicKey: target.publicKey,
    secretKey: target.secretKey,
    baseUrl: target.baseUrl,
    flushAt: SPANS_PER_REQUEST,
    flushInterval: 3600,
    mediaUploadEnabled: false,
    // The trace's own, as it was made, not this process's LANGFUSE_* (a push may run elsewhere): spans and scores alike.
    environment: environmentOf(document, target),
    ...(document.trace.release ? { release: document.trace.release } : {}),
    // Spans of a non-Langfuse tracer are dropped by the processor's default filter: accept asp's own.
    shouldExportSpan: ({ otelSpan }) => otelSpan.instrumentationScope.name === ASP_TRACER_NAME,
  });
  const provider = new BasicTracerProvider({
    idGenerator: ids,
    sampler: new AlwaysOnSampler(),
    spanLimits: { attributeCountLimit: 1024, attributeValueLengthLimit: Infinity },
    spanProcessors: [processor],
    resource: resourceFromAttributes({ 'service.name': ASP_TRACER_NAME, 'service.version': document.trace.version ?? ASP_VERSION }),
  });
  let delivered = false;
  try {
    const tracer = provider.getTracer(ASP_TRACER_NAME);
    const observations = document.observations;
    const shared = { root: { ...traceAttributes(document, 'root'), ...traceIoAttributes(document) }, child: traceAttributes(document, 'child') };
    const traceEnd = latestEnd(document);
    // Children carry the trace id as the Langfuse "claimed" baggage, as spans under a live root would: the processor
    // then marks only the top span as the trace's root, whatever order the spans are sent in.
    const claimed = setLangfuseTraceIdInBaggage(ROOT_CONTEXT, document.trace.id);
    const flushes: Promise<void>[] = [];
    for (let from = 0; from < observations.length; from += SPANS_PER_ROUND) {
      const round = observations.slice(from, from + SPANS_PER_ROUND);
      for (const observation of round) endSpan(startSpan(tracer, ids, document, observation, shared, claimed), observation, traceEnd);
      // Failures are read from the exporter, which saw each one; the flush promise only says "handed over".
      const flushing = processor.forceFlush().catch(() => {});
      flushes.push(flushing);
      // The next round may be built while this one is on the wire, once the processor's queue is empty again.
      await untilAborted(Promise.race([exporter.handedAtLeast(from + round.length), flushing]), signal);
      await untilAborted(exporter.inflightAtMost(MAX_REQUESTS_IN_FLIGHT), signal);
      if (exporter.failure) throw exporter.failure;
    }
    await untilAborted(Promise.all([...flushes, exporter.drain()]), signal);
    if (exporter.failure) throw exporter.failure;
    if (exporter.delivered !== observations.length) {
      throw new ExportFailure('rejected', `only ${exporter.delivered} of ${observations.length} spans were sent`);
    }
    delivered = true;
    return { spans: exporter.delivered, requests: exporter.requests, truncatedSpans: exporter.truncatedSpans };
  } catch (error) {
    throw signal.aborted ? abortReason(signal) : error;
  } finally {
    const shutdown = provider.shutdown().catch(() => {});
    // After a failure the signal is aborted by the caller: never wait on a shutdown that talks to a dead server.
    if (delivered) await untilAborted(shutdown, signal).catch(() => {});
    exporter.close();
  }
}

async function sendScores(document: TraceDocument, target: LangfuseTarget, signal: AbortSignal, budgetMs: number): Promise<number> {
  if (document.scores.length === 0) return 0;
  const client = new LangfuseClient({ publicKey: target.publicKey, secretKey: target.secretKey, baseUrl: target.baseUrl, timeout: budgetMs / 1000 });
  const url = `${target.baseUrl}/api/public/scores`;
  // The client's default is a 60 s timeout with retries: bound it by the same budget and abort signal as the spans.
  const requestOptions = { maxRetries: 0, timeoutInSeconds: budgetMs / 1000, abortSignal: signal };
  const sends = document.scores.map((score) =>
    client.api.scores
      .create(
        {
          id: score.id,
          traceId: score.traceId,
          name: score.name,
          value: score.value,
          dataType: score.dataType,
          environment: environmentOf(document, target),
          ...(score.comment ? { comment: score.comment } : {}),
        },
        requestOptions,
      )
      .then(
        () => undefined,
        (error: unknown) => {
          throw signal.aborted ? abortReason(signal) : scoreFailure(error, url);
        },
      ),
  );
  await untilAborted(Promise.all(sends), signal);
  return sends.length;
}

/** The environment of a trace's spans and scores: the one it was made in, else this run's, else Langfuse's default. */
function environmentOf(document: TraceDocument, target: LangfuseTarget): string {
  return document.trace.environment ?? target.environment ?? 'default';
}

function scoreFailure(error: unknown, url: string): ExportFailure {
  // The client rejects with whatever it was given; a reason that is not an object (even null) must not throw here.
  const status = valueAt(error, 'statusCode');
  if (typeof status === 'number') return httpFailure(status, 'a score', JSON.stringify(valueAt(error, 'body') ?? '') ?? '');
  if (error instanceof Error && /timeout/i.test(error.message)) return new ExportFailure('timeout', `Langfuse did not answer a score request in time`);
  return networkFailure(error, url);
}

function startSpan(tracer: Tracer, ids: DeterministicIdGenerator, document: TraceDocument, observation: Observation, shared: { root: Attributes; child: Attributes }, claimed: Context): Span {
  ids.next(document.trace.id, observation.id);
  const parent = observation.parentObservationId;
  const context = parent ? trace.setSpanContext(claimed, { traceId: document.trace.id, spanId: parent, traceFlags: TraceFlags.SAMPLED }) : ROOT_CONTEXT;
  const attributes = Object.assign(observationAttributes(observation), parent ? shared.child : shared.root);
  return tracer.startSpan(observation.name, { kind: SpanKind.INTERNAL, startTime: new Date(observation.startTime), attributes, root: !parent }, context);
}

function endSpan(span: Span, observation: Observation, traceEnd: number): void {
  if (observation.level === 'ERROR') span.setStatus({ code: SpanStatusCode.ERROR, ...(observation.statusMessage ? { message: observation.statusMessage } : {}) });
  const start = Date.parse(observation.startTime);
  // A span the run never closed (killed at a deadline) ends with the trace; never before its own start.
  const end = observation.endTime ? Date.parse(observation.endTime) : traceEnd;
  span.end(new Date(Math.max(start, end)));
}

function latestEnd(document: TraceDocument): number {
  let latest = Date.parse(document.trace.timestamp);
  for (const observation of document.observations) {
    const at = Date.parse(observation.endTime ?? observation.startTime);
    if (at > latest) latest = at;
  }
  return latest;
}

/** The headers Langfuse's own span processor sends: Basic auth with the key pair, and who is sending. */
function sdkHeaders(target: LangfuseTarget): Record<string, string> {
  return {
    Authorization: `Basic ${Buffer.from(`${target.publicKey}:${target.secretKey}`).toString('base64')}`,
    'x-langfuse-sdk-name': 'javascript',
    'x-langfuse-sdk-version': LANGFUSE_SDK_VERSION,
    'x-langfuse-public-key': target.publicKey,
  };
}

/** Settles with the promise, or rejects with the abort reason as soon as the signal fires, whichever is first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
