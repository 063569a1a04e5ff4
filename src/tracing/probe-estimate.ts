import { estimate, fitProbeModel, sampleOf, type LinearFit, type ProbeFit, type ProbeModel, type ProbeSample } from './probe-model.js';
import { probeScore } from './probe-scores.js';
import type { Score, TraceDocument } from './trace-model.js';
import type { TraceStore } from './trace-store.js';

/**
 * The model is refitted from the store at every publish: bounded to the newest traces, so a store of thousands
 * costs a run no more than a few hundred file reads.
 */
export const PROBE_MAX_TRACES = 500;

export interface LoadedProbeFit {
  fit: ProbeFit;
  /** Files of the store that could not be read: left out, never in the way. */
  damaged: number;
}

/** Fits the PROBE model over the newest traces of the store; `excludeTask` keeps a task from estimating itself. */
export async function loadProbeFit(store: TraceStore, options: { excludeTask?: string | undefined; limit?: number } = {}): Promise<LoadedProbeFit> {
  const entries = await store.recent(options.limit ?? PROBE_MAX_TRACES);
  const samples: ProbeSample[] = [];
  let damaged = 0;
  for (const entry of entries) {
    if (!entry.document) {
      damaged += 1;
      continue;
    }
    const sample = sampleOf(entry.document);
    if (sample && sample.taskId !== options.excludeTask) samples.push(sample);
  }
  return { fit: fitProbeModel(samples), damaged };
}

/** Estimate-vs-actual scores: what the model expected of a task of this complexity (the actuals are probe_latency_ms and friends). */
export function estimateScores(document: TraceDocument, model: ProbeModel, complexity: number): Score[] {
  const expected = estimate(model, complexity);
  const from = (fit: LinearFit) => `estimate for complexity ${complexity}: ${formatLine(fit)} (n=${model.n}, ${formatAccuracy(fit)})`;
  return [
    probeScore(document, 'probe_estimate_latency_ms', expected.latency_ms, from(model.fits.latency_ms)),
    probeScore(document, 'probe_estimate_tokens', expected.tokens, from(model.fits.tokens)),
    probeScore(document, 'probe_estimate_cost_usd', expected.cost_usd, from(model.fits.cost_usd)),
  ];
}

export function formatLine(fit: Pick<LinearFit, 'intercept' | 'slope'>): string {
  const slope = fit.slope < 0 ? `- ${significant(-fit.slope)}` : `+ ${significant(fit.slope)}`;
  return `${significant(fit.intercept)} ${slope} × complexity`;
}

export function formatAccuracy(fit: Pick<LinearFit, 'r2' | 'mape'>): string {
  return `R² ${formatR2(fit.r2)}, MAPE ${formatMape(fit.mape)}`;
}

export function formatR2(r2: number | null): string {
  return r2 === null ? 'n/a' : r2.toFixed(3);
}

export function formatMape(mape: number | null): string {
  return mape === null ? 'n/a' : `${(mape * 100).toFixed(1)}%`;
}

function significant(value: number): string {
  // Float noise of an exact fit (an intercept of 2e-14) reads as 0, not as a tiny number.
  return String(Math.abs(value) < 1e-12 ? 0 : Number(value.toPrecision(4)));
}
