import { valueAt } from '../core/record-guard.js';
import { generationCost } from './probe-scores.js';
import type { TraceDocument } from './trace-model.js';

/**
 * The PROBE model: ordinary least squares of each target (latency, tokens, cost) on the planning agent's
 * complexity estimate, fitted over the finished traces of the store. Pure functions: the store is read elsewhere.
 */
export const PROBE_MIN_SAMPLES = 10;
export const PROBE_TARGETS = ['latency_ms', 'tokens', 'cost_usd'] as const;
export type ProbeTarget = (typeof PROBE_TARGETS)[number];
export type ProbeActuals = Record<ProbeTarget, number>;

/** The score the planning agent's complexity is recorded as (see probe-scores.ts). */
export const COMPLEXITY_SCORE = 'probe_complexity';

export interface ProbeSample extends ProbeActuals {
  taskId: string;
  complexity: number;
}

/** y = intercept + slope × complexity, and how well that fits the samples it came from. */
export interface LinearFit {
  intercept: number;
  slope: number;
  /** 1 − SSres/SStot; null when every sample has the same value (there is no variance to explain). */
  r2: number | null;
  /** Mean of |actual − estimate| / |actual|, as a fraction, over the samples whose actual is not 0; null when none is. */
  mape: number | null;
}

export interface ProbeModel {
  n: number;
  fits: Record<ProbeTarget, LinearFit>;
}

export type ProbeFit = { status: 'ready'; model: ProbeModel } | { status: 'insufficient'; n: number; needed: number };

/**
 * What a trace contributes: its complexity and its actuals, when the task ran to its end (passed or failed).
 * Interrupted, timed-out and errored runs are left out: their latency and cost say when they were stopped, not
 * what the task took.
 */
export function sampleOf(document: TraceDocument): ProbeSample | undefined {
  const status = document.trace.metadata.exit_status;
  if (status !== 'passed' && status !== 'failed') return undefined;
  const complexity = document.scores.find((score) => score.name === COMPLEXITY_SCORE)?.value;
  if (complexity === undefined || !Number.isFinite(complexity) || complexity <= 0) return undefined;
  const actuals = actualsOf(document);
  if (actuals === undefined) return undefined;
  return { taskId: document.trace.name, complexity, ...actuals };
}

/** Latency as probe_latency_ms takes it, tokens and cost summed over the generations; undefined for an unfinished run. */
export function actualsOf(document: TraceDocument): ProbeActuals | undefined {
  const durationMs = valueAt(document.trace.output, 'durationMs');
  if (typeof durationMs !== 'number') return undefined;
  const generations = document.observations.filter((observation) => observation.type === 'GENERATION');
  const tokens = generations.reduce((sum, generation) => sum + tokensOf(generation.usageDetails ?? {}), 0);
  const cost = generations.reduce((sum, generation) => sum + generationCost(generation), 0);
  return { latency_ms: Math.round(durationMs), tokens, cost_usd: cost };
}

/** `total` when given, else input + output: other keys (cached, reasoning) are parts of those, not more tokens. */
function tokensOf(usage: Record<string, number>): number {
  if (typeof usage.total === 'number') return usage.total;
  return (usage.input ?? 0) + (usage.output ?? 0);
}

export function fitProbeModel(samples: ProbeSample[]): ProbeFit {
  if (samples.length < PROBE_MIN_SAMPLES) return { status: 'insufficient', n: samples.length, needed: PROBE_MIN_SAMPLES - samples.length };
  const xs = samples.map((sample) => sample.complexity);
  const fitOf = (target: ProbeTarget) =>
    fitLine(
      xs,
      samples.map((sample) => sample[target]),
    );
  const fits: Record<ProbeTarget, LinearFit> = { latency_ms: fitOf('latency_ms'), tokens: fitOf('tokens'), cost_usd: fitOf('cost_usd') };
  return { status: 'ready', model: { n: samples.length, fits } };
}

export function fitLine(xs: number[], ys: number[]): LinearFit {
  if (xs.length !== ys.length || xs.length === 0) throw new RangeError(`fitLine needs as many x as y, and at least one (${xs.length} x, ${ys.length} y)`);
  const n = xs.length;
  const points = xs.map((x, index) => ({ x, y: ys[index] ?? Number.NaN })); // never NaN: the lengths are equal
  const meanX = sum(xs) / n;
  const meanY = sum(ys) / n;
  const sxx = sum(xs.map((x) => (x - meanX) ** 2));
  const sxy = sum(points.map(({ x, y }) => (x - meanX) * (y - meanY)));
  // Every task estimated alike: no slope can be told, so the estimate is the mean.
  const slope = sxx === 0 ? 0 : sxy / sxx;
  const intercept = meanY - slope * meanX;
  const line = { intercept, slope };
  const ssTot = sum(ys.map((y) => (y - meanY) ** 2));
  const ssRes = sum(points.map(({ x, y }) => (y - (intercept + slope * x)) ** 2));
  const errors = points.flatMap(({ x, y }) => (y === 0 ? [] : [Math.abs(y - predict(line, x)) / Math.abs(y)]));
  return { intercept, slope, r2: ssTot === 0 ? null : 1 - ssRes / ssTot, mape: errors.length ? sum(errors) / errors.length : null };
}

/** The estimate as given: never below 0, since no task takes negative time, tokens or money. */
export function predict(fit: Pick<LinearFit, 'intercept' | 'slope'>, complexity: number): number {
  return Math.max(0, fit.intercept + fit.slope * complexity);
}

export function estimate(model: ProbeModel, complexity: number): ProbeActuals {
  return {
    latency_ms: Math.round(predict(model.fits.latency_ms, complexity)),
    tokens: Math.round(predict(model.fits.tokens, complexity)),
    cost_usd: Math.round(predict(model.fits.cost_usd, complexity) * 1e6) / 1e6,
  };
}

function sum(values: number[]): number {
  return values.reduce((total, value) => total + value, 0);
}
