import { gzipSync } from 'node:zlib';
import { SpanStatusCode } from '@opentelemetry/api';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LangfuseOtelSpanAttributes } from '@langfuse/core';
import { GENERATION_ATTRIBUTES, receivedGeneration, startLangfuseReceiver, type LangfuseReceiver } from '../helpers/langfuse-receiver.js';
import type { DecodedSpan } from '../helpers/otlp-decode.js';

/** Spans made by the real OTel SDK, with every attribute type OTLP knows. */
async function sampleSpans(): Promise<ReadableSpan[]> {
  const memory = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(memory)] });
  const tracer = provider.getTracer('asp-runner');
  const root = tracer.startSpan('root', { startTime: new Date('2026-08-01T10:00:00.000Z'), attributes: { 'a.string': 'text', 'a.bool': true, 'a.int': 42, 'a.double': 1.5, 'a.list': ['x', 'y'] } });
  root.setStatus({ code: SpanStatusCode.ERROR, message: 'it failed' });
  root.end(new Date('2026-08-01T10:00:02.500Z'));
  await provider.forceFlush();
  return memory.getFinishedSpans();
}

describe('the local Langfuse receiver', () => {
  let receiver: LangfuseReceiver;
  const auth = () => `Basic ${Buffer.from(`${receiver.publicKey}:${receiver.secretKey}`).toString('base64')}`;
  beforeAll(async () => {
    receiver = await startLangfuseReceiver();
  });
  afterAll(async () => {
    await receiver.close();
  });

  it('decodes OTLP protobuf and gzipped OTLP JSON of the same spans to the same result', async () => {
    const spans = await sampleSpans();
    const post = (body: Uint8Array, headers: Record<string, string>) => fetch(`${receiver.url}/api/public/otel/v1/traces`, { method: 'POST', headers: { Authorization: auth(), ...headers }, body });
    expect((await post(ProtobufTraceSerializer.serializeRequest(spans) as Uint8Array, { 'Content-Type': 'application/x-protobuf' })).status).toBe(200);
    expect((await post(gzipSync(JsonTraceSerializer.serializeRequest(spans) as Uint8Array), { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' })).status).toBe(200);
    const [fromProtobuf, fromJson] = receiver.spans;
    expect(fromProtobuf).toEqual(fromJson);
    expect(fromProtobuf).toMatchObject({
      traceId: spans[0]?.spanContext().traceId,
      spanId: spans[0]?.spanContext().spanId,
      parentSpanId: null,
      name: 'root',
      scope: 'asp-runner',
      startMs: Date.parse('2026-08-01T10:00:00.000Z'),
      endMs: Date.parse('2026-08-01T10:00:02.500Z'),
      attributes: { 'a.string': 'text', 'a.bool': true, 'a.int': 42, 'a.double': 1.5, 'a.list': ['x', 'y'] },
      status: { code: 2, message: 'it failed' },
    });
  });

  it("reads a generation's attributes under the names the Langfuse SDK writes and its server reads", () => {
    expect(GENERATION_ATTRIBUTES).toEqual({
      model: LangfuseOtelSpanAttributes.OBSERVATION_MODEL,
      modelParameters: LangfuseOtelSpanAttributes.OBSERVATION_MODEL_PARAMETERS,
      completionStartTime: LangfuseOtelSpanAttributes.OBSERVATION_COMPLETION_START_TIME,
      usageDetails: LangfuseOtelSpanAttributes.OBSERVATION_USAGE_DETAILS,
      costDetails: LangfuseOtelSpanAttributes.OBSERVATION_COST_DETAILS,
    });
    const span = (attributes: Record<string, unknown>): DecodedSpan => ({
      traceId: 'a'.repeat(32),
      spanId: 'b'.repeat(16),
      parentSpanId: null,
      name: 'g',
      scope: 's',
      startMs: 0,
      endMs: 0,
      status: { code: 0 },
      attributes: { 'langfuse.observation.type': 'generation', ...attributes },
    });
    expect(
      receivedGeneration(span({ 'langfuse.observation.completion_start_time': JSON.stringify('2026-08-01T10:00:00.000Z'), 'langfuse.observation.usage_details': '{"input":1,"total":1}' })),
    ).toEqual({
      completionStartTime: '2026-08-01T10:00:00.000Z',
      usageDetails: { input: 1, total: 1 },
    });
    // What Langfuse could not read is an error, not an absent field.
    expect(() => receivedGeneration(span({ 'langfuse.observation.completion_start_time': '2026-08-01T10:00:00.000Z' }))).toThrow(/not JSON/);
    expect(() => receivedGeneration(span({ 'langfuse.observation.cost_details': '{"total":"cheap"}' }))).toThrow(/cost details/);
    expect(() => receivedGeneration(span({ 'langfuse.observation.type': 'span' }))).toThrow(/not a generation/);
  });

  it('refuses a wrong key pair with 401 and records nothing as delivered', async () => {
    receiver.reset();
    const response = await fetch(`${receiver.url}/api/public/scores`, {
      method: 'POST',
      headers: { Authorization: `Basic ${Buffer.from('pk:wrong').toString('base64')}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'probe_accuracy', value: 1 }),
    });
    expect(response.status).toBe(401);
    expect(receiver.scores).toEqual([]);
    expect(receiver.requests).toEqual([expect.objectContaining({ path: '/api/public/scores', status: 401 })]);
  });

  it('goes down and comes back on the same port', async () => {
    const url = receiver.url;
    await receiver.setMode('down');
    await expect(fetch(`${url}/_receiver/stats`)).rejects.toThrow();
    await receiver.setMode('ok');
    expect((await fetch(`${url}/_receiver/stats`)).status).toBe(200);
  });
});
