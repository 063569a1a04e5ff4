import { valueAt } from '../core/record-guard.js';
import type { ProbeInputs, UsageEntry } from './probe-inputs.js';
import { childIdFor, type Observation, type Score, type TraceDocument } from './trace-model.js';

/**
 * PROBE scores, computed on every trace (formulas in the README, "Traces"). They are plain functions of the
 * trace and of the artifacts the steps wrote, so a trace read back from disk scores the same as the live run.
 */
export const PROBE_SCORES = [
  'probe_accuracy',
  'probe_latency_ms',
  'probe_cost_usd',
  'probe_quality_score',
  'probe_complexity',
  'probe_estimate_latency_ms',
  'probe_estimate_tokens',
  'probe_estimate_cost_usd',
] as const;
export type ProbeScoreName = (typeof PROBE_SCORES)[number];

export function probeScores(document: TraceDocument, inputs: ProbeInputs, options: { plannedSteps?: number | undefined } = {}): Score[] {
  const score = (name: ProbeScoreName, value: number, comment: string) => probeScore(document, name, value, comment);
  const scores = [score('probe_accuracy', ...accuracy(document, inputs, options.plannedSteps ?? 0)), score('probe_latency_ms', ...latency(document)), score('probe_cost_usd', ...cost(document))];
  // No review, no quality score: a made-up number would skew every average taken over it in Langfuse.
  if (inputs.review) scores.push(score('probe_quality_score', inputs.review.score, 'score of .asp/code_review.json'));
  // The x of the PROBE model (probe-model.ts): kept on the trace so the store can be fitted from traces alone.
  if (inputs.complexity !== undefined) scores.push(score('probe_complexity', inputs.complexity, 'complexity estimated at planning (.asp/planning.json)'));
  return scores;
}

export function probeScore(document: TraceDocument, name: ProbeScoreName, value: number, comment: string): Score {
  const traceId = document.trace.id;
  // Derived from the trace id, so a re-push overwrites the score instead of adding a second one.
  return { id: childIdFor(traceId, `score:${name}`), traceId, name, value, dataType: 'NUMERIC', comment };
}

function accuracy(document: TraceDocument, inputs: ProbeInputs, plannedSteps: number): [number, string] {
  if (inputs.tests && inputs.tests.total > 0) {
    const source = inputs.testsSource === 'reports' ? "the steps' JUnit/TAP reports" : '.asp/test_results.json';
    return [round(inputs.tests.passed / inputs.tests.total), `${inputs.tests.passed}/${inputs.tests.total} tests passed (${source})`];
  }
  const why = inputs.tests ? '.asp/test_results.json counts no tests' : inputs.testsProblem;
  const steps = document.observations.filter((observation) => observation.metadata.kind === 'step');
  // Steps that never started (after a failure) count as not passed: the denominator is the plan, not what ran.
  const total = Math.max(plannedSteps, steps.length);
  const passed = steps.filter((step) => step.level !== 'ERROR' && step.endTime !== null && step.metadata.exitCode === 0).length;
  const from = total === 0 ? 'no steps ran' : `${passed}/${total} steps passed`;
  return [total === 0 ? 0 : round(passed / total), why ? `${from} (${why})` : from];
}

function latency(document: TraceDocument): [number, string] {
  const durationMs = valueAt(document.trace.output, 'durationMs');
  if (typeof durationMs === 'number') return [Math.round(durationMs), 'task wall time in ms, start to cleanup'];
  const root = document.observations.find((observation) => observation.parentObservationId === null);
  const ms = root?.endTime ? Date.parse(root.endTime) - Date.parse(root.startTime) : 0;
  return [Math.max(0, ms), 'task wall time in ms, from the root span'];
}

function cost(document: TraceDocument): [number, string] {
  const generations = document.observations.filter((observation) => observation.type === 'GENERATION');
  const priced = generations.filter((generation) => generation.costDetails && Object.keys(generation.costDetails).length > 0);
  const total = priced.reduce((sum, generation) => sum + generationCost(generation), 0);
  const comment = priced.length ? `sum of the cost of ${priced.length} generation(s) in USD` : 'no generation reported a cost';
  return [round(total), comment];
}

/** Langfuse's own convention: `total` when given, else the sum of the parts. */
export function generationCost(generation: Observation): number {
  const details = generation.costDetails ?? {};
  if (typeof details.total === 'number') return details.total;
  return Object.values(details).reduce((sum, value) => sum + value, 0);
}

export const USAGE_FILE_SOURCE = '.asp/usage.json';

/**
 * `.asp/usage.json` entries become generations under their step (or the root), so Langfuse shows their tokens and
 * cost like those of a `generation` protocol event; ids are derived from the trace so a re-push overwrites them.
 */
export function addUsageGenerations(document: TraceDocument, entries: UsageEntry[]): void {
  const root = document.observations.find((observation) => observation.parentObservationId === null);
  const at = root?.endTime ?? document.trace.timestamp;
  entries.forEach((entry, index) => {
    const step = entry.step ? document.observations.find((observation) => observation.metadata.kind === 'step' && observation.name === entry.step) : undefined;
    const model = entry.model ?? 'unknown';
    document.observations.push({
      id: childIdFor(document.trace.id, `usage-file:${index}`),
      traceId: document.trace.id,
      parentObservationId: step?.id ?? root?.id ?? null,
      type: 'GENERATION',
      name: `${entry.step ?? 'task'}:${model}`,
      startTime: step?.startTime ?? at,
      endTime: step?.endTime ?? at,
      level: 'DEFAULT',
      statusMessage: null,
      input: null,
      output: null,
      metadata: { source: USAGE_FILE_SOURCE, ...(entry.step ? { step: entry.step } : {}) },
      model,
      usageDetails: entry.usage ?? {},
      ...(entry.costUsd !== undefined ? { costDetails: { total: entry.costUsd } } : {}),
    });
  });
}

/** Six decimals: enough for fractions of a cent, and stable in JSON. */
function round(value: number): number {
  return Math.round(value * 1e6) / 1e6;
}

/** What a task's model calls cost in USD: its probe_cost_usd score once scored, else the sum over its generations. */
export function traceCostUsd(document: TraceDocument): number {
  return document.scores.find((entry) => entry.name === 'probe_cost_usd')?.value ?? cost(document)[0];
}
