import { open } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { parseJsonWith } from '../config/task-spec.js';
import { errorMessage, systemErrorCode } from '../core/asp-error.js';

/** Artifacts are written by steps inside the sandbox: untrusted, so read with a size cap and checked. */
const ARTIFACT_MAX_BYTES = 1024 * 1024;
const USAGE_MAX_ENTRIES = 1000;

const testResultsSchema = z
  .looseObject({ passed: z.number().int().min(0), total: z.number().int().min(0) })
  .refine((results) => results.passed <= results.total, { message: 'passed is more than total' });
const reviewSchema = z.looseObject({ score: z.number().min(0).max(1) });
const usageEntrySchema = z.looseObject({
  step: z.string().max(200).optional(),
  model: z.string().max(200).optional(),
  usage: z.record(z.string(), z.number().min(0)).optional(),
  costUsd: z.number().min(0).optional(),
});
const usageFileSchema = z.union([usageEntrySchema, z.array(usageEntrySchema).max(USAGE_MAX_ENTRIES)]);
// The planning agent writes `complexity`; a hand-written plan may use the units' `estimated_complexity` name. A plan
// with neither is another pipeline's file, not a broken one.
const planningSchema = z.looseObject({ complexity: z.number().positive().finite().optional(), estimated_complexity: z.number().positive().finite().optional() });

export type UsageEntry = z.infer<typeof usageEntrySchema>;

/** What the PROBE scores are computed from, besides the trace itself. Each `*Problem` says why a file was not used. */
export interface ProbeInputs {
  tests?: { passed: number; total: number } | undefined;
  /** Where `tests` came from: test_results.json, or the JUnit/TAP reports when there was none. */
  testsSource?: 'test_results.json' | 'reports' | undefined;
  testsProblem?: string | undefined;
  review?: { score: number } | undefined;
  reviewProblem?: string | undefined;
  usage: UsageEntry[];
  usageProblem?: string | undefined;
  /** The planning agent's estimate (`.asp/planning.json`), the x of the PROBE model. */
  complexity?: number | undefined;
  complexityProblem?: string | undefined;
}

/**
 * `testsDir`: where test_results.json comes from, the check's own `.asp/` when the task had a clean-room check;
 * null when it had check steps that never ran: then the steps' own claim does not count either.
 */
export async function readProbeInputs(artifactsDir: string, testsDir: string | null = artifactsDir, reported?: { passed: number; total: number }): Promise<ProbeInputs> {
  const [tests, review, usage, planning] = await Promise.all([
    testsDir === null ? { value: undefined, problem: 'the clean-room check did not run' } : readArtifact(testsDir, 'test_results.json', testResultsSchema),
    readArtifact(artifactsDir, 'code_review.json', reviewSchema),
    readArtifact(artifactsDir, 'usage.json', usageFileSchema),
    readArtifact(artifactsDir, 'planning.json', planningSchema),
  ]);
  // The reports count only where test_results.json would have been read (not when a check that never ran decides).
  const fromReports = !tests.value && !tests.problem && testsDir !== null && reported && reported.total > 0 ? reported : undefined;
  return {
    tests: tests.value ? { passed: tests.value.passed, total: tests.value.total } : fromReports,
    testsSource: tests.value ? 'test_results.json' : fromReports ? 'reports' : undefined,
    testsProblem: tests.problem,
    review: review.value ? { score: review.value.score } : undefined,
    reviewProblem: review.problem,
    usage: usage.value === undefined ? [] : Array.isArray(usage.value) ? usage.value : [usage.value],
    usageProblem: usage.problem,
    complexity: planning.value ? (planning.value.complexity ?? planning.value.estimated_complexity) : undefined,
    complexityProblem: planning.problem,
  };
}

/** Reads `<dir>/<name>` (an artifact the sandbox wrote) capped at ARTIFACT_MAX_BYTES and checks it with `schema`; absent is neither. */
export async function readArtifact<T extends z.ZodType>(dir: string, name: string, schema: T): Promise<{ value?: z.infer<T>; problem?: string }> {
  let text: string;
  try {
    const handle = await open(path.join(dir, name), 'r');
    try {
      const buffer = Buffer.alloc(ARTIFACT_MAX_BYTES + 1);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      if (bytesRead > ARTIFACT_MAX_BYTES) return { problem: `${name} is larger than ${ARTIFACT_MAX_BYTES} bytes` };
      text = buffer.subarray(0, bytesRead).toString('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (systemErrorCode(error) === 'ENOENT') return {};
    return { problem: `${name} unreadable (${errorMessage(error)})` };
  }
  const checked = parseJsonWith(text, schema);
  if ('value' in checked) return { value: checked.value };
  return { problem: 'notJson' in checked ? `${name} is not JSON` : `${name}: ${checked.issues}` };
}
