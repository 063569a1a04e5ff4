import { describe, expect, it } from 'vitest';
import type { GatewayGeneration } from '../../src/core/records.js';
import { observationAttributes } from '../../src/tracing/langfuse-attributes.js';
import { exportToLangfuse } from '../../src/tracing/langfuse-exporter.js';
import type { Observation, TraceDocument } from '../../src/tracing/trace-model.js';
import { TraceRecorder } from '../../src/tracing/trace-recorder.js';
import { parseTraceDocument } from '../../src/tracing/trace-schema.js';
import { receivedGeneration, useLangfuseReceiver } from '../helpers/langfuse-receiver.js';
import { manualClock } from '../helpers/trace-fixtures.js';

const START = Date.parse('2026-08-01T10:00:00.000Z');

/** A gateway call as ModelGateway reports it: a streamed design call made inside the design review step. */
function designCall(overrides: Partial<GatewayGeneration> = {}): GatewayGeneration {
  return {
    step: 'design_review_agent',
    agent: 'design_agent',
    model: 'gpt-4o-mini',
    provider: 'openai',
    startTime: new Date(START + 1000),
    endTime: new Date(START + 3000),
    completionStartTime: new Date(START + 2500),
    usage: { input: 1000, cachedInput: 600, output: 1000, total: 2000 },
    costUsd: 0.00075,
    cost: { input: 0.00006, cachedInput: 0.00009, output: 0.0006, total: 0.00075 },
    modelParameters: { temperature: 0, max_tokens: 512 },
    status: 200,
    attempts: 1,
    input: [{ role: 'user', content: 'design it' }],
    output: '{"changes": []}',
    requestedModel: 'asp',
    ...overrides,
  };
}

function recorded(generations: GatewayGeneration[]): { document: TraceDocument; observations: Observation[]; text: string } {
  const clock = manualClock(START);
  const recorder = new TraceRecorder({ taskId: 'task-gen', runId: 'run-1', task: 't', repo: '/r', ref: undefined, workspacePath: '/w', limits: {} }, clock);
  recorder.onMessage({ type: 'step.start', step: 'design_review_agent', run: 'asp-agent design_review', timeoutMs: 60_000, at: clock.now().toISOString() });
  for (const generation of generations) recorder.addGeneration(generation);
  recorder.onMessage({ type: 'generation', step: 'design_review_agent', agent: 'design_review_agent', model: 'gpt-4o-mini', usage: { input: 5, output: 5, total: 10 } });
  clock.advance(5000);
  recorder.onMessage({ type: 'step.end', step: 'design_review_agent', exitCode: 0, durationMs: 5000 });
  const document = recorder.finish({ status: 'passed', exitCode: 0, durationMs: 5000 });
  return { document, observations: document.observations.filter((observation) => observation.type === 'GENERATION'), text: JSON.stringify(document) };
}

describe('generations in the trace', () => {
  it('are named after the agent that made them, keeping the step in metadata, else after step and model', () => {
    const { observations } = recorded([designCall(), designCall({ agent: undefined })]);
    expect(observations.map((observation) => observation.name)).toEqual(['design_agent', 'design_review_agent:gpt-4o-mini', 'design_review_agent']);
    expect(observations.map((observation) => observation.metadata.step)).toEqual(['design_review_agent', 'design_review_agent', 'design_review_agent']);
  });

  it("carry the request's model parameters, the completion start, and usage and cost under Langfuse's keys", () => {
    const [generation] = recorded([designCall()]).observations;
    expect(generation).toMatchObject({
      modelParameters: { temperature: 0, max_tokens: 512 },
      completionStartTime: '2026-08-01T10:00:02.500Z',
      usageDetails: { input: 400, input_cached_tokens: 600, output: 1000, total: 2000 },
      costDetails: { input: 0.00006, input_cached_tokens: 0.00009, output: 0.0006, total: 0.00075 },
    });
  });

  it('keep a total alone when only a total is known, and no parameters or completion start nobody gave', () => {
    const [generation] = recorded([designCall({ cost: undefined, modelParameters: undefined, completionStartTime: undefined, usage: { input: 10, output: 5, total: 15 } })]).observations;
    expect(generation?.usageDetails).toEqual({ input: 10, output: 5, total: 15 });
    expect(generation?.costDetails).toEqual({ total: 0.00075 });
    expect(generation).not.toHaveProperty('modelParameters');
    expect(generation).not.toHaveProperty('completionStartTime');
  });

  it('read back from trace.json, and a damaged completion start is refused', () => {
    const { text } = recorded([designCall()]);
    expect(parseTraceDocument(text).observations.find((observation) => observation.name === 'design_agent')).toMatchObject({
      completionStartTime: '2026-08-01T10:00:02.500Z',
      modelParameters: { max_tokens: 512 },
    });
    expect(() => parseTraceDocument(text.replace('2026-08-01T10:00:02.500Z', 'soon'))).toThrow(/completionStartTime/);
    expect(() => parseTraceDocument(text.replace('"max_tokens":512', '"max_tokens":{"a":1}'))).toThrow(/modelParameters/);
  });

  it('go to Langfuse as its generation attributes', () => {
    const [generation] = recorded([designCall()]).observations;
    if (!generation) throw new Error('no generation');
    const attributes = observationAttributes(generation);
    expect(attributes).toMatchObject({ 'langfuse.observation.type': 'generation', 'langfuse.observation.model.name': 'gpt-4o-mini' });
    expect(JSON.parse(attributes['langfuse.observation.model.parameters'] as string)).toEqual({ temperature: 0, max_tokens: 512 });
    expect(JSON.parse(attributes['langfuse.observation.completion_start_time'] as string)).toBe('2026-08-01T10:00:02.500Z');
    expect(JSON.parse(attributes['langfuse.observation.usage_details'] as string)).toEqual({ input: 400, input_cached_tokens: 600, output: 1000, total: 2000 });
    expect(JSON.parse(attributes['langfuse.observation.cost_details'] as string)).toEqual({ input: 0.00006, input_cached_tokens: 0.00009, output: 0.0006, total: 0.00075 });
  });
});

describe('generations exported to the local Langfuse receiver', () => {
  const receiver = useLangfuseReceiver();

  it("arrive with model parameters, completion start, usage and cost as Langfuse's attributes", async () => {
    const { document } = recorded([designCall(), designCall({ agent: undefined, completionStartTime: undefined, modelParameters: undefined })]);
    await exportToLangfuse(document, receiver.target);
    const design = receiver.spans.find((span) => span.name === 'design_agent');
    if (!design) throw new Error('the design_agent generation did not arrive');
    expect(receivedGeneration(design)).toEqual({
      model: 'gpt-4o-mini',
      modelParameters: { temperature: 0, max_tokens: 512 },
      completionStartTime: '2026-08-01T10:00:02.500Z',
      usageDetails: { input: 400, input_cached_tokens: 600, output: 1000, total: 2000 },
      costDetails: { input: 0.00006, input_cached_tokens: 0.00009, output: 0.0006, total: 0.00075 },
    });
    const unnamed = receiver.spans.find((span) => span.name === 'design_review_agent:gpt-4o-mini');
    if (!unnamed) throw new Error('the unnamed generation did not arrive');
    expect(unnamed.attributes['langfuse.observation.metadata.step']).toBe('design_review_agent');
    expect(receivedGeneration(unnamed)).not.toHaveProperty('modelParameters');
    expect(receivedGeneration(unnamed)).not.toHaveProperty('completionStartTime');
  });
});
