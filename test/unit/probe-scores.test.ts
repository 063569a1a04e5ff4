import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readProbeInputs } from '../../src/tracing/probe-inputs.js';
import { addUsageGenerations, probeScores } from '../../src/tracing/probe-scores.js';
import { childIdFor } from '../../src/tracing/trace-model.js';
import { traceFixture } from '../helpers/trace-fixtures.js';

function artifacts(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-probe-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content);
  return dir;
}

const byName = (scores: Array<{ name: string }>) => Object.fromEntries(scores.map((score) => [score.name, score]));

describe('PROBE scores', () => {
  it('takes accuracy from test_results.json, quality from code_review.json, cost from generations, latency from the run', async () => {
    const document = await traceFixture();
    const inputs = await readProbeInputs(artifacts({ 'test_results.json': JSON.stringify({ passed: 2, failed: 1, total: 3 }), 'code_review.json': JSON.stringify({ score: 0.85, issues: [] }) }));
    const scores = byName(probeScores(document, inputs, { plannedSteps: 3 }));
    expect(scores.probe_accuracy).toMatchObject({ value: 0.666667, comment: '2/3 tests passed (.asp/test_results.json)', dataType: 'NUMERIC' });
    expect(scores.probe_quality_score).toMatchObject({ value: 0.85 });
    // Two generations in the fixture: 0.0125 + 0.0075.
    expect(scores.probe_cost_usd).toMatchObject({ value: 0.02 });
    expect(scores.probe_latency_ms).toMatchObject({ value: (document.trace.output as { durationMs: number }).durationMs });
    expect(Object.keys(scores).sort()).toEqual(['probe_accuracy', 'probe_cost_usd', 'probe_latency_ms', 'probe_quality_score']);
  });

  it('derives score ids from the trace id, so a re-push overwrites', async () => {
    const document = await traceFixture();
    const scores = probeScores(document, { usage: [], review: { score: 1 } });
    expect(scores.map((score) => score.id)).toEqual(scores.map((score) => childIdFor(document.trace.id, `score:${score.name}`)));
    expect(scores.every((score) => score.traceId === document.trace.id)).toBe(true);
  });

  it('falls back to passed steps ÷ planned steps, counting steps that never ran as not passed', async () => {
    const document = await traceFixture({ steps: [{ name: 'build' }, { name: 'test', exitCode: 2 }] });
    const scores = byName(probeScores(document, await readProbeInputs(artifacts({})), { plannedSteps: 4 }));
    expect(scores.probe_accuracy).toMatchObject({ value: 0.25, comment: '1/4 steps passed' });
  });

  it('falls back to steps, and says why, when test_results.json is broken or counts no tests', async () => {
    const document = await traceFixture({ steps: [{ name: 'a' }, { name: 'b' }] });
    const broken = byName(probeScores(document, await readProbeInputs(artifacts({ 'test_results.json': '{"passed": 5, "total": 3}' }))));
    expect(broken.probe_accuracy).toMatchObject({ value: 1, comment: expect.stringMatching(/^2\/2 steps passed \(test_results.json: .*passed is more than total\)$/) });
    const empty = byName(probeScores(document, await readProbeInputs(artifacts({ 'test_results.json': '{"passed": 0, "total": 0}' }))));
    expect(empty.probe_accuracy).toMatchObject({ value: 1, comment: '2/2 steps passed (.asp/test_results.json counts no tests)' });
    const notJson = await readProbeInputs(artifacts({ 'test_results.json': 'PASS' }));
    expect(notJson.testsProblem).toBe('test_results.json is not JSON');
  });

  it('scores 0 accuracy when nothing ran', async () => {
    const document = await traceFixture({ steps: [] });
    expect(byName(probeScores(document, { usage: [] })).probe_accuracy).toMatchObject({ value: 0, comment: 'no steps ran' });
  });

  it('leaves out the quality score when there is no review, or its score is not in 0..1', async () => {
    const document = await traceFixture();
    expect(byName(probeScores(document, await readProbeInputs(artifacts({}))))).not.toHaveProperty('probe_quality_score');
    const outOfRange = await readProbeInputs(artifacts({ 'code_review.json': '{"score": 7}' }));
    expect(outOfRange.review).toBeUndefined();
    expect(byName(probeScores(document, outOfRange))).not.toHaveProperty('probe_quality_score');
  });

  it('turns .asp/usage.json into generations under their step and adds their cost', async () => {
    const document = await traceFixture({ steps: [{ name: 'agent', durationMs: 500 }] });
    const inputs = await readProbeInputs(
      artifacts({
        'usage.json': JSON.stringify([
          { step: 'agent', model: 'claude-test', usage: { input: 5000, output: 700 }, costUsd: 0.042 },
          { model: 'gpt-test', costUsd: 0.008 },
        ]),
      }),
    );
    addUsageGenerations(document, inputs.usage);
    const generations = document.observations.filter((observation) => observation.type === 'GENERATION');
    const step = document.observations.find((observation) => observation.name === 'agent');
    expect(generations).toEqual([
      expect.objectContaining({ name: 'agent:claude-test', parentObservationId: step?.id, model: 'claude-test', usageDetails: { input: 5000, output: 700 }, costDetails: { total: 0.042 } }),
      expect.objectContaining({ name: 'task:gpt-test', parentObservationId: childIdFor(document.trace.id, 'root'), costDetails: { total: 0.008 } }),
    ]);
    expect(byName(probeScores(document, inputs)).probe_cost_usd).toMatchObject({ value: 0.05, comment: 'sum of the cost of 2 generation(s) in USD' });
  });

  it('ignores an oversized or malformed usage.json and says why', async () => {
    const big = await readProbeInputs(artifacts({ 'usage.json': JSON.stringify({ pad: 'x'.repeat(1024 * 1024) }) }));
    expect(big).toMatchObject({ usage: [], usageProblem: expect.stringMatching(/larger than/) });
    const bad = await readProbeInputs(artifacts({ 'usage.json': '{"costUsd": -1}' }));
    expect(bad).toMatchObject({ usage: [], usageProblem: expect.stringMatching(/^usage.json: /) });
  });
});
