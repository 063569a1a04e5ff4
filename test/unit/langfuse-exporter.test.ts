import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ExportFailure } from '../../src/tracing/export-failure.js';
import { exportToLangfuse } from '../../src/tracing/langfuse-exporter.js';
import { TRUNCATION_MARKER } from '../../src/tracing/otlp-json-exporter.js';
import { probeScores } from '../../src/tracing/probe-scores.js';
import type { TraceDocument } from '../../src/tracing/trace-model.js';
import { useLangfuseReceiver } from '../helpers/langfuse-receiver.js';
import { largeTraceFixture, traceFixture } from '../helpers/trace-fixtures.js';

const SEED_METADATA = ['task_id', 'target_repo', 'target_branch', 'workspace_path', 'pr_url', 'hitl_required', 'hitl_status'];

async function scoredFixture(options: Parameters<typeof traceFixture>[0] = {}): Promise<TraceDocument> {
  const document = await traceFixture(options);
  document.scores = probeScores(document, { tests: { passed: 3, total: 3 }, review: { score: 0.9 }, usage: [] }, { plannedSteps: 3 });
  return document;
}

describe('Langfuse exporter', () => {
  const receiver = useLangfuseReceiver();

  it('sends one span per observation, with the trace id and observation ids of the document', async () => {
    const document = await scoredFixture();
    const receipt = await exportToLangfuse(document, receiver.target);
    expect(receipt).toMatchObject({ traceId: document.trace.id, spans: document.observations.length, scores: 4, url: `${receiver.url}/trace/${document.trace.id}` });
    expect(receiver.spans).toHaveLength(document.observations.length);
    expect(new Set(receiver.spans.map((span) => span.traceId))).toEqual(new Set([document.trace.id]));
    const sent = Object.fromEntries(receiver.spans.map((span) => [span.spanId, span]));
    for (const observation of document.observations) {
      expect(sent[observation.id], observation.name).toMatchObject({ name: observation.name, parentSpanId: observation.parentObservationId, scope: 'asp-runner' });
      expect(sent[observation.id]?.startMs).toBe(Date.parse(observation.startTime));
    }
    // It went out as OTLP JSON (gzipped, which Langfuse takes), with Basic auth, on the OTel route.
    expect(receiver.requests.filter((request) => request.path === '/api/public/otel/v1/traces')).toEqual([
      expect.objectContaining({ status: 200, contentType: 'application/json', contentEncoding: 'gzip' }),
    ]);
  });

  it('puts the seed metadata on every span as strings of at most 200 characters', async () => {
    const document = await scoredFixture();
    await exportToLangfuse(document, receiver.target);
    for (const span of receiver.spans) {
      expect(span.attributes['langfuse.trace.name']).toBe('task-fixture');
      for (const key of SEED_METADATA) {
        const value = span.attributes[`langfuse.trace.metadata.${key}`];
        expect(typeof value, key).toBe('string');
        expect((value as string).length).toBeLessThanOrEqual(200);
      }
    }
    const root = receiver.spans.find((span) => span.parentSpanId === null);
    expect(root?.attributes).toMatchObject({
      'langfuse.trace.metadata.task_id': 'task-fixture',
      'langfuse.trace.metadata.target_branch': 'main',
      'langfuse.trace.metadata.hitl_required': 'false',
      'langfuse.trace.metadata.hitl_status': 'not_required',
      'langfuse.trace.metadata.pr_url': 'none',
      'langfuse.trace.metadata.exit_status': 'passed',
      'langfuse.trace.input': JSON.stringify({ task: 'fix the auth bug' }),
    });
  });

  it('marks only the top span as the root of the trace', async () => {
    await exportToLangfuse(await scoredFixture(), receiver.target);
    const roots = receiver.spans.filter((span) => span.attributes['langfuse.internal.is_app_root'] === true);
    expect(roots.map((span) => span.parentSpanId)).toEqual([null]);
  });

  it('sends a span per step with input, output, exit code, and level ERROR on failure', async () => {
    const document = await scoredFixture({
      steps: [
        { name: 'plan', durationMs: 200, output: 'planned\n' },
        { name: 'test', exitCode: 3, durationMs: 900, output: 'about to fail\n' },
      ],
    });
    await exportToLangfuse(document, receiver.target);
    const steps = receiver.spans.filter((span) => span.attributes['langfuse.observation.metadata.kind'] === 'step');
    expect(steps.map((span) => span.name).sort()).toEqual(['plan', 'test']);
    const failed = steps.find((span) => span.name === 'test');
    expect(failed?.attributes).toMatchObject({
      'langfuse.observation.type': 'tool',
      'langfuse.observation.level': 'ERROR',
      'langfuse.observation.status_message': 'exit code 3',
      'langfuse.observation.metadata.exitCode': '3',
      'langfuse.observation.input': JSON.stringify({ command: 'node tools/test.js' }),
    });
    expect(JSON.parse(failed?.attributes['langfuse.observation.output'] as string)).toEqual({ exitCode: 3, tail: 'about to fail\n' });
    expect(failed?.status.code).toBe(2);
    expect((failed?.endMs ?? 0) - (failed?.startMs ?? 0)).toBe(900);
    expect(steps.find((span) => span.name === 'plan')?.attributes['langfuse.observation.level']).toBe('DEFAULT');
  });

  it('sends generations with usage_details and cost_details as JSON', async () => {
    await exportToLangfuse(await scoredFixture(), receiver.target);
    const generation = receiver.spans.find((span) => span.name === 'plan:gpt-test');
    expect(generation?.attributes).toMatchObject({ 'langfuse.observation.type': 'generation', 'langfuse.observation.model.name': 'gpt-test' });
    expect(JSON.parse(generation?.attributes['langfuse.observation.usage_details'] as string)).toEqual({ input: 1200, output: 300, total: 1500 });
    expect(JSON.parse(generation?.attributes['langfuse.observation.cost_details'] as string)).toEqual({ total: 0.0125 });
  });

  it('sends the four PROBE scores to /api/public/scores with ids derived from the trace', async () => {
    const document = await scoredFixture();
    await exportToLangfuse(document, receiver.target);
    expect(receiver.scores.map((score) => score.name).sort()).toEqual(['probe_accuracy', 'probe_cost_usd', 'probe_latency_ms', 'probe_quality_score']);
    for (const score of receiver.scores) {
      const local = document.scores.find((candidate) => candidate.name === score.name);
      expect(score).toMatchObject({ id: local?.id, traceId: document.trace.id, value: local?.value, dataType: 'NUMERIC' });
    }
  });

  it('sends the same ids again on a re-push, so Langfuse overwrites instead of duplicating', async () => {
    const document = await scoredFixture();
    await exportToLangfuse(document, receiver.target);
    const first = { spans: receiver.spans.map((span) => `${span.traceId}/${span.spanId}`).sort(), scores: receiver.scores.map((score) => score.id).sort() };
    receiver.reset();
    await exportToLangfuse(structuredClone(document), receiver.target);
    expect(receiver.spans.map((span) => `${span.traceId}/${span.spanId}`).sort()).toEqual(first.spans);
    expect(receiver.scores.map((score) => score.id).sort()).toEqual(first.scores);
    expect(new Set(first.spans).size).toBe(document.observations.length);
  });

  it('caps long input and output, saying how much was left out', async () => {
    const document = await scoredFixture();
    (document.trace.input as { task: string }).task = 'x'.repeat(100_000);
    const root = document.observations.find((observation) => observation.parentObservationId === null);
    if (root) root.input = { task: 'y'.repeat(100_000) };
    await exportToLangfuse(document, receiver.target);
    const sent = receiver.spans.find((span) => span.parentSpanId === null)?.attributes ?? {};
    for (const key of ['langfuse.trace.input', 'langfuse.observation.input']) {
      const value = sent[key] as string;
      expect(value.length).toBeLessThan(33 * 1024);
      expect(value).toMatch(/…\[asp: \d+ more characters in the local JSON\]$/);
    }
  });

  it('delivers every span of a trace larger than the span processor queue (no silent drops)', async () => {
    const document = await largeTraceFixture(4500);
    const receipt = await exportToLangfuse(document, receiver.target, { budgetMs: 30_000 });
    expect(receipt.spans).toBe(document.observations.length);
    expect(new Set(receiver.spans.map((span) => span.spanId)).size).toBe(document.observations.length);
    expect(receipt.requests).toBeGreaterThan(1);
  });

  it('splits a batch the server finds too large (413) and cuts a single oversized span with a marker', async () => {
    const document = await scoredFixture();
    const big = document.observations.find((observation) => observation.name === 'test');
    // Random text: requests are gzipped, and only what does not compress can be too large.
    if (big) big.output = { exitCode: 0, tail: randomBytes(45_000).toString('base64') };
    receiver.maxBodyBytes = 20_000;
    const receipt = await exportToLangfuse(document, receiver.target);
    expect(receipt.truncatedSpans).toBe(1);
    expect(new Set(receiver.spans.map((span) => span.spanId))).toEqual(new Set(document.observations.map((observation) => observation.id)));
    const cut = receiver.spans.find((span) => span.name === 'test');
    expect(cut?.attributes['asp.truncated']).toBe(true);
    expect(cut?.attributes['langfuse.observation.output']).toContain(TRUNCATION_MARKER);
    expect(receiver.requests.some((request) => request.status === 413)).toBe(true);
  });

  it('fails at once with the reason when nothing listens', async () => {
    await receiver.setMode('down');
    const started = Date.now();
    const failure = await exportToLangfuse(await scoredFixture(), receiver.target).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ExportFailure);
    // ECONNREFUSED, or "other side closed" when a kept-alive connection to the server that just went away is reused.
    expect(failure).toMatchObject({
      kind: 'unreachable',
      message: expect.stringMatching(new RegExp(`^cannot reach Langfuse at ${receiver.url}/api/public/otel/v1/traces \\((connect ECONNREFUSED|other side closed)`)),
    });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it.each([
    ['500', 'http', /HTTP 500/],
    ['401', 'auth', /refused the keys.*HTTP 401.*LANGFUSE_PUBLIC_KEY/],
  ] as const)('fails with the reason when the server answers %s, and nothing counts as delivered', async (mode, kind, message) => {
    await receiver.setMode(mode);
    const failure = await exportToLangfuse(await scoredFixture(), receiver.target).catch((error: unknown) => error);
    expect(failure).toMatchObject({ kind, message: expect.stringMatching(message) });
    expect(receiver.spans).toEqual([]);
    expect(receiver.scores).toEqual([]);
  });

  it('gives up on a server that sleeps 30 s within the default 5 s budget, and leaves no request open', async () => {
    await receiver.setMode('slow');
    const started = Date.now();
    const failure = await exportToLangfuse(await scoredFixture(), receiver.target).catch((error: unknown) => error);
    const elapsed = Date.now() - started;
    expect(failure).toMatchObject({ kind: 'timeout', message: expect.stringMatching(/did not take the trace within 5.0s/) });
    expect(elapsed).toBeGreaterThanOrEqual(4900);
    expect(elapsed).toBeLessThan(6000);
    // The request the exporter gave up on was abandoned, not answered later behind its back.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(receiver.requests.map((request) => request.status)).toEqual(['abandoned']);
    expect(receiver.spans).toEqual([]);
  });

  it('stops at once when interrupted', async () => {
    await receiver.setMode('slow');
    const interrupt = new AbortController();
    setTimeout(() => interrupt.abort(), 200);
    const started = Date.now();
    const failure = await exportToLangfuse(await scoredFixture(), receiver.target, { signal: interrupt.signal }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ kind: 'interrupted' });
    expect(Date.now() - started).toBeLessThan(1500);
  });
});
